//! What the flow tells observers about a task's way through it: `tracing` events under
//! the span of its `process` call (debug level, so they cost a level check when nobody
//! listens), and, with the `metrics` feature, the metrics of [`crate::metrics`].

use tokio::time::Instant;

use super::batcher::Flush;
use super::envelope::Route;
use crate::stats::StageCounters;
use crate::task::TaskField;

/// A batch is handed to worker `worker` of `stage`: per task, a `dispatched` event with
/// how long it waited in the stage's queue, the batch's size and why it was flushed
/// (`retry` for a batch sent again).
pub(crate) fn dispatch<R: TaskField>(
    stage: &'static str,
    routes: &[Route<R>],
    worker: usize,
    counters: &StageCounters,
    flush: Option<Flush>,
) {
    let now = Instant::now();
    let reason = flush.map_or("retry", Flush::as_str);
    crate::metrics::batch(stage, routes.len(), reason, counters.queued());
    if !tracing::enabled!(tracing::Level::DEBUG) {
        for route in routes {
            if let Some(wait) = route.queue_wait(now) {
                crate::metrics::queue_wait(stage, wait);
            }
        }
        return;
    }
    let pid = counters.pid(worker);
    for route in routes {
        let wait = route.queue_wait(now).unwrap_or_default();
        crate::metrics::queue_wait(stage, wait);
        tracing::debug!(
            parent: route.span(),
            stage,
            worker,
            pid,
            batch = routes.len(),
            flush = reason,
            queue_wait_us = wait.as_micros() as u64,
            "dispatched"
        );
    }
}
