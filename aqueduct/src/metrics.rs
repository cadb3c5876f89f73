//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`):
//! whatever recorder the application installs (a Prometheus exporter, say) receives
//! them. Without the feature every function here is empty, and with it but no recorder
//! installed each is a check of the global recorder.
//!
//! Names and types follow Triton's; labels are `flow` and `stage` (never a task id).
//! A flow registers its metrics when it starts: install the recorder before.
//! Every timing is a histogram in seconds; [`BUCKETS`] are the bounds to give the
//! exporter (50 us to 5 s).
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `aqueduct_requests_total` | counter | flow, outcome | `process` calls by outcome: success, timeout, overloaded, cancelled, handler_error, worker_crashed, protocol, stopped, other |
//! | `aqueduct_request_duration_seconds` | histogram | flow | a `process` call, start to answer |
//! | `aqueduct_stage_queue_depth` | gauge | stage | tasks in the stage's queue, when a batch is formed |
//! | `aqueduct_stage_queue_duration_seconds` | histogram | stage | a task's wait in the stage's queue |
//! | `aqueduct_stage_batch_size` | histogram | stage | tasks per dispatch |
//! | `aqueduct_stage_batch_fill_duration_seconds` | histogram | stage | forming a batch: from its first task taken from the queue until it was flushed (stages that batch: `batch_size` > 1 or a `batch_timeout_ms`) |
//! | `aqueduct_stage_batch_flush_total` | counter | stage, reason | dispatches by why the batch was flushed: full, timeout, immediate, drain, retry |
//! | `aqueduct_stage_compute_duration_seconds` | histogram | stage | the handler's time on a dispatch, measured in the worker: one call, or a run of single-task calls handed over together |
//! | `aqueduct_stage_transfer_duration_seconds` | histogram | stage | a dispatch's round trip less its handler time: copies, checks and wake-ups between the parent and the worker |
//! | `aqueduct_stage_abandoned_total` | counter | stage, reason | tasks dropped before dispatch: deadline, cancelled |
//! | `aqueduct_worker_restarts_total` | counter | stage, cause | worker processes restarted: crashed (died on its own), timeout (killed past `exec_timeout_ms`), unresponsive (stopped taking requests), protocol (answered with invalid data) |
//! | `aqueduct_stage_workers` | gauge | stage, state | workers `up`, and `down` (starting or restarting) |
//! | `aqueduct_worker_rss_bytes` | gauge | stage, worker | resident memory of each worker process (sampled every second; 0 while it restarts) |
//! | `aqueduct_arena_bytes` | gauge | state | the shared-memory arena: `used` by live blocks, `free` (sampled every second) |

use std::time::Duration;

use crate::Error;

/// Histogram bucket bounds for the timings, in seconds: 50 us to 5 s.
pub const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Why a batch was flushed, in the order of the `reason` labels.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const FLUSH_REASONS: [&str; 5] = ["full", "timeout", "immediate", "drain", "retry"];
/// Why a worker process was restarted (the `cause` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartCause {
    /// It died on its own.
    Crashed = 0,
    /// The runtime killed it: a batch ran past the stage's execution timeout.
    Timeout = 1,
    /// The runtime killed it: it stopped taking requests.
    Unresponsive = 2,
    /// The runtime killed it: it answered with invalid data.
    Protocol = 3,
}

/// The `cause` labels, indexed by [`RestartCause`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const RESTART_CAUSES: [&str; 4] = ["crashed", "timeout", "unresponsive", "protocol"];

/// How often a flow samples its workers' memory and the arena.
#[cfg(feature = "metrics")]
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The `outcome` labels of `aqueduct_requests_total` (and of the `finished` event).
const OUTCOMES: [&str; 9] = [
    "success",
    "timeout",
    "overloaded",
    "cancelled",
    "handler_error",
    "worker_crashed",
    "protocol",
    "stopped",
    "other",
];

/// The index in [`OUTCOMES`] of a `process` call's result.
fn outcome_index<T>(outcome: &Result<T, Error>) -> usize {
    match outcome {
        Ok(_) => 0,
        Err(Error::Timeout { .. }) => 1,
        Err(Error::Overloaded { .. }) => 2,
        Err(Error::Cancelled) => 3,
        Err(Error::Handler { .. }) => 4,
        Err(Error::WorkerCrashed { .. }) => 5,
        Err(Error::WorkerProtocol { .. }) => 6,
        Err(Error::Stopped | Error::NotRunning) => 7,
        Err(_) => 8,
    }
}

/// The `outcome` label of a `process` call's result.
pub(crate) fn outcome_label<T>(outcome: &Result<T, Error>) -> &'static str {
    OUTCOMES[outcome_index(outcome)]
}

/// A flow's metric handles, registered once at start: recording is then an atomic
/// operation, not a lookup by name. Metrics go to the recorder installed when the flow
/// started, so install it first.
pub(crate) struct FlowMetrics {
    #[cfg(feature = "metrics")]
    requests: [metrics::Counter; OUTCOMES.len()],
    #[cfg(feature = "metrics")]
    duration: metrics::Histogram,
}

impl FlowMetrics {
    pub(crate) fn new(flow: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self {
                requests: OUTCOMES.map(|outcome| {
                    metrics::counter!("aqueduct_requests_total", "flow" => flow, "outcome" => outcome)
                }),
                duration: metrics::histogram!("aqueduct_request_duration_seconds", "flow" => flow),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = flow;
            Self {}
        }
    }

    /// A `process` call ended with `outcome` after `took`.
    pub(crate) fn request<T>(&self, outcome: &Result<T, Error>, took: Duration) {
        #[cfg(feature = "metrics")]
        {
            self.requests[outcome_index(outcome)].increment(1);
            self.duration.record(took.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (outcome, took);
    }
}

/// A stage's metric handles (see [`FlowMetrics`]).
pub(crate) struct StageMetrics {
    #[cfg(feature = "metrics")]
    handles: StageHandles,
}

#[cfg(feature = "metrics")]
struct StageHandles {
    batch_size: metrics::Histogram,
    batch_fill: metrics::Histogram,
    flushes: [metrics::Counter; FLUSH_REASONS.len()],
    depth: metrics::Gauge,
    queue_wait: metrics::Histogram,
    compute: metrics::Histogram,
    transfer: metrics::Histogram,
    deadline: metrics::Counter,
    cancelled: metrics::Counter,
    restarts: [metrics::Counter; RESTART_CAUSES.len()],
    up: metrics::Gauge,
    down: metrics::Gauge,
    /// Per worker process (empty for thread workers).
    rss: Vec<metrics::Gauge>,
}

impl StageMetrics {
    pub(crate) fn new(stage: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let handles = StageHandles {
                batch_size: metrics::histogram!("aqueduct_stage_batch_size", "stage" => stage),
                batch_fill: metrics::histogram!("aqueduct_stage_batch_fill_duration_seconds", "stage" => stage),
                flushes: FLUSH_REASONS.map(|reason| {
                    metrics::counter!("aqueduct_stage_batch_flush_total", "stage" => stage, "reason" => reason)
                }),
                depth: metrics::gauge!("aqueduct_stage_queue_depth", "stage" => stage),
                queue_wait: metrics::histogram!("aqueduct_stage_queue_duration_seconds", "stage" => stage),
                compute: metrics::histogram!("aqueduct_stage_compute_duration_seconds", "stage" => stage),
                transfer: metrics::histogram!("aqueduct_stage_transfer_duration_seconds", "stage" => stage),
                deadline: metrics::counter!("aqueduct_stage_abandoned_total", "stage" => stage, "reason" => "deadline"),
                cancelled: metrics::counter!("aqueduct_stage_abandoned_total", "stage" => stage, "reason" => "cancelled"),
                restarts: RESTART_CAUSES.map(|cause| {
                    metrics::counter!("aqueduct_worker_restarts_total", "stage" => stage, "cause" => cause)
                }),
                up: metrics::gauge!("aqueduct_stage_workers", "stage" => stage, "state" => "up"),
                down: metrics::gauge!("aqueduct_stage_workers", "stage" => stage, "state" => "down"),
                rss: Vec::new(),
            };
            Self { handles }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = stage;
            Self {}
        }
    }

    /// A batch of `size` tasks was formed, flushed for `reason` (one of
    /// [`FLUSH_REASONS`]), with `queued()` tasks left in the queue.
    pub(crate) fn batch(&self, size: usize, reason: &'static str, queued: impl FnOnce() -> usize) {
        #[cfg(feature = "metrics")]
        {
            let h = &self.handles;
            h.batch_size.record(size as f64);
            if let Some(index) = FLUSH_REASONS.iter().position(|r| *r == reason) {
                h.flushes[index].increment(1);
            }
            h.depth.set(queued() as f64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (size, reason, queued);
    }

    /// A batch took `took` to form, from its first task to its flush.
    pub(crate) fn batch_fill(&self, took: Duration) {
        #[cfg(feature = "metrics")]
        self.handles.batch_fill.record(took.as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = took;
    }

    /// A task waited `wait` in the stage's queue.
    pub(crate) fn queue_wait(&self, wait: Duration) {
        #[cfg(feature = "metrics")]
        self.handles.queue_wait.record(wait.as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = wait;
    }

    /// Registers the memory gauges of a stage's `workers` worker processes.
    pub(crate) fn track_worker_processes(&mut self, stage: &'static str, workers: usize) {
        #[cfg(feature = "metrics")]
        {
            self.handles.rss = (0..workers)
                .map(|worker| {
                    metrics::gauge!("aqueduct_worker_rss_bytes", "stage" => stage, "worker" => worker.to_string())
                })
                .collect();
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (stage, workers);
    }

    /// A dispatch was answered: the handler ran `compute` on it, and the rest of the
    /// round trip, `transfer`, went to moving the batch. One observation each per
    /// dispatch (a run of single-task calls sent together is one), not per call: per
    /// call, a stage of single-task batches would pay a histogram record per task.
    pub(crate) fn answered(&self, compute: Duration, transfer: Duration) {
        #[cfg(feature = "metrics")]
        {
            self.handles.compute.record(compute.as_secs_f64());
            self.handles.transfer.record(transfer.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (compute, transfer);
    }

    /// Worker process `worker` holds `bytes` of resident memory.
    #[cfg(feature = "metrics")]
    pub(crate) fn worker_rss(&self, worker: usize, bytes: u64) {
        if let Some(gauge) = self.handles.rss.get(worker) {
            gauge.set(bytes as f64);
        }
    }

    /// Tasks dropped before dispatch: past their deadline, or their caller gone.
    pub(crate) fn abandoned(&self, deadline: usize, cancelled: usize) {
        #[cfg(feature = "metrics")]
        {
            if deadline > 0 {
                self.handles.deadline.increment(deadline as u64);
            }
            if cancelled > 0 {
                self.handles.cancelled.increment(cancelled as u64);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (deadline, cancelled);
    }

    /// `up` workers serve, `down` are starting or restarting.
    pub(crate) fn workers(&self, up: usize, down: usize) {
        #[cfg(feature = "metrics")]
        {
            self.handles.up.set(up as f64);
            self.handles.down.set(down as f64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (up, down);
    }

    /// A worker process was restarted for `cause`.
    pub(crate) fn restarted(&self, cause: RestartCause) {
        #[cfg(feature = "metrics")]
        self.handles.restarts[cause as usize].increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = cause;
    }
}

/// The arena's bytes `used` by live blocks and `free`.
#[cfg(feature = "metrics")]
pub(crate) fn arena(used: usize, free: usize) {
    metrics::gauge!("aqueduct_arena_bytes", "state" => "used").set(used as f64);
    metrics::gauge!("aqueduct_arena_bytes", "state" => "free").set(free as f64);
}
