//! One batch handed to its worker: its outcome awaited, then each task delivered,
//! failed, or sent again.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use super::direct::Running;
use super::downstream::Downstream;
use super::envelope::{Envelope, Route};
use super::pace::Pace;
use crate::exec::{BatchResults, Dispatched};
use crate::shm::Owned;
use crate::stats::StageCounters;
use crate::{Error, Stage, Task};

/// How many times a worker may be lost while holding one task before the task is failed
/// rather than run again: a task that kills its worker twice, once in its batch and once
/// on its own, is the poison.
const MAX_LOSSES: u32 = 2;

/// What a stage's jobs share to deliver their batches: one reference count a job, not
/// one a field (each is an atomic write, twice, per dispatch).
pub(super) struct Delivery<S: Stage, R: Task, D> {
    pub downstream: D,
    pub counters: Arc<StageCounters>,
    pub pace: Arc<Pace>,
    /// Where batches to run again go (see [`StageRunner::run`]).
    pub retries: async_channel::Sender<Vec<Envelope<S::Input, R>>>,
    /// The stage's `crash_retry` setting.
    pub crash_retry: bool,
}

/// One batch handed to its worker: its results awaited, then delivered.
pub(super) struct Job<S: Stage, R: Task, D, F> {
    pub worker: usize,
    pub count: u64,
    pub sent: Instant,
    /// The executor's answer for the batch.
    pub outcome: F,
    /// Where each task of the batch goes, in order (the executor holds the tasks).
    pub routes: Vec<Route<R>>,
    pub delivery: Arc<Delivery<S, R, D>>,
}

impl<S, R, D, F> Job<S, R, D, F>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    F: Future<Output = Dispatched<S::Input, S::Output>>,
{
    /// Awaits the batch's outcome and delivers it; returns the job of a lone task that
    /// went on straight to the next stage (see [`Downstream::push_alone`]), to be run
    /// once this job's seat is given back.
    pub(super) async fn run(self) -> Option<Running> {
        let routes = self.routes;
        let delivery = &*self.delivery;
        match self.outcome.await {
            Dispatched::Answered { results, compute } => {
                let answered = Instant::now();
                delivery
                    .pace
                    .record(self.worker, self.sent, answered, self.count);
                delivery.counters.set_pace(delivery.pace.per_task_ns());
                // The worker's figure, bounded by the round trip the parent saw.
                let round_trip = answered - self.sent;
                let compute = compute.min(round_trip);
                delivery.counters.answered(compute, round_trip - compute);
                let pid = delivery.counters.pid(self.worker);
                return deliver::<S, R, D>(
                    results,
                    routes,
                    &delivery.downstream,
                    &delivery.counters,
                    pid,
                    answered,
                )
                .await;
            }
            Dispatched::Unrun(tasks) => {
                // Nothing ran: the whole batch goes again, as it was.
                let batch = routes
                    .into_iter()
                    .zip(tasks)
                    .map(|(route, task)| route.carry(task));
                // Boxed, as below: rare, and the send's room would be carried by
                // every job's future.
                let _ = Box::pin(delivery.retries.send(batch.collect())).await;
            }
            Dispatched::Lost { error, tasks } => {
                report_lost(S::NAME, &error);
                // Each task goes again on its own, so that a poison task can take down
                // no other task twice; one lost twice is failed (and dropped).
                for (mut route, task) in routes.into_iter().zip(tasks) {
                    if delivery.crash_retry && route.lost() < MAX_LOSSES {
                        delivery.counters.retried();
                        let _ = Box::pin(delivery.retries.send(vec![route.carry(task)])).await;
                    } else {
                        delivery.counters.failed();
                        route.fail(error.clone());
                    }
                }
            }
            Dispatched::Failed(error) => routes
                .into_iter()
                .for_each(|route| route.fail(error.clone())),
        }
        None
    }
}

async fn deliver<S: Stage, R: Task, D: Downstream<S::Output, R>>(
    results: BatchResults<Owned<S::Output>>,
    routes: Vec<Route<R>>,
    downstream: &D,
    counters: &StageCounters,
    pid: u32,
    answered: Instant,
) -> Option<Running> {
    // A lone task, with nothing queued behind it at this stage (under load, the next
    // stage's queue is the way): if the next stage is idle, it is dispatched there
    // straight, and its job comes back to run after this one.
    if matches!(results.as_slice(), [Ok(_)]) && counters.queued() == 0 {
        let (route, Ok(output)) = routes.into_iter().zip(results).next()? else {
            unreachable!("matched as one output");
        };
        return downstream
            .push_alone(route.forward(output, answered), answered)
            .await;
    }
    // Together: one lock and one wake-up at the next stage for the whole batch, the
    // failed tasks answered as they are met.
    let mut reported: Option<String> = None;
    let outputs = routes
        .into_iter()
        .zip(results)
        .filter_map(move |(route, result)| match result {
            Ok(output) => Some(route.forward(output, answered)),
            Err(message) => {
                counters.failed();
                // A failure of a whole handler call repeats its message for each task of
                // the call; it is one failure, reported once.
                if reported.as_deref() != Some(message.as_str()) {
                    report_failed(S::NAME, pid, &message);
                    reported = Some(message.clone());
                }
                route.fail(Error::Handler {
                    stage: S::NAME,
                    message,
                });
                None
            }
        });
    downstream.push_all(outputs).await;
    None
}

/// One ERROR event for a handler's error or panic, with its stage and worker (pid 0
/// for a worker thread), so an error-reporting layer (`sentry-tracing`, say) sees it.
fn report_failed(stage: &'static str, pid: u32, message: &str) {
    tracing::error!(stage, pid, "handler failed: {message}");
}

/// One ERROR event for a lost worker process (crash, timeout, protocol violation).
fn report_lost(stage: &'static str, error: &Error) {
    let pid = match error {
        Error::WorkerCrashed { pid, .. } | Error::WorkerProtocol { pid, .. } => *pid,
        _ => 0,
    };
    tracing::error!(stage, pid, "worker lost: {error}");
}
