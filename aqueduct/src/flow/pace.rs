//! A stage's measured time per task, which sizes its runs (see the runner's dispatch
//! size) and tells whether it is fast enough to wait for actively.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::platform::clock;

/// Handler time per task, as the parent sees it: from when a worker could start a
/// dispatch until its answer came back, divided by the dispatch's tasks.
pub(crate) struct Pace {
    /// Exponential average in nanoseconds; 0 until the first dispatch is measured.
    per_task_ns: AtomicU64,
    origin: Instant,
    /// Per worker: when its last dispatch came back, in nanoseconds since `origin`. A
    /// dispatch queued behind another on the same worker (pipelining) starts then, not
    /// when it was sent.
    free_at: Box<[AtomicU64]>,
}

impl Pace {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            per_task_ns: AtomicU64::new(0),
            origin: Instant::now(),
            free_at: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Nanoseconds per task; 0 while nothing has been measured.
    pub(crate) fn per_task_ns(&self) -> u64 {
        self.per_task_ns.load(Ordering::Relaxed)
    }

    /// Folds in a dispatch of `tasks` sent to `worker` at `sent` that came back at
    /// `answered`, weighting the newest measurement by 1/4.
    pub(crate) fn record(&self, worker: usize, sent: Instant, answered: Instant, tasks: u64) {
        let now = self.nanos(answered);
        let Some(free_at) = self.free_at.get(worker) else {
            return;
        };
        let began = self
            .nanos(sent)
            .max(free_at.fetch_max(now, Ordering::Relaxed));
        let sample = (now.saturating_sub(began) / tasks.max(1)).max(1);
        let old = self.per_task_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 3 + sample) / 4
        };
        self.per_task_ns.store(new.max(1), Ordering::Relaxed);
    }

    fn nanos(&self, at: Instant) -> u64 {
        clock::nanos(at.saturating_duration_since(self.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_queued_dispatch_is_timed_from_when_its_worker_was_free() {
        let pace = Pace::new(1);
        let first_sent = Instant::now();
        let second_sent = Instant::now();
        tokio::time::advance(Duration::from_micros(400)).await;
        pace.record(0, first_sent, Instant::now(), 4);
        assert_eq!(pace.per_task_ns(), 100_000);
        // Sent at the same time as the first, but it only started when the first came
        // back: 400 us for 4 tasks again, not 800.
        tokio::time::advance(Duration::from_micros(400)).await;
        pace.record(0, second_sent, Instant::now(), 4);
        assert_eq!(pace.per_task_ns(), 100_000);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_gap_does_not_count() {
        let pace = Pace::new(2);
        let sent = Instant::now();
        tokio::time::advance(Duration::from_micros(100)).await;
        pace.record(1, sent, Instant::now(), 1);
        tokio::time::advance(Duration::from_millis(5)).await;
        let sent = Instant::now();
        tokio::time::advance(Duration::from_micros(300)).await;
        pace.record(1, sent, Instant::now(), 1);
        assert_eq!(pace.per_task_ns(), (100_000 * 3 + 300_000) / 4);
    }
}
