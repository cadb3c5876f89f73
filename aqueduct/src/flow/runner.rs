//! The per-stage loop: idle worker -> batch -> admission -> executor -> downstream.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::batcher;
use super::control::Control;
use super::downstream::Downstream;
use super::envelope::Envelope;
use super::pace::Pace;
use super::stats::StageCounters;
use crate::exec::{BatchResults, Executor};
use crate::{Error, Stage, StageConfig, Task};

/// Most single-task batches handed to a worker at once.
pub(crate) const MAX_RUN: usize = 64;
/// How long after its admission check any task of a run should start, by the stage's
/// measured pace.
const RUN_BUDGET: Duration = Duration::from_millis(2);

/// A place for one dispatch on a worker: the one it runs, or (`behind`) the one waiting
/// behind that.
#[derive(Debug, Clone, Copy)]
struct Seat {
    worker: usize,
    behind: bool,
}

pub(crate) struct StageRunner<S: Stage, R, D, E> {
    pub input: async_channel::Receiver<Envelope<S::Input, R>>,
    pub downstream: Arc<D>,
    pub executor: Arc<E>,
    pub config: StageConfig,
    pub control: Arc<Control>,
    pub counters: Arc<StageCounters>,
    pub pace: Arc<Pace>,
}

impl<S, R, D, E> StageRunner<S, R, D, E>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    E: Executor<S>,
{
    /// Runs until the input queue is closed and drained and every batch has been
    /// delivered; then the downstream is dropped, which closes the next stage's queue.
    pub(crate) async fn run(self) {
        // A worker's seats sit in this queue while free. Taking one before collecting a
        // batch means batches form only when a worker can take them, so under load tasks
        // accumulate in the queue and batches come out full.
        //
        // A pipelined stage gives each worker a second seat, behind the one it runs: the
        // next run already waits on the worker when it finishes one, instead of the worker
        // idling while its answer travels back and the next dispatch is made. Only a
        // stage measured to take 20 us to 1 ms a task uses it (see `queues_behind`), so a
        // task waits behind another dispatch for at most a short run; otherwise the second
        // seats are parked, and admission (deadlines, callers gone) happens as late as
        // without pipelining.
        let workers = self.config.nprocs;
        let depth = if self.config.pipelined() {
            self.executor.depth().clamp(1, 2)
        } else {
            1
        };
        let (seats_tx, seats_rx) = async_channel::bounded(workers * depth);
        for behind in [false, true].into_iter().take(depth) {
            for worker in 0..workers {
                let _ = seats_tx.try_send(Seat { worker, behind });
            }
        }
        let mut parked: Vec<Seat> = Vec::new();
        while let Ok(seat) = seats_rx.recv().await {
            let pipelining = self.queues_behind(depth);
            if seat.behind && !pipelining {
                parked.push(seat);
                continue;
            }
            if pipelining && !parked.is_empty() {
                parked.drain(..).for_each(|seat| {
                    let _ = seats_tx.try_send(seat);
                });
            }
            let ahead = if pipelining { depth } else { 1 };
            let Ok(first) = self.input.recv().await else {
                let _ = seats_tx.try_send(seat);
                break;
            };
            let batch = batcher::collect(
                &self.input,
                first,
                self.dispatch_size(ahead),
                self.config.batch_timeout,
            )
            .await;
            let mut batch = self.admit(batch);
            if batch.is_empty() {
                let _ = seats_tx.try_send(seat);
                continue;
            }
            let tasks: Vec<S::Input> = batch.iter_mut().map(Envelope::take_task).collect();
            self.counters
                .dispatched(tasks.len().div_ceil(self.config.batch_size), tasks.len());
            let quiet = self.is_quiet();
            let count = tasks.len() as u64;
            // Handed to the worker here, before any task is spawned, so that one worker
            // sees dispatches in the order they were made.
            let outcome = self.executor.run(seat.worker, tasks, quiet);
            let job = Job::<S, R, D, _> {
                worker: seat.worker,
                count,
                sent: Instant::now(),
                outcome,
                batch,
                downstream: self.downstream.clone(),
                counters: self.counters.clone(),
                pace: self.pace.clone(),
            };
            if quiet || (workers == 1 && ahead == 1) {
                // Nothing else is waiting (quiet), or the only worker takes no other batch
                // until this one is delivered: run it here, saving a task spawn and two
                // wake-ups.
                job.run().await;
                let _ = seats_tx.try_send(seat);
            } else {
                let seats = seats_tx.clone();
                tokio::spawn(async move {
                    job.run().await;
                    let _ = seats.send(seat).await;
                });
            }
        }
        // Wait until every seat is free again: all in-flight batches delivered.
        for _ in parked.len()..workers * depth {
            if seats_rx.recv().await.is_err() {
                break;
            }
        }
        self.executor.shutdown().await;
    }

    /// Whether a dispatch may wait behind the one a worker runs. Only for a stage whose
    /// measured pace fits a task into a run's share of `RUN_BUDGET`, so the wait is
    /// short; slower stages keep late admission, and their workers' idle moment between
    /// dispatches is small next to their handler time. And only for a stage whose tasks
    /// take at least `PIPELINE_MIN_PACE`: below that the parent, not the worker, is the
    /// bottleneck, and a second dispatch in flight only adds to the parent's work
    /// (measured: 3 no-op stages lost about a quarter of their throughput).
    fn queues_behind(&self, depth: usize) -> bool {
        const PIPELINE_MIN_PACE: Duration = Duration::from_micros(20);
        let pace = self.pace.per_task_ns();
        depth > 1
            && pace >= PIPELINE_MIN_PACE.as_nanos() as u64
            && pace <= RUN_BUDGET.as_nanos() as u64 / depth as u64
    }

    /// How many tasks to hand a worker at once. Normally one batch. For a fast stage of
    /// single-task batches without a batch timeout, a run of queued tasks travels together
    /// (each is still its own handler call), so a busy worker gets many tasks per wake-up
    /// instead of one. A run is bounded by the stage's measured pace (a stage not yet
    /// measured gets single tasks) to its share of `RUN_BUDGET` among the `ahead`
    /// dispatches a worker holds, so every task starts within about `RUN_BUDGET` of its
    /// admission check; runs are also split fairly across workers.
    fn dispatch_size(&self, ahead: usize) -> usize {
        let pace = self.pace.per_task_ns();
        if !self.config.pipelined() || pace == 0 {
            return self.config.batch_size;
        }
        let budget = RUN_BUDGET.as_nanos() as u64 / ahead as u64;
        let affordable = (budget / pace).clamp(1, MAX_RUN as u64) as usize;
        let fair_share = (self.input.len() + 1).div_ceil(self.config.nprocs * ahead);
        affordable
            .min(fair_share)
            .min(self.executor.max_dispatch())
            .max(1)
    }

    /// The flow serves a single request and this stage is fast (< 100 us a task): the
    /// latency regime, where waiting actively for the worker beats a wake-up. Under any
    /// load this is false, so no thread is spent spinning while there is other work.
    fn is_quiet(&self) -> bool {
        let pace = self.pace.per_task_ns();
        self.control.in_flight() <= 1 && self.input.is_empty() && pace != 0 && pace < 100_000
    }

    /// Drops tasks that must not reach the handler: all of them once the flow is halted,
    /// otherwise those whose caller left or whose deadline passed.
    fn admit(&self, batch: Vec<Envelope<S::Input, R>>) -> Vec<Envelope<S::Input, R>> {
        let before = batch.len();
        let admitted: Vec<_> = if self.control.is_halted() {
            Vec::new()
        } else {
            let now = Instant::now();
            batch
                .into_iter()
                .filter(|envelope| !envelope.is_abandoned(now))
                .collect()
        };
        self.counters.abandoned(before - admitted.len());
        admitted
    }
}

/// One batch handed to its worker: its results awaited, then delivered.
struct Job<S: Stage, R, D, F> {
    worker: usize,
    count: u64,
    sent: Instant,
    /// The executor's answer for the batch.
    outcome: F,
    batch: Vec<Envelope<S::Input, R>>,
    downstream: Arc<D>,
    counters: Arc<StageCounters>,
    pace: Arc<Pace>,
}

impl<S, R, D, F> Job<S, R, D, F>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    F: Future<Output = Result<BatchResults<S::Output>, Error>>,
{
    async fn run(self) {
        let outcome = self.outcome.await;
        self.pace.record(self.worker, self.sent, self.count);
        deliver::<S, R, D>(outcome, self.batch, &*self.downstream, &self.counters).await;
    }
}

async fn deliver<S: Stage, R: Task, D: Downstream<S::Output, R>>(
    outcome: Result<BatchResults<S::Output>, Error>,
    batch: Vec<Envelope<S::Input, R>>,
    downstream: &D,
    counters: &StageCounters,
) {
    match outcome {
        Ok(results) => {
            for (envelope, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(output) => downstream.push(envelope.with_task(output)).await,
                    Err(message) => {
                        counters.failed();
                        envelope.fail(Error::Handler {
                            stage: S::NAME,
                            message,
                        });
                    }
                }
            }
        }
        Err(error) => batch
            .into_iter()
            .for_each(|envelope| envelope.fail(error.clone())),
    }
}
