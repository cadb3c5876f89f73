//! Deadlines kept to the microsecond: a batch's fill deadline, and the ticks of the flow's
//! deadline ticker (the callers' timeouts).
//!
//! tokio's timer rounds a deadline up to its next millisecond tick, and its driver wakes
//! on those ticks: a lone task in a stage with `batch_timeout_ms = 1` waited 2.1 ms, and
//! every batch timeout came 1-1.4 ms late; a call with a 1 ms timeout failed after 2.1 ms
//! (3.2 ms at worst). A timerfd, watched by the runtime's reactor, fires on time. tokio's
//! timer still runs beside it, and a firing ends a wait only once the runtime's clock has
//! reached the deadline, so a runtime on tokio's paused clock (tests) keeps to that clock.
//! A runtime without an IO driver, where no descriptor can be watched, keeps tokio's timer
//! alone.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::time::{sleep_until, Instant};

use crate::platform::reactor::watch_readable;
use crate::platform::{clock, timerfd};

/// One timer, re-armed for each deadline (a stage runner's batch that has to wait for
/// more tasks; the deadline ticker's next tick), then awaited, as often as needed, until
/// the deadline.
///
/// The deadline is on the runtime's clock, which on tokio's paused clock (tests) is not
/// the real one: the timerfd is armed for the time left by the runtime's clock, and its
/// firing ends a wait only once the runtime's clock has reached the deadline.
#[derive(Debug)]
pub(crate) struct PreciseTimer {
    precise: Precise,
    /// The armed deadline, on the runtime's clock.
    deadline: Instant,
}

#[derive(Debug)]
enum Precise {
    /// Not made yet: made when first armed (most stages' batches never wait).
    Unmade,
    Made(AsyncFd<OwnedFd>),
    /// tokio's timer alone.
    Off,
}

impl PreciseTimer {
    /// A timer kept to the microsecond where the runtime can watch a timerfd.
    pub(crate) fn new() -> Self {
        Self {
            precise: Precise::Unmade,
            deadline: Instant::now(),
        }
    }

    /// Sets the deadline that [`PreciseTimer::elapsed`] waits for. Called on the runtime.
    pub(crate) fn arm(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if let Precise::Unmade = self.precise {
            self.precise = match timerfd::create().map(watch_readable) {
                Ok(Ok(fd)) => Precise::Made(fd),
                _ => Precise::Off,
            };
        }
        if let Precise::Made(fd) = &self.precise {
            let left = deadline.saturating_duration_since(Instant::now());
            let at_ns = clock::monotonic_ns().saturating_add(clock::nanos(left));
            if timerfd::fire_at(fd.get_ref(), at_ns).is_err() {
                self.precise = Precise::Off;
            }
        }
    }

    /// Resolves at the armed deadline.
    pub(crate) async fn elapsed(&self) {
        let Precise::Made(fd) = &self.precise else {
            return sleep_until(self.deadline).await;
        };
        tokio::select! {
            () = sleep_until(self.deadline) => {}
            () = fired(fd, self.deadline) => {}
        }
    }
}

/// Resolves once `fd` fired and the runtime's clock has reached `deadline`; never, if
/// the timerfd fails or the runtime's clock lags (tokio's timer then ends the wait).
async fn fired(fd: &AsyncFd<OwnedFd>, deadline: Instant) {
    loop {
        let Ok(mut ready) = fd.readable().await else {
            return std::future::pending().await;
        };
        match timerfd::take(fd.get_ref()) {
            // Only a firing for this deadline ends the wait (re-arming the timer clears
            // an unread firing for an earlier one on Linux, which no manual promises),
            // and only by the runtime's clock (a paused clock lags the real one).
            Ok(_) if Instant::now() >= deadline => return,
            Ok(_) => {}
            // Readiness left from a firing already read.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(_) => return std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_precise_deadline_never_ends_a_wait_early_after_an_unread_firing() {
        let mut timer = PreciseTimer::new();
        // Fires while nobody waits: its firing stays unread, and the reactor's
        // readiness set.
        timer.arm(Instant::now() + Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            matches!(timer.precise, Precise::Made(_)),
            "a timerfd is used"
        );
        for wait in [20, 5, 1] {
            let wait = Duration::from_millis(wait);
            let started = Instant::now();
            timer.arm(started + wait);
            timer.elapsed().await;
            assert!(started.elapsed() >= wait, "ended before its deadline");
        }
    }

    /// On tokio's paused clock, real time runs ahead of the runtime's: a deadline on the
    /// runtime's clock may lie in the real past, and must still wait for the runtime's.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_on_the_paused_clock_waits_for_that_clock() {
        let mut timer = PreciseTimer::new();
        for wait in [10, 1, 10] {
            std::thread::sleep(Duration::from_millis(30));
            let wait = Duration::from_millis(wait);
            let started = Instant::now();
            timer.arm(started + wait);
            timer.elapsed().await;
            assert!(
                matches!(timer.precise, Precise::Made(_)),
                "a timerfd is used"
            );
            assert!(started.elapsed() >= wait, "ended before its deadline");
        }
    }

    #[test]
    fn a_runtime_without_an_io_driver_keeps_tokios_timer() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut timer = PreciseTimer::new();
            let deadline = Instant::now() + Duration::from_millis(2);
            timer.arm(deadline);
            assert!(matches!(timer.precise, Precise::Off));
            timer.elapsed().await;
            assert!(Instant::now() >= deadline);
        });
    }
}
