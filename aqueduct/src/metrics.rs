//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`):
//! whatever recorder the application installs (a Prometheus exporter, say) receives
//! them. Without the feature every function here is empty, and with it but no recorder
//! installed each is a check of the global recorder.
//!
//! Names and types follow Triton's; labels are `flow` and `stage` (never a task id).
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
//! | `aqueduct_stage_batch_flush_total` | counter | stage, reason | dispatches by why the batch was flushed: full, timeout, immediate, drain, retry |
//! | `aqueduct_stage_compute_duration_seconds` | histogram | stage | a dispatch, handed to the worker to answered (as the parent sees it) |
//! | `aqueduct_stage_abandoned_total` | counter | stage, reason | tasks dropped before dispatch: deadline, cancelled |
//! | `aqueduct_worker_restarts_total` | counter | stage | worker processes restarted |

use std::time::Duration;

/// Histogram bucket bounds for the timings, in seconds: 50 us to 5 s.
pub const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// A `process` call ended with `outcome` after `took`.
pub(crate) fn request(flow: &'static str, outcome: &'static str, took: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("aqueduct_requests_total", "flow" => flow, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("aqueduct_request_duration_seconds", "flow" => flow)
            .record(took.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (flow, outcome, took);
}

/// A batch of `size` tasks formed at `stage`, flushed for `reason`, with `queued` left.
pub(crate) fn batch(stage: &'static str, size: usize, reason: &'static str, queued: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::histogram!("aqueduct_stage_batch_size", "stage" => stage).record(size as f64);
        metrics::counter!("aqueduct_stage_batch_flush_total", "stage" => stage, "reason" => reason)
            .increment(1);
        metrics::gauge!("aqueduct_stage_queue_depth", "stage" => stage).set(queued as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (stage, size, reason, queued);
}

/// A task waited `wait` in `stage`'s queue.
pub(crate) fn queue_wait(stage: &'static str, wait: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("aqueduct_stage_queue_duration_seconds", "stage" => stage)
        .record(wait.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (stage, wait);
}

/// A dispatch at `stage` was answered `took` after it was handed to its worker.
pub(crate) fn compute(stage: &'static str, took: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("aqueduct_stage_compute_duration_seconds", "stage" => stage)
        .record(took.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (stage, took);
}

/// `count` tasks at `stage` were dropped before dispatch, for `reason`.
pub(crate) fn abandoned(stage: &'static str, reason: &'static str, count: usize) {
    #[cfg(feature = "metrics")]
    if count > 0 {
        metrics::counter!("aqueduct_stage_abandoned_total", "stage" => stage, "reason" => reason)
            .increment(count as u64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (stage, reason, count);
}

/// A worker process of `stage` was restarted.
pub(crate) fn restarted(stage: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("aqueduct_worker_restarts_total", "stage" => stage).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = stage;
}
