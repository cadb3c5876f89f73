//! One batch handed to its worker: its outcome awaited, then each task delivered,
//! failed, or sent again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::direct::Running;
use super::downstream::{Downstream, Pushed, Waiting};
use super::envelope::{Envelope, Route};
use super::pace::Pace;
use crate::exec::{BatchResults, Dispatched, LostTask};
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
    /// Where batches to run again go (see [`super::runner::StageRunner::run`]).
    pub retries: async_channel::Sender<Vec<Envelope<S::Input, R>>>,
    /// The stage's `crash_retry` setting.
    pub crash_retry: bool,
}

pin_project! {
    /// One batch handed to its worker: a future that awaits its outcome and delivers it,
    /// then gives the job of a lone task that went on straight to the next stage (see
    /// [`Downstream::push_alone`]), to be run once this job's seat is given back.
    ///
    /// Written by hand rather than as an `async fn` because a caller that finds a stage
    /// idle boxes it (see `direct`): an `async fn` keeps its arguments besides what it
    /// awaits, so the executor's future was held twice, and with the deliveries' room
    /// the job took 1.6 KiB, past glibc's fast allocation path. Here the outcome is
    /// polled in place and a delivery that must wait (a full next queue, or a run of
    /// tasks) is boxed.
    pub(super) struct Job<S: Stage, R: Task, D, F> {
        worker: usize,
        count: u64,
        sent: Instant,
        // The executor's answer for the batch.
        #[pin]
        outcome: F,
        // Where each task of the batch goes, in order (the executor holds the tasks).
        routes: Vec<Route<R>>,
        delivery: Arc<Delivery<S, R, D>>,
        // The delivery, once the outcome is in, if it had to wait (it then gives no
        // next job: only a lone task goes straight on, and only when it need not wait).
        delivering: Option<Waiting>,
    }
}

impl<S: Stage, R: Task, D, F> Job<S, R, D, F> {
    /// The job of `count` tasks handed to `worker` at `sent`, whose answer is `outcome`
    /// and whose tasks go where `routes` say, in order (the executor holds the tasks).
    pub(super) fn new(
        worker: usize,
        count: u64,
        sent: Instant,
        outcome: F,
        routes: Vec<Route<R>>,
        delivery: Arc<Delivery<S, R, D>>,
    ) -> Self {
        Self {
            worker,
            count,
            sent,
            outcome,
            routes,
            delivery,
            delivering: None,
        }
    }
}

impl<S, R, D, F> Future for Job<S, R, D, F>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    F: Future<Output = Dispatched<S::Input, S::Output>>,
{
    type Output = Option<Running>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Running>> {
        let this = self.project();
        if this.delivering.is_none() {
            let outcome = ready!(this.outcome.poll(cx));
            let routes = std::mem::take(this.routes);
            let settled = settle(
                outcome,
                routes,
                this.delivery,
                *this.worker,
                *this.sent,
                *this.count,
            );
            match settled {
                Pushed::Done(next) => return Poll::Ready(next),
                Pushed::Waiting(delivering) => *this.delivering = Some(delivering),
            }
        }
        let Some(delivering) = this.delivering.as_mut() else {
            unreachable!("set above");
        };
        ready!(delivering.as_mut().poll(cx));
        *this.delivering = None;
        Poll::Ready(None)
    }
}

/// Delivers, fails or sends again each task of a batch, by its outcome.
fn settle<S, R, D>(
    outcome: Dispatched<S::Input, S::Output>,
    routes: Vec<Route<R>>,
    delivery: &Arc<Delivery<S, R, D>>,
    worker: usize,
    sent: Instant,
    count: u64,
) -> Pushed
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
{
    match outcome {
        Dispatched::Answered { results, compute } => {
            let answered = Instant::now();
            delivery.pace.record(worker, sent, answered, count);
            delivery.counters.set_pace(delivery.pace.per_task_ns());
            // The worker's figure, bounded by the round trip the parent saw.
            let round_trip = answered - sent;
            let compute = compute.min(round_trip);
            delivery.counters.answered(compute, round_trip - compute);
            return deliver(results, routes, delivery, worker, answered);
        }
        Dispatched::Unrun(tasks) => {
            // Nothing ran: the whole batch goes again, as it was. (The retries channel
            // is unbounded: only a stopped runner refuses, and then the batch drops.)
            let batch = routes
                .into_iter()
                .zip(tasks)
                .map(|(route, task)| route.carry(task));
            let _ = delivery.retries.try_send(batch.collect());
        }
        Dispatched::Lost { error, tasks } => {
            report_lost(S::NAME, &error);
            let (mut results, mut finished, mut unrun) = (Vec::new(), Vec::new(), Vec::new());
            for (mut route, task) in routes.into_iter().zip(tasks) {
                match task {
                    // What the worker finished before it was lost is delivered as answered.
                    LostTask::Finished(result) => {
                        results.push(result);
                        finished.push(route);
                    }
                    // A task that may have run goes again on its own, so that a poison
                    // task can take down no other task twice; one lost twice is failed.
                    LostTask::Running(task) => {
                        if delivery.crash_retry && route.lost() < MAX_LOSSES {
                            delivery.counters.retried();
                            let _ = delivery.retries.try_send(vec![route.carry(task)]);
                        } else {
                            delivery.counters.failed();
                            route.fail(error.clone());
                        }
                    }
                    // The tasks it never began go again together, as an unrun batch.
                    LostTask::Unrun(task) => unrun.push(route.carry(task)),
                }
            }
            if !unrun.is_empty() {
                let _ = delivery.retries.try_send(unrun);
            }
            if !results.is_empty() {
                return deliver(results, finished, delivery, worker, Instant::now());
            }
        }
        Dispatched::Failed(error) => routes
            .into_iter()
            .for_each(|route| route.fail(error.clone())),
    }
    Pushed::Done(None)
}

/// Passes a batch's outputs on and answers its failed tasks.
fn deliver<S, R, D>(
    results: BatchResults<Owned<S::Output>>,
    routes: Vec<Route<R>>,
    delivery: &Arc<Delivery<S, R, D>>,
    worker: usize,
    answered: Instant,
) -> Pushed
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
{
    // A lone task, with nothing queued behind it at this stage (under load, the next
    // stage's queue is the way): if the next stage is idle, it is dispatched there
    // straight, and its job comes back to run after this one.
    if matches!(results.as_slice(), [Ok(_)]) && delivery.counters.queued() == 0 {
        let Some((route, Ok(output))) = routes.into_iter().zip(results).next() else {
            unreachable!("matched as one output");
        };
        let envelope = route.forward(output, answered);
        return delivery.downstream.push_alone(envelope, answered);
    }
    // Together: one lock and one wake-up at the next stage for the whole batch, the
    // failed tasks answered as they are met.
    let delivery = delivery.clone();
    Pushed::Waiting(Box::pin(async move {
        let pid = delivery.counters.pid(worker);
        let counters = &delivery.counters;
        let mut reported: Option<String> = None;
        let outputs =
            routes
                .into_iter()
                .zip(results)
                .filter_map(move |(route, result)| match result {
                    Ok(output) => Some(route.forward(output, answered)),
                    Err(message) => {
                        counters.failed();
                        // A failure of a whole handler call repeats its message for each task
                        // of the call; it is one failure, reported once.
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
        delivery.downstream.push_all(outputs).await;
    }))
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
