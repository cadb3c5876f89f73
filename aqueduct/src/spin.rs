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
    /// Read at the first pause: a wait with no budget, and a poll that succeeds at
    /// once, read no clock (tens of nanoseconds a reading on a virtual machine).
    started: Option<Instant>,
    budget: Duration,
    spin_for: Duration,
}

impl SpinWait {
    /// A wait of at most `budget`, pure spinning during its first `spin_for` (all of it if
    /// `spin_for >= budget`), yielding the core after that. Its clock starts at the
    /// first pause.
    pub(crate) fn new(budget: Duration, spin_for: Duration) -> Self {
        Self {
            started: None,
            budget,
            spin_for,
        }
    }

    /// Pauses before the next poll; `false` once the budget is spent (then do not poll
    /// again: stop waiting actively).
    pub(crate) fn pause(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        let waited = match self.started {
            Some(started) => started.elapsed(),
            None => {
                self.started = Some(Instant::now());
                Duration::ZERO
            }
        };
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

/// How a worker polls for its next task after finishing one (`AQUEDUCT_SPIN_US`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleSpin {
    /// Poll up to [`AUTO_BUDGET`], but only while tasks arrive back to back: the
    /// previous one came within [`AUTO_GAP`] of the answer before it. A caller awaiting
    /// each answer before sending the next (a request/response service) then finds the
    /// worker awake; a worker whose next task is far off (a later stage of a pipeline, a
    /// quiet service) sleeps at once and takes no core from the others.
    Auto,
    /// Poll up to this long after every task (zero: never), spinning: the poll holds
    /// its core, so it pays only where every worker has one (on 2 cores, three process
    /// stages took a lone call 37 us with 10 us polls, against 13 us with `Auto`).
    Fixed(Duration),
}

/// The longest poll [`IdleSpin::Auto`] makes.
pub(crate) const AUTO_BUDGET: Duration = Duration::from_micros(5);
/// [`IdleSpin::Auto`] polls only if the previous task was sent within this of the answer
/// before it.
pub(crate) const AUTO_GAP: Duration = Duration::from_micros(10);

/// After an [`IdleSpin::Auto`] poll that caught nothing, this many tasks are waited for
/// without polling. Such a poll usually means the sender shares this worker's core (the
/// poll kept it from sending: each side's poll then delays the other), or the machine is
/// busy; a later poll tries again.
pub(crate) const AUTO_COOLDOWN: u32 = 16;

/// One worker's idle poll: how long to poll now, from its policy and what it saw.
#[derive(Debug)]
pub(crate) struct NextWork {
    policy: IdleSpin,
    /// How long the previous task took to arrive after the answer before it.
    last_gap: Duration,
    /// Tasks still to wait for without polling (see [`AUTO_COOLDOWN`]).
    cooldown: u32,
}

impl NextWork {
    /// `policy`, or no polling at all on a single core, where polling would only delay
    /// whoever sends the next task.
    pub(crate) fn new(policy: IdleSpin) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            policy: if cores < 2 {
                IdleSpin::Fixed(Duration::ZERO)
            } else {
                policy
            },
            last_gap: Duration::ZERO,
            cooldown: 0,
        }
    }

    /// How long to poll for the next task now.
    pub(crate) fn budget(&self) -> Duration {
        match self.policy {
            IdleSpin::Fixed(budget) => budget,
            IdleSpin::Auto if self.cooldown == 0 && self.last_gap <= AUTO_GAP => AUTO_BUDGET,
            IdleSpin::Auto => Duration::ZERO,
        }
    }

    /// A poll ended without a task.
    pub(crate) fn missed(&mut self) {
        if self.policy == IdleSpin::Auto {
            self.cooldown = AUTO_COOLDOWN;
        }
    }

    /// The next task was sent `gap` after the previous answer (when it was sent, not when
    /// the worker saw it: a sleeping worker's wake-up latency must not keep it asleep).
    pub(crate) fn arrived_after(&mut self, gap: Duration) {
        self.last_gap = gap;
        self.cooldown = self.cooldown.saturating_sub(1);
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

    #[test]
    fn auto_polls_only_while_tasks_arrive_back_to_back() {
        let mut next = NextWork {
            policy: IdleSpin::Auto,
            last_gap: Duration::ZERO,
            cooldown: 0,
        };
        assert_eq!(next.budget(), AUTO_BUDGET, "polls first, to learn");
        next.arrived_after(Duration::from_micros(30));
        assert_eq!(
            next.budget(),
            Duration::ZERO,
            "a far-off task: sleep at once"
        );
        next.arrived_after(Duration::from_micros(3));
        assert_eq!(next.budget(), AUTO_BUDGET);
        // A poll that caught nothing: the next AUTO_COOLDOWN tasks are awaited asleep.
        next.missed();
        for _ in 0..AUTO_COOLDOWN {
            assert_eq!(next.budget(), Duration::ZERO);
            next.arrived_after(Duration::from_micros(1));
        }
        assert_eq!(next.budget(), AUTO_BUDGET);
        let mut fixed = NextWork {
            policy: IdleSpin::Fixed(Duration::from_micros(20)),
            last_gap: Duration::from_secs(1),
            cooldown: 0,
        };
        fixed.missed();
        assert_eq!(
            fixed.budget(),
            Duration::from_micros(20),
            "a fixed poll stays"
        );
    }
}
