//! Per-stage counters, readable while the flow runs (`Flow::stats`). They are the seam
//! for metrics exporters: plain atomics, no dependency.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::platform::clock;

/// A snapshot of one stage's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageStats {
    /// Stage name.
    pub name: &'static str,
    /// Workers.
    pub workers: usize,
    /// Tasks waiting in the stage's input queue now.
    pub queued: usize,
    /// Handler calls (batches) dispatched so far.
    pub batches: u64,
    /// Tasks dispatched to the handler so far.
    pub tasks: u64,
    /// Hand-overs to a worker so far: each carries one batch, or, for a fast stage of
    /// single-task batches, a run of queued tasks. Over `tasks`, how many tasks a worker
    /// gets per hand-over (and at most per wake-up).
    pub dispatches: u64,
    /// Tasks the handler failed (error or panic).
    pub failed: u64,
    /// Tasks dropped before dispatch because their deadline passed or their caller left.
    pub abandoned: u64,
    /// Tasks sent again, on their own, after the worker process holding them was lost
    /// (see [`crate::StageConfig::crash_retry`]).
    pub retried: u64,
    /// Tasks that skipped the stage because its condition rejected them.
    pub skipped: u64,
    /// The stage's measured time per task, in nanoseconds, as the parent sees it (a
    /// dispatch, handed over until answered, over its tasks; a moving average). 0 until
    /// the first dispatch is answered.
    pub per_task_ns: u64,
    /// Time the handler ran, in nanoseconds, summed over every answered dispatch, as
    /// the worker measured it. Over `batches`, the mean handler call.
    pub compute_ns: u64,
    /// Time answered dispatches spent outside the handler, in nanoseconds, summed: from
    /// the parent handing the batch over to it holding the results (copies, checks and
    /// wake-ups across the process boundary, or the hand-off to a worker thread).
    pub transfer_ns: u64,
    /// Worker processes restarted after they died (crashed, were killed, or were killed
    /// by the runtime for a timeout or an invalid response). Always 0 for threads.
    pub restarts: u64,
    /// Process ids of the live worker processes, by worker index (0 while a worker is
    /// restarting); empty for thread workers.
    pub worker_pids: Vec<u32>,
}

impl StageStats {
    /// Mean tasks per handler call.
    pub fn mean_batch_size(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.tasks as f64 / self.batches as f64
        }
    }
}

pub(crate) struct StageCounters {
    pub name: &'static str,
    /// The stage's metrics (`metrics` feature).
    pub metrics: crate::metrics::StageMetrics,
    pub workers: usize,
    queued: Box<dyn Fn() -> usize + Send + Sync>,
    batches: AtomicU64,
    tasks: AtomicU64,
    dispatches: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
    retried: AtomicU64,
    skipped: AtomicU64,
    pace_ns: AtomicU64,
    compute_ns: AtomicU64,
    transfer_ns: AtomicU64,
    restarts: AtomicU64,
    pids: Vec<AtomicU32>,
}

impl StageCounters {
    pub(crate) fn new(
        name: &'static str,
        workers: usize,
        queued: impl Fn() -> usize + Send + Sync + 'static,
    ) -> Self {
        let metrics = crate::metrics::StageMetrics::new(name);
        // Worker threads are up for the stage's life (`with_processes` says otherwise).
        metrics.workers(workers, 0);
        Self {
            name,
            metrics,
            workers,
            queued: Box::new(queued),
            batches: AtomicU64::new(0),
            tasks: AtomicU64::new(0),
            dispatches: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            pace_ns: AtomicU64::new(0),
            compute_ns: AtomicU64::new(0),
            transfer_ns: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            pids: Vec::new(),
        }
    }

    /// Counters for a stage whose workers are processes (their pids are reported).
    pub(crate) fn with_processes(mut self) -> Self {
        self.pids = (0..self.workers).map(|_| AtomicU32::new(0)).collect();
        // Worker processes are down until each has started.
        self.metrics.workers(0, self.workers);
        self.metrics.track_worker_processes(self.name, self.workers);
        self
    }

    #[cfg(feature = "metrics")]
    /// Samples the resident memory of the stage's worker processes into its metrics.
    pub(crate) fn sample_memory(&self) {
        for (worker, pid) in self.pids.iter().enumerate() {
            let pid = pid.load(Ordering::Relaxed);
            let bytes = if pid == 0 {
                0
            } else {
                crate::platform::process::resident_bytes(pid).unwrap_or(0)
            };
            self.metrics.worker_rss(worker, bytes);
        }
    }

    /// Tasks waiting in the stage's input queue now.
    pub(crate) fn queued(&self) -> usize {
        (self.queued)()
    }

    /// A worker process was restarted for `cause`.
    pub(crate) fn restarted(&self, cause: crate::metrics::RestartCause) {
        self.metrics.restarted(cause);
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// The pid of worker `worker`'s live process (0 for threads, or while restarting).
    pub(crate) fn pid(&self, worker: usize) -> u32 {
        self.pids
            .get(worker)
            .map_or(0, |pid| pid.load(Ordering::Relaxed))
    }

    pub(crate) fn set_pid(&self, worker: usize, pid: u32) {
        if let Some(slot) = self.pids.get(worker) {
            slot.store(pid, Ordering::Relaxed);
            let up = self
                .pids
                .iter()
                .filter(|pid| pid.load(Ordering::Relaxed) != 0)
                .count();
            self.metrics.workers(up, self.workers - up);
        }
    }

    /// Records one dispatch: `tasks` tasks sent to a worker, to be run as `batches`
    /// handler calls.
    pub(crate) fn dispatched(&self, batches: usize, tasks: usize) {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(batches as u64, Ordering::Relaxed);
        self.tasks.fetch_add(tasks as u64, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A dispatch was answered: the handler ran `compute`, and the rest of its round
    /// trip, `transfer`, went to moving it.
    pub(crate) fn answered(&self, compute: Duration, transfer: Duration) {
        self.metrics.answered(compute, transfer);
        self.compute_ns
            .fetch_add(clock::nanos(compute), Ordering::Relaxed);
        self.transfer_ns
            .fetch_add(clock::nanos(transfer), Ordering::Relaxed);
    }

    /// Records the stage's measured time per task.
    pub(crate) fn set_pace(&self, nanos: u64) {
        self.pace_ns.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn abandoned(&self, count: usize) {
        self.abandoned.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StageStats {
        StageStats {
            name: self.name,
            workers: self.workers,
            queued: (self.queued)(),
            batches: self.batches.load(Ordering::Relaxed),
            dispatches: self.dispatches.load(Ordering::Relaxed),
            tasks: self.tasks.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            per_task_ns: self.pace_ns.load(Ordering::Relaxed),
            compute_ns: self.compute_ns.load(Ordering::Relaxed),
            transfer_ns: self.transfer_ns.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            worker_pids: self
                .pids
                .iter()
                .map(|p| p.load(Ordering::Relaxed))
                .collect(),
        }
    }
}
