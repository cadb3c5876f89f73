//! The per-stage loop: idle worker -> batch -> admission -> executor -> downstream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::batcher;
use super::control::Control;
use super::downstream::Downstream;
use super::envelope::Envelope;
use super::stats::StageCounters;
use crate::exec::Executor;
use crate::{Error, Stage, StageConfig, Task};

/// Most single-task batches handed to a worker at once.
pub(crate) const MAX_RUN: usize = 64;

pub(crate) struct StageRunner<S: Stage, R, D, E> {
    pub input: async_channel::Receiver<Envelope<S::Input, R>>,
    pub downstream: Arc<D>,
    pub executor: Arc<E>,
    pub config: StageConfig,
    pub control: Arc<Control>,
    pub counters: Arc<StageCounters>,
    /// Recent handler time per task, in nanoseconds (0 until measured).
    pub pace: Arc<AtomicU64>,
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
        // A worker's index sits in this queue while the worker is idle. Taking one before
        // collecting a batch means batches form only when a worker can take them, so under
        // load tasks accumulate in the queue and batches come out full.
        let workers = self.config.nprocs;
        let (idle_tx, idle_rx) = async_channel::bounded(workers);
        for worker in 0..workers {
            let _ = idle_tx.try_send(worker);
        }
        while let Ok(worker) = idle_rx.recv().await {
            let Ok(first) = self.input.recv().await else {
                let _ = idle_tx.try_send(worker);
                break;
            };
            let batch = batcher::collect(
                &self.input,
                first,
                self.dispatch_size(),
                self.config.batch_timeout,
            )
            .await;
            let mut batch = self.admit(batch);
            if batch.is_empty() {
                let _ = idle_tx.try_send(worker);
                continue;
            }
            let tasks: Vec<S::Input> = batch.iter_mut().map(Envelope::take_task).collect();
            self.counters
                .dispatched(tasks.len().div_ceil(self.config.batch_size), tasks.len());
            let job = Job {
                worker,
                tasks,
                batch,
                executor: self.executor.clone(),
                downstream: self.downstream.clone(),
                counters: self.counters.clone(),
                pace: self.pace.clone(),
                quiet: self.is_quiet(),
            };
            if workers == 1 {
                // The only worker is busy until this batch is delivered, so no other batch
                // could form meanwhile: run it here, saving a task spawn and two wake-ups.
                job.run().await;
                let _ = idle_tx.try_send(worker);
            } else {
                let idle = idle_tx.clone();
                tokio::spawn(async move {
                    job.run().await;
                    let _ = idle.send(worker).await;
                });
            }
        }
        // Wait until every worker is idle again: all in-flight batches delivered.
        for _ in 0..workers {
            if idle_rx.recv().await.is_err() {
                break;
            }
        }
        self.executor.shutdown().await;
    }

    /// How many tasks to hand a worker at once. Normally one batch. For a fast stage of
    /// single-task batches without a batch timeout, a run of queued tasks travels together
    /// (each is still its own handler call), so a busy worker gets many tasks per wake-up
    /// instead of one. The run is bounded so that its last task starts within
    /// `RUN_BUDGET` (1 ms) of dispatch (by the stage's measured pace; a stage not yet measured
    /// gets single tasks), so admission checks stay meaningful; it is also split fairly
    /// across workers.
    fn dispatch_size(&self) -> usize {
        const RUN_BUDGET: Duration = Duration::from_millis(1);
        let pace = self.pace.load(Ordering::Relaxed);
        if self.config.batch_size > 1 || !self.config.batch_timeout.is_zero() || pace == 0 {
            return self.config.batch_size;
        }
        let affordable = (RUN_BUDGET.as_nanos() as u64 / pace).clamp(1, MAX_RUN as u64) as usize;
        let fair_share = (self.input.len() + 1).div_ceil(self.config.nprocs);
        affordable
            .min(fair_share)
            .min(self.executor.max_dispatch())
            .max(1)
    }

    /// The flow serves a single request and this stage is fast (< 100 us a task): the
    /// latency regime, where waiting actively for the worker beats a wake-up. Under any
    /// load this is false, so no thread is spent spinning while there is other work.
    fn is_quiet(&self) -> bool {
        let pace = self.pace.load(Ordering::Relaxed);
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

/// One dispatched batch: run on its worker, then delivered.
struct Job<S: Stage, R, D, E> {
    worker: usize,
    tasks: Vec<S::Input>,
    batch: Vec<Envelope<S::Input, R>>,
    executor: Arc<E>,
    downstream: Arc<D>,
    counters: Arc<StageCounters>,
    pace: Arc<AtomicU64>,
    /// Nothing else queued and a fast handler: see `Executor::run`.
    quiet: bool,
}

impl<S, R, D, E> Job<S, R, D, E>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    E: Executor<S>,
{
    async fn run(self) {
        let (count, started) = (self.tasks.len() as u64, Instant::now());
        let outcome = self.executor.run(self.worker, self.tasks, self.quiet).await;
        record_pace(&self.pace, started.elapsed(), count);
        deliver::<S, R, D>(outcome, self.batch, &*self.downstream, &self.counters).await;
    }
}

/// Folds one dispatch's time per task into the stage's pace (an exponential average
/// weighting the newest measurement by 1/4).
fn record_pace(pace: &AtomicU64, elapsed: Duration, tasks: u64) {
    let sample = (elapsed.as_nanos() as u64 / tasks.max(1)).max(1);
    let old = pace.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample
    } else {
        (old * 3 + sample) / 4
    };
    pace.store(new.max(1), Ordering::Relaxed);
}

async fn deliver<S: Stage, R: Task, D: Downstream<S::Output, R>>(
    outcome: Result<Vec<Result<S::Output, String>>, Error>,
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
