//! Handing one batch to a worker: admission, the hand-over to the executor, and the
//! [`Job`] that sees it through. Shared by the stage's runner and by callers that find
//! a stage's worker idle (see [`super::direct`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::batcher::Flush;
use super::control::Control;
use super::downstream::Downstream;
use super::envelope::{Envelope, Unfit};
use super::job::{Delivery, Job};
use super::observe;
use super::pace::Pace;
use crate::exec::{Dispatched, Executor, Wait};
use crate::stats::StageCounters;
use crate::{Stage, StageConfig, Task};

/// The slowest pace at which a stage serving a single request is waited for actively
/// (see [`Dispatcher::is_quiet`]).
const QUIET_MAX_PACE: Duration = Duration::from_micros(100);

/// The slowest pace at which a stage serving a single request tells the next stage's
/// worker that the task is coming (see [`Dispatcher::dispatch`]): the worker then polls
/// for up to [`crate::spin::EXPECTED_POLL`], which must cover this stage's answer.
const EXPECT_MAX_PACE: Duration = Duration::from_micros(25);

/// The executor's answer for one dispatch, awaited by its job.
pub(super) trait Outcome<S: Stage>:
    Future<Output = Dispatched<S::Input, S::Output>> + Send + 'static
{
}

impl<S: Stage, F> Outcome<S> for F where
    F: Future<Output = Dispatched<S::Input, S::Output>> + Send + 'static
{
}

/// What a stage needs to dispatch a batch and deliver its results.
pub(crate) struct Dispatcher<S: Stage, R: Task, D, E> {
    pub executor: Arc<E>,
    pub config: StageConfig,
    pub control: Arc<Control>,
    pub counters: Arc<StageCounters>,
    pub pace: Arc<Pace>,
    /// What the stage's jobs share (the downstream, the counters, the way to retries).
    pub delivery: Arc<Delivery<S, R, D>>,
}

impl<S, R, D, E> Dispatcher<S, R, D, E>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    E: Executor<S>,
{
    /// Hands `batch` (after admission) to `worker`; the job that awaits and delivers its
    /// results, or `None` if no task of it was fit to run. `flush` says why the batch
    /// was cut (`None`: a batch run again).
    ///
    /// `now` is a clock reading the caller has just taken (the runner's, or a lone
    /// call's own at its start, or the previous stage's job's when it was answered),
    /// used for admission, observation and the executor: a clock reading costs tens of
    /// nanoseconds on a virtual machine, and a lone call otherwise read it at every step.
    pub(super) fn dispatch(
        &self,
        worker: usize,
        batch: Vec<Envelope<S::Input, R>>,
        flush: Option<Flush>,
        now: Instant,
    ) -> Option<Job<S, R, D, impl Outcome<S> + use<'_, S, R, D, E>>> {
        let batch = self.admit(batch, now);
        if batch.is_empty() {
            return None;
        }
        // The tasks are collected in place, into the batch's own allocation: one vector
        // made per dispatch (the routes'), not two.
        let mut routes = Vec::with_capacity(batch.len());
        let tasks: Vec<_> = batch
            .into_iter()
            .map(|envelope| {
                let (task, route) = envelope.split();
                routes.push(route);
                task
            })
            .collect();
        let span = observe::dispatch(&routes, worker, &self.counters, flush, now);
        self.counters
            .dispatched(tasks.len().div_ceil(self.config.batch_size), tasks.len());
        let wait = self.wait();
        let count = tasks.len() as u64;
        // Handed to the worker here, before any task is spawned, so that one worker
        // sees dispatches in the order they were made.
        let outcome = self.executor.run(worker, tasks, wait, span, now);
        // A lone request in a fast stage: the next stage's worker (after the last stage,
        // the first stage's, for the caller's next request), if it sleeps, is woken now,
        // while this stage's worker runs the task, rather than when the task reaches it.
        // On a 2-core VM waking a sleeping worker is most of a stage's share of a lone
        // request's latency.
        if wait == Wait::Spin && self.expects_next() {
            self.delivery.downstream.expect_next();
        }
        Some(Job::new(
            worker,
            count,
            now,
            outcome,
            routes,
            self.delivery.clone(),
        ))
    }

    /// The flow serves a single request and this stage is fast (< 100 us a task): the
    /// latency regime, where waiting actively for the worker beats a wake-up. Under any
    /// load this is false, so no thread is spent spinning while there is other work.
    pub(super) fn is_quiet(&self) -> bool {
        self.control.in_flight() <= 1 && self.counters.queued() == 0 && self.is_fast()
    }

    /// How this dispatch waits for its answer: actively in the latency regime
    /// ([`Self::is_quiet`]), looking between other tasks for a fast stage under load, and
    /// asleep for a slow stage (or one not measured yet), whose answer is worth a wake-up.
    fn wait(&self) -> Wait {
        if self.is_quiet() {
            Wait::Spin
        } else if self.is_fast() {
            Wait::Look
        } else {
            Wait::Sleep
        }
    }

    /// The flow measured that telling the next stage ahead pays (see `expecting`: it
    /// measures only where there are several stages and cores), and the stage answers a
    /// lone task fast enough for the next stage's worker to poll for it (see
    /// [`EXPECT_MAX_PACE`]).
    fn expects_next(&self) -> bool {
        self.control.expecting().on()
            && self.pace.per_task_ns() <= EXPECT_MAX_PACE.as_nanos() as u64
    }

    /// The stage is measured to take under 100 us a task.
    fn is_fast(&self) -> bool {
        let pace = self.pace.per_task_ns();
        pace != 0 && pace < QUIET_MAX_PACE.as_nanos() as u64
    }

    /// Keeps only the tasks that may reach the handler: none once the flow is halted
    /// (their callers are told it stopped); otherwise not those whose caller left, nor
    /// those whose deadline passed (answered with [`crate::Error::Timeout`]).
    fn admit(
        &self,
        mut batch: Vec<Envelope<S::Input, R>>,
        now: Instant,
    ) -> Vec<Envelope<S::Input, R>> {
        let before = batch.len();
        let (mut expired, mut cancelled) = (0, 0);
        if self.control.is_halted() {
            batch.clear();
        } else {
            // In place, keeping the order: an unfit task is rare.
            let mut index = 0;
            while index < batch.len() {
                match batch[index].unfit(now) {
                    None => index += 1,
                    Some(Unfit::Expired) => {
                        expired += 1;
                        batch.remove(index).expire();
                    }
                    Some(Unfit::Abandoned) => {
                        cancelled += 1;
                        drop(batch.remove(index));
                    }
                }
            }
        }
        self.counters.metrics.abandoned(expired, cancelled);
        self.counters.abandoned(before - batch.len());
        batch
    }
}
