//! timerfd timers on `CLOCK_MONOTONIC`: a descriptor that becomes readable at a set time,
//! to the microsecond.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A new, disarmed timer on `CLOCK_MONOTONIC`; non-blocking and close-on-exec.
pub(crate) fn create() -> io::Result<OwnedFd> {
    let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
    Ok(rustix::time::timerfd_create(
        TimerfdClockId::Monotonic,
        flags,
    )?)
}

/// Arms `fd` to fire once at `at_ns` nanoseconds of `CLOCK_MONOTONIC` (at once if that
/// time has passed), replacing whatever it was set to.
pub(crate) fn fire_at(fd: impl AsFd, at_ns: u64) -> io::Result<()> {
    // A zero time would disarm the timer; the clock's origin is long past anyway.
    let at_ns = at_ns.max(1);
    let whole = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let once = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: whole(at_ns / NANOS_PER_SECOND),
            tv_nsec: whole(at_ns % NANOS_PER_SECOND),
        },
    };
    rustix::time::timerfd_settime(fd, TimerfdTimerFlags::ABSTIME, &once)?;
    Ok(())
}

/// How many times `fd` fired since it was last read; `WouldBlock` if it has not.
pub(crate) fn take(fd: impl AsFd) -> io::Result<u64> {
    super::fd::read_counter(fd)
}
