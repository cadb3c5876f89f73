//! Synchronisation helpers for the graph tests (and `process_stop.rs`'s gate): handlers
//! on worker threads wait at a [`Gate`] the test opens, and report arrivals on a
//! [`Latch`] the test waits on, so inputs can be held pending without sleeping. Every
//! wait has a generous safety limit, so a broken test fails instead of hanging.
#![allow(dead_code)]

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Defines `$name`, a stage on a worker thread that reports each task on `$entered`,
/// then waits at `$gate` before adding one to its `n` (the calling test's `Num`), with
/// its own gate and latch: tests run in parallel, so each holds its inputs at its own.
#[allow(unused_macros)]
macro_rules! held_at_gate {
    ($name:ident, $gate:ident, $entered:ident) => {
        static $gate: crate::graph_common::Gate = crate::graph_common::Gate::new();
        static $entered: crate::graph_common::Latch = crate::graph_common::Latch::new();

        #[aqueduct::handler(isolation = "thread")]
        fn $name(item: &mut Num) {
            $entered.arrive();
            $gate.wait();
            item.n += 1;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use held_at_gate;

/// How long any wait may take before the test is considered broken.
pub const LIMIT: Duration = Duration::from_secs(30);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Closed until opened; handlers wait at it.
pub struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    pub const fn new() -> Self {
        Self {
            open: Mutex::new(false),
            changed: Condvar::new(),
        }
    }

    /// Waits until open; `false` if it stayed closed for [`LIMIT`].
    pub fn wait(&self) -> bool {
        let guard = lock(&self.open);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, LIMIT, |open| !*open)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard
    }

    pub fn open(&self) {
        *lock(&self.open) = true;
        self.changed.notify_all();
    }
}

/// Counts arrivals.
pub struct Latch {
    count: Mutex<u64>,
    changed: Condvar,
}

impl Latch {
    pub const fn new() -> Self {
        Self {
            count: Mutex::new(0),
            changed: Condvar::new(),
        }
    }

    pub fn arrive(&self) {
        *lock(&self.count) += 1;
        self.changed.notify_all();
    }

    pub fn count(&self) -> u64 {
        *lock(&self.count)
    }

    /// Waits until at least `n` arrived; `false` if they did not within [`LIMIT`].
    pub fn wait_for(&self, n: u64) -> bool {
        let deadline = Instant::now() + LIMIT;
        let mut count = lock(&self.count);
        while *count < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = self
                .changed
                .wait_timeout(count, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        true
    }
}

/// A list handlers append to.
pub struct Record(Mutex<Vec<u64>>);

impl Record {
    pub const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    pub fn push(&self, n: u64) {
        lock(&self.0).push(n);
    }

    pub fn get(&self) -> Vec<u64> {
        lock(&self.0).clone()
    }
}
