//! Whether a flow's stages tell the next stage's worker ahead of a lone task (see
//! [`crate::exec::Executor::expect`]), and the last stage the first stage's worker ahead
//! of the caller's next task, decided by measuring the flow's own lone calls.
//!
//! Told ahead, a sleeping worker wakes while the stage before still works, and polls for
//! its task: on a 2-core VM with a core to spare, three process stages answered a lone
//! call in 10-11 us instead of 15 (the wake-up of a sleeping worker is most of a stage's
//! share); later, when wake-ups had become dearer, telling the first stage too (for a
//! caller that sends its next task as soon as it has an answer) and counting a poll as
//! late only past its own budget (see [`crate::spin::EXPECTED_LATE`]) took the median
//! from 32 us to 15. On a busy machine (two other busy threads) the same polls took cores
//! from the threads doing the work: 18-20 us instead of 10-12, and stalls of milliseconds
//! (a poll that yields its core to a busy thread waits out that thread's time slice). No
//! cheap signal tells the two apart beforehand (the workers' own view of their polls said
//! they paid in both), so the flow measures: its lone calls run in epochs, most of
//! [`EXPLOIT_CALLS`] calls the way that was faster, the others of [`EXPLORE_CALLS`] the
//! other way, and each epoch's mean latency (which a few stalls of milliseconds raise,
//! where a median would not see them) is compared with the other way's last.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::platform::clock;
use crate::sync::lock;

/// Lone calls in an epoch run the way that was faster.
const EXPLOIT_CALLS: usize = 1024;
/// Lone calls in an epoch run the other way, to see whether it became the faster.
const EXPLORE_CALLS: usize = 16;

/// A flow's choice, and the measurements it rests on.
pub(crate) struct Expecting {
    /// Whether the flow's lone calls are measured: only where telling ahead can happen
    /// (see [`Expecting::measure`]).
    measuring: AtomicBool,
    /// Whether lone calls now tell the next stage ahead (read at every lone dispatch).
    on: AtomicBool,
    epochs: Mutex<Epochs>,
}

struct Epochs {
    /// Whether the epoch under way tries the way that was not the faster.
    exploring: bool,
    /// The faster way so far: telling ahead or not.
    best: bool,
    /// The latencies of the epoch's lone calls so far, in nanoseconds.
    latencies: Vec<u64>,
    /// Each way's mean in its last epoch (index 0: not telling ahead).
    means: [Option<u64>; 2],
}

impl Epochs {
    /// How many lone calls the epoch under way takes.
    fn length(&self) -> usize {
        if self.exploring {
            EXPLORE_CALLS
        } else {
            EXPLOIT_CALLS
        }
    }
}

impl Expecting {
    /// Starts without telling ahead: the way that costs nothing where it does not pay.
    pub(crate) fn new() -> Self {
        Self {
            measuring: AtomicBool::new(false),
            on: AtomicBool::new(false),
            epochs: Mutex::new(Epochs {
                exploring: false,
                best: false,
                latencies: Vec::with_capacity(EXPLOIT_CALLS),
                means: [None; 2],
            }),
        }
    }

    /// Measures the flow's lone calls from now on: for a flow of several stages on a
    /// machine of several cores. A lone stage has no next stage to tell, and on one core
    /// a poll only delays whoever it waits for, so there nothing is measured, and a lone
    /// call pays no clock reading or lock for it.
    pub(crate) fn measure(&self) {
        self.measuring.store(true, Ordering::Relaxed);
    }

    /// Whether lone calls are to be measured (see [`Expecting::measure`]).
    pub(crate) fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    /// Whether a lone call tells each next stage ahead now.
    pub(crate) fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// A lone call that began while [`Expecting::on`] was `expecting` succeeded after
    /// `took`. A call that began in the previous epoch is left out.
    pub(crate) fn lone_call_took(&self, expecting: bool, took: Duration) {
        let mut epochs = lock(&self.epochs);
        if expecting != self.on() {
            return;
        }
        epochs.latencies.push(clock::nanos(took));
        if epochs.latencies.len() < epochs.length() {
            return;
        }
        let mean = epochs.latencies.iter().sum::<u64>() / epochs.latencies.len() as u64;
        epochs.latencies.clear();
        epochs.means[usize::from(expecting)] = Some(mean);
        if let [Some(without), Some(with)] = epochs.means {
            // The other way takes over only if it is faster by more than the noise
            // between two epochs' means (a twentieth).
            let (best, other) = if epochs.best {
                (with, without)
            } else {
                (without, with)
            };
            if other.saturating_mul(20) < best.saturating_mul(19) {
                // The new best way runs next; the old one is tried again later.
                epochs.best = !epochs.best;
                epochs.exploring = true;
            }
        }
        epochs.exploring = !epochs.exploring;
        let next = epochs.best != epochs.exploring;
        self.on.store(next, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one epoch of lone calls, taking `with` microseconds told ahead and `without`
    /// not.
    fn epoch(expecting: &Expecting, with: u64, without: u64) {
        let length = lock(&expecting.epochs).length();
        for _ in 0..length {
            let on = expecting.on();
            let us = if on { with } else { without };
            expecting.lone_call_took(on, Duration::from_micros(us));
        }
    }

    #[test]
    fn telling_ahead_is_taken_up_where_it_is_faster_and_dropped_where_it_is_not() {
        let expecting = Expecting::new();
        assert!(!expecting.on(), "starts without telling ahead");
        epoch(&expecting, 10, 15);
        assert!(expecting.on(), "then tries the other way");
        epoch(&expecting, 10, 15);
        assert!(expecting.on(), "faster: kept");
        epoch(&expecting, 10, 15);
        assert!(!expecting.on(), "the other way tried again now and then");
        epoch(&expecting, 10, 15);
        assert!(expecting.on(), "and left again");
        // The machine got busy: telling ahead now costs.
        epoch(&expecting, 20, 11);
        assert!(!expecting.on(), "dropped at once");
        epoch(&expecting, 20, 11);
        assert!(expecting.on(), "tried again now and then");
        epoch(&expecting, 20, 11);
        assert!(!expecting.on(), "still slower: dropped again");
        epoch(&expecting, 20, 11);
        assert!(expecting.on());
        epoch(&expecting, 20, 11);
        assert!(!expecting.on());
    }

    #[test]
    fn a_difference_within_the_noise_changes_nothing() {
        let expecting = Expecting::new();
        for _ in 0..6 {
            epoch(&expecting, 100, 102);
            epoch(&expecting, 100, 102);
            assert!(!expecting.on(), "2% faster is not enough to switch");
        }
    }

    #[test]
    fn a_call_begun_the_other_way_is_left_out() {
        let expecting = Expecting::new();
        for _ in 0..EXPLOIT_CALLS - 1 {
            expecting.lone_call_took(false, Duration::from_micros(15));
        }
        expecting.lone_call_took(true, Duration::from_micros(1));
        assert!(!expecting.on(), "a call of the other way does not count");
        expecting.lone_call_took(false, Duration::from_micros(15));
        assert!(expecting.on(), "the epoch ends with its own calls");
    }
}
