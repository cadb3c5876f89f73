//! What the flow tells observers about a task's way through it: `tracing` events under
//! the span of its `process` call (debug level, so they cost a level check when nobody
//! listens), and, with the `metrics` feature, the metrics of [`crate::metrics`].

use tokio::time::Instant;

use super::batcher::Flush;
use super::envelope::Route;
use crate::stats::StageCounters;
use crate::task::TaskField;

/// A batch is handed to worker `worker` of the stage `counters` count: per task, a
/// `dispatched` event with how long it waited in the stage's queue, the batch's size and
/// why it was flushed (`retry` for a batch sent again). Returns the batch's span, a
/// child of its first task's `process` span that follows from the others' (disabled
/// when the tasks are not observed): what the handler logs while it runs the batch goes
/// there, even from a worker process. `now` is the dispatch's time.
pub(crate) fn dispatch<R: TaskField>(
    routes: &[Route<R>],
    worker: usize,
    counters: &StageCounters,
    flush: Option<Flush>,
    now: Instant,
) -> tracing::Span {
    // Tasks are observed all or none (see `Route`): nothing to do for unobserved ones.
    if !routes.first().is_some_and(Route::is_observed) {
        return tracing::Span::none();
    }
    let stage = counters.name;
    let reason = flush.map_or("retry", Flush::as_str);
    counters
        .metrics
        .batch(routes.len(), reason, || counters.queued());
    let pid = counters.pid(worker);
    let mut batch = tracing::Span::none();
    for route in routes {
        let wait = route.queue_wait(now).unwrap_or_default();
        counters.metrics.queue_wait(wait);
        let Some(span) = route.span() else {
            continue;
        };
        tracing::debug!(
            parent: span,
            stage,
            worker,
            pid,
            batch = routes.len(),
            flush = reason,
            queue_wait_us = wait.as_micros() as u64,
            "dispatched"
        );
        if batch.is_none() {
            batch = tracing::debug_span!(
                parent: span,
                "aqueduct.batch",
                stage,
                worker,
                pid,
                size = routes.len(),
                flush = reason
            );
        } else {
            batch.follows_from(span);
        }
    }
    batch
}
