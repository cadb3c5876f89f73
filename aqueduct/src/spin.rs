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

/// How long a worker polls, yielding its core between polls, for a request its caller
/// expects within microseconds (the stage before runs a lone task and is fast: see
/// [`crate::exec::Executor::expect`]). It covers the previous stage's handler and the
/// hand-over; a request that comes later finds the worker asleep, as it would anyway.
pub(crate) const EXPECTED_POLL: Duration = Duration::from_micros(50);

/// A poll for an expected request paid only if it saw the request within this of its
/// publication. Later, another thread held the worker's core for longer than the whole
/// poll was to last (a busy machine: a yielding poll then waits out the other thread's
/// time slice, milliseconds, where a sleeping worker would have been woken at once).
/// Sooner is no loss: on a 2-core VM a poll that yields to the flow's own threads sees
/// its task 10-30 us late, about what waking a sleeping worker takes. (At 10 us those
/// catches made the workers decline expectations for thousands of tasks at a time:
/// three process stages answered lone calls in a median of 21 us, against 15 at this
/// bound; with two busy background threads both 18 us.)
pub(crate) const EXPECTED_LATE: Duration = EXPECTED_POLL;

/// The fewest and the most tasks a worker takes without polling for expected ones
/// after a poll that did not pay (see [`Expectations`]).
const EXPECTED_MIN_SKIP: u32 = 4;
const EXPECTED_MAX_SKIP: u32 = 4096;
/// The fewest after a poll that saw its task late: a busy machine, where each such poll
/// may have cost a time slice (milliseconds), so they must stay rarer than one call in
/// a hundred.
const EXPECTED_LATE_SKIP: u32 = 256;

/// Whether this machine has more than one core for us: where it does not, every poll
/// only delays whoever it waits for. Read once.
pub(crate) fn multicore() -> bool {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())) > 1
}

/// One worker's idle poll: how long to poll now, from its policy and what it saw.
#[derive(Debug)]
pub(crate) struct NextWork {
    policy: IdleSpin,
    /// How long the previous task took to arrive after the answer before it.
    last_gap: Duration,
    /// Tasks still to wait for without polling (see [`AUTO_COOLDOWN`]).
    cooldown: u32,
    expectations: Expectations,
}

/// How a worker's polls for expected requests went, and so whether to make the next.
/// After a poll whose task did not come within its budget, the worker declines
/// expectations for its next [`EXPECTED_MIN_SKIP`] tasks; after one that saw its task
/// late (see [`EXPECTED_LATE`]), for at least [`EXPECTED_LATE_SKIP`]; twice as many
/// after each further such poll (up to [`EXPECTED_MAX_SKIP`]), and half as many again
/// after each poll that paid. It says so to its sender, which then neither sets the
/// expectation nor wakes it for one: on a busy machine the polls, and the wake-ups
/// ahead of time, soon become rare, and the worker sleeps until its task comes, to be
/// woken with priority, as without them.
#[derive(Debug, Default)]
struct Expectations {
    /// Tasks still to take before polling for an expected one again.
    skip: u32,
    /// How many the next poll that does not pay makes skipped.
    backoff: u32,
    /// A poll caught its task, which is still to be judged by its lateness.
    caught: bool,
}

/// What came of one poll for an expected task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polled {
    /// It saw its task in time.
    Paid,
    /// Its budget ran out first.
    Missed,
    /// It saw its task late: another thread held the core meanwhile.
    Late,
}

impl Expectations {
    fn polled(&mut self, polled: Polled) {
        let least = match polled {
            Polled::Paid => {
                self.backoff /= 2;
                return;
            }
            Polled::Missed => EXPECTED_MIN_SKIP,
            Polled::Late => EXPECTED_LATE_SKIP,
        };
        self.backoff = (self.backoff * 2).clamp(least, EXPECTED_MAX_SKIP);
        self.skip = self.backoff;
    }
}

impl NextWork {
    /// `policy`, or no polling at all on a single core, where polling would only delay
    /// whoever sends the next task.
    pub(crate) fn new(policy: IdleSpin) -> Self {
        Self {
            policy: if !multicore() {
                IdleSpin::Fixed(Duration::ZERO)
            } else {
                policy
            },
            last_gap: Duration::ZERO,
            cooldown: 0,
            expectations: Expectations::default(),
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

    /// A task was taken (whether or not it was expected).
    pub(crate) fn took_task(&mut self) {
        self.expectations.skip = self.expectations.skip.saturating_sub(1);
    }

    /// Whether the worker declines expectations now: its sender should neither set one
    /// nor wake it for one, and one set all the same is not polled for. Otherwise a
    /// task its sender expects within microseconds is polled for (for
    /// [`EXPECTED_POLL`], yielding the core between polls). Polls are only where they
    /// are the policy's choice ([`IdleSpin::Auto`], more than one core), and not while
    /// earlier such polls did not pay (see [`Expectations`]).
    pub(crate) fn declines_expected(&self) -> bool {
        self.policy != IdleSpin::Auto || self.expectations.skip > 0
    }

    /// The poll for an expected task ended: `caught` it, or its budget ran out.
    pub(crate) fn expected_poll_ended(&mut self, caught: bool) {
        if caught {
            self.expectations.caught = true;
        } else {
            self.expectations.polled(Polled::Missed);
        }
    }

    /// Whether the task just taken was caught by a poll for an expected one, which
    /// [`NextWork::caught_after`] is then to judge (a clock reading only then).
    pub(crate) fn judges_catch(&self) -> bool {
        self.expectations.caught
    }

    /// The task caught by a poll for an expected one was seen `after` its sending.
    pub(crate) fn caught_after(&mut self, after: Duration) {
        self.expectations.caught = false;
        self.expectations.polled(if after <= EXPECTED_LATE {
            Polled::Paid
        } else {
            Polled::Late
        });
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
        let mut next = with(IdleSpin::Auto);
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
        let mut fixed = with(IdleSpin::Fixed(Duration::from_micros(20)));
        fixed.last_gap = Duration::from_secs(1);
        fixed.missed();
        assert_eq!(
            fixed.budget(),
            Duration::from_micros(20),
            "a fixed poll stays"
        );
    }

    /// A worker's poll under `policy`, on any machine (`NextWork::new` turns every
    /// policy off on one core).
    fn with(policy: IdleSpin) -> NextWork {
        NextWork {
            policy,
            last_gap: Duration::ZERO,
            cooldown: 0,
            expectations: Expectations::default(),
        }
    }

    /// Takes `count` tasks, checking each time that expectations are declined.
    fn declines_for(next: &mut NextWork, count: u32) {
        for taken in 0..count {
            assert!(next.declines_expected(), "declined after {taken} tasks");
            next.took_task();
        }
        assert!(!next.declines_expected(), "taken up again after {count}");
    }

    #[test]
    fn a_catch_as_late_as_a_wake_up_pays() {
        // A poll that yielded to the flow's own threads on a small VM sees its task
        // 10-30 us after it was sent: no later than a sleeping worker would have.
        let mut next = with(IdleSpin::Auto);
        for _ in 0..8 {
            next.expected_poll_ended(true);
            next.took_task();
            next.caught_after(Duration::from_micros(30));
            assert!(
                !next.declines_expected(),
                "a catch within a wake-up is paid"
            );
        }
        // A poll that waited out another thread's time slice did not pay.
        next.expected_poll_ended(true);
        next.took_task();
        next.caught_after(Duration::from_millis(2));
        assert!(next.declines_expected());
    }

    #[test]
    fn polls_for_expected_tasks_stop_for_longer_the_less_they_pay() {
        let mut next = with(IdleSpin::Auto);
        assert!(
            !next.declines_expected(),
            "an Auto worker polls for what is expected"
        );
        next.expected_poll_ended(false);
        declines_for(&mut next, EXPECTED_MIN_SKIP);
        next.expected_poll_ended(false);
        declines_for(&mut next, 2 * EXPECTED_MIN_SKIP);
        // Caught in time: paid, no task declined.
        next.expected_poll_ended(true);
        assert!(next.judges_catch(), "a catch is judged by its lateness");
        next.took_task();
        next.caught_after(EXPECTED_LATE / 2);
        assert!(!next.judges_catch());
        assert!(!next.declines_expected());
        // Caught late (a busy machine): declined for long.
        next.expected_poll_ended(true);
        next.took_task();
        next.caught_after(EXPECTED_LATE * 3);
        declines_for(&mut next, EXPECTED_LATE_SKIP);
        next.expected_poll_ended(true);
        next.took_task();
        next.caught_after(EXPECTED_LATE * 3);
        declines_for(&mut next, 2 * EXPECTED_LATE_SKIP);
        for _ in 0..64 {
            next.expected_poll_ended(false);
            next.took_task();
            while next.declines_expected() {
                next.took_task();
            }
        }
        assert_eq!(next.expectations.backoff, EXPECTED_MAX_SKIP, "bounded");
    }

    #[test]
    fn a_worker_with_a_fixed_poll_or_none_declines_every_expectation() {
        for budget in [Duration::ZERO, Duration::from_micros(20)] {
            let next = with(IdleSpin::Fixed(budget));
            assert!(next.declines_expected());
        }
    }
}
