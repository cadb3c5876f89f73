//! The monotonic clock as plain nanoseconds, which two processes can compare (std's
//! `Instant` is opaque): a worker compares when a request was published with when it
//! answered the one before.

use std::ops::Add;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The furthest ahead a deadline is put (about 30 years, as tokio's own `timeout` does):
/// a duration longer than the clock can add (`Duration::MAX` for "no limit") would
/// overflow `Instant` and panic, and such a deadline never comes anyway.
const FAR_AHEAD: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The deadline `wait` after `at` (an `Instant`, std's or tokio's), at most
/// [`FAR_AHEAD`]: every deadline made from a caller's or a setting's duration is made
/// here.
pub(crate) fn deadline<I: Add<Duration, Output = I>>(at: I, wait: Duration) -> I {
    at + wait.min(FAR_AHEAD)
}

/// `span` in whole nanoseconds, saturating (at 584 years): the one conversion of a
/// duration to the `u64` nanoseconds that counters, ticks and clocks are kept in.
pub(crate) fn nanos(span: Duration) -> u64 {
    u64::try_from(span.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub(crate) fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// [`monotonic_ns`] at `at`, without reading the clock: std's `Instant` is
/// `CLOCK_MONOTONIC` on Linux, so the two differ by a constant, taken once (to within
/// the two readings' gap, tens of nanoseconds). For a time already read for other
/// reasons (a dispatch's `sent`), where a clock reading is a tenth of a microsecond's
/// round trip on a virtual machine.
pub(crate) fn monotonic_ns_at(at: Instant) -> u64 {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    let &(anchor, anchor_ns) = ANCHOR.get_or_init(|| (Instant::now(), monotonic_ns()));
    match at.checked_duration_since(anchor) {
        Some(after) => anchor_ns.saturating_add(nanos(after)),
        None => anchor_ns.saturating_sub(nanos(anchor.duration_since(at))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_too_far_for_the_clock_is_put_far_ahead_not_overflowed() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::MAX), now + FAR_AHEAD);
        assert_eq!(
            deadline(now, Duration::from_millis(u64::MAX)),
            now + FAR_AHEAD
        );
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let tokio_now = tokio::time::Instant::now();
        assert_eq!(deadline(tokio_now, Duration::MAX), tokio_now + FAR_AHEAD);
    }

    #[test]
    fn an_instant_maps_onto_the_monotonic_clock_after_and_before_the_anchor() {
        // The anchor is taken by the first mapping; the instants below come later, some
        // milliseconds on (a gap a mapping that ignored them would show).
        monotonic_ns_at(Instant::now());
        std::thread::sleep(Duration::from_millis(5));
        let before = monotonic_ns();
        let at = Instant::now();
        let after = monotonic_ns();
        let mapped = monotonic_ns_at(at);
        // The anchor's two readings are microseconds apart at most.
        let slack = 1_000_000;
        assert!(
            mapped + slack >= before && mapped <= after + slack,
            "{before} <= {mapped} <= {after}"
        );
        // An instant before the anchor maps as well.
        let earlier = at - Duration::from_millis(20);
        assert_eq!(mapped - monotonic_ns_at(earlier), 20_000_000);
    }
}
