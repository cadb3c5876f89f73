//! Admission: whether `process()` lets a task into the flow, and how long it may wait for
//! room in the first stage's queue.
//!
//! Waiting for room until the caller's whole timeout has passed, and then getting in
//! with no time left, is how a pipeline collapses under overload: it keeps doing work
//! that nobody will receive. So a task is admitted only if it can still finish by the
//! flow's own estimate ([`Load`]). A full first stage either rejects at once
//! ([`crate::FlowBuilder::reject_when_full`]) or lets the caller wait while a task that
//! gets in could still finish, and at most `max_queue_wait`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::pace::Pace;
use crate::platform::clock;
use crate::stats::StageCounters;

/// How long `process()` may wait for room in a full first stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Wait while a task that gets in could still finish, and at most this long (`None`:
    /// no bound but that).
    Wait(Option<Duration>),
    /// Answer [`crate::Error::Overloaded`] at once.
    Reject,
}

/// What the flow knows about one stage's load.
pub(crate) struct StageLoad {
    pub pace: Arc<Pace>,
    pub counters: Arc<StageCounters>,
    pub workers: usize,
    pub batch_size: usize,
    /// Tasks one lane of its queue holds.
    pub capacity: usize,
    /// Lanes in its queue (priorities).
    pub lanes: usize,
}

/// How long a task entering now would take to get through, by the stages' measured
/// paces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Estimate {
    /// Waiting behind the tasks queued ahead of it.
    pub queueing: Duration,
    /// Its own batches.
    pub service: Duration,
}

impl Estimate {
    pub(crate) fn total(&self) -> Duration {
        self.queueing.saturating_add(self.service)
    }
}

/// The flow's stages, first to last, as admission sees them, and the first stage's
/// signal that room was made in its queue.
pub(crate) struct Load {
    pub stages: Vec<StageLoad>,
    pub room: Arc<Notify>,
    pub when_full: WhenFull,
}

impl Load {
    /// The estimate for a task entering now. Per stage, the tasks queued ahead of it
    /// drain at `workers` tasks per `pace` (the stage's measured time per task, which
    /// already reflects its batching), then the task's own batch takes `pace` per task
    /// in it. A stage not measured yet counts as free. Tasks a worker is running now are
    /// not counted, so the estimate errs towards admitting.
    pub(crate) fn estimate(&self) -> Estimate {
        self.estimate_with(|stage| stage.counters.queued())
    }

    /// The estimate for a task that gets into the first stage once it has room: its
    /// queue full ahead of it.
    pub(crate) fn estimate_full(&self) -> Estimate {
        let mut first = true;
        self.estimate_with(|stage| {
            let queued = if first {
                stage.capacity
            } else {
                stage.counters.queued()
            };
            first = false;
            queued
        })
    }

    fn estimate_with(&self, mut queued: impl FnMut(&StageLoad) -> usize) -> Estimate {
        let mut nanos = (0u64, 0u64);
        for stage in &self.stages {
            let pace = stage.pace.per_task_ns();
            if pace == 0 {
                continue;
            }
            let queued = queued(stage) as u64;
            nanos.0 = nanos
                .0
                .saturating_add(queued.saturating_mul(pace) / stage.workers.max(1) as u64);
            nanos.1 = nanos
                .1
                .saturating_add(pace.saturating_mul(queued.min(stage.batch_size as u64 - 1) + 1));
        }
        Estimate {
            queueing: Duration::from_nanos(nanos.0),
            service: Duration::from_nanos(nanos.1),
        }
    }

    /// Whether a task with `remaining` time left must be turned away now: the work
    /// queued ahead of it would outlast its timeout. A task is never turned away by
    /// its own service time alone (an idle flow whose handler is slower than the
    /// timeout answers [`crate::Error::Timeout`], as it always has).
    pub(crate) fn turns_away(&self, remaining: Duration) -> bool {
        // Every call asks, so first the bound that needs no queue length (each a read
        // of counters other threads write): even with every queue full, the work ahead
        // would fit in `remaining`.
        if self
            .estimate_with(|stage| stage.capacity.saturating_mul(stage.lanes))
            .total()
            <= remaining
        {
            return false;
        }
        let estimate = self.estimate();
        !estimate.queueing.is_zero() && estimate.total() > remaining
    }

    /// Until when a caller that called at `called` may wait for room in the full first
    /// stage: while a task that gets in could still finish before `deadline`, and at
    /// most `max_queue_wait` after the call. `None`: not (or no longer) at all.
    pub(crate) fn wait_until(&self, called: Instant, deadline: Instant) -> Option<Instant> {
        let WhenFull::Wait(max_wait) = self.when_full else {
            return None;
        };
        let last_useful = deadline.checked_sub(self.estimate_full().total())?;
        let until = match max_wait {
            Some(max_wait) => last_useful.min(clock::deadline(called, max_wait)),
            None => last_useful,
        };
        (until > Instant::now()).then_some(until)
    }
}
