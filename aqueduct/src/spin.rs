//! Waiting actively, within a time budget, for something another thread or process is
//! about to do: the runtime's one backoff between polls.
//!
//! Sleeping and being woken costs roughly 5-10 us on small VMs; when the awaited event is
//! usually microseconds away, polling is cheaper. Polling costs a core, though, so every
//! wait has a budget, and after its first `spin_for` it yields the core between polls: on
//! a small machine the thread that will answer may be queued on this very core.

use std::time::{Duration, Instant};

/// One active wait: call [`SpinWait::pause`] between polls until it returns `false`.
#[derive(Debug)]
pub(crate) struct SpinWait {
    started: Instant,
    budget: Duration,
    spin_for: Duration,
}

impl SpinWait {
    /// A wait of at most `budget`, pure spinning during its first `spin_for` (all of it if
    /// `spin_for >= budget`), yielding the core after that.
    pub(crate) fn new(budget: Duration, spin_for: Duration) -> Self {
        Self {
            started: Instant::now(),
            budget,
            spin_for,
        }
    }

    /// Pauses before the next poll; `false` once the budget is spent (then do not poll
    /// again: stop waiting actively).
    pub(crate) fn pause(&mut self) -> bool {
        let waited = self.started.elapsed();
        if waited >= self.budget {
            return false;
        }
        if waited < self.spin_for {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_budget_never_pauses_and_a_budget_ends() {
        assert!(!SpinWait::new(Duration::ZERO, Duration::ZERO).pause());
        let budget = Duration::from_millis(2);
        let mut wait = SpinWait::new(budget, Duration::from_micros(5));
        let started = Instant::now();
        let mut pauses = 0u64;
        while wait.pause() {
            pauses += 1;
        }
        assert!(pauses > 0);
        assert!(started.elapsed() >= budget);
    }
}
