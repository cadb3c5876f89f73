//! The per-stage loop: idle worker -> batch -> admission -> executor -> downstream.

use std::sync::Arc;

use tokio::time::Instant;

use super::batcher;
use super::control::Control;
use super::downstream::Downstream;
use super::envelope::Envelope;
use super::stats::StageCounters;
use crate::exec::Executor;
use crate::{Error, Stage, StageConfig, Task};

pub(crate) struct StageRunner<S: Stage, R, D, E> {
    pub input: async_channel::Receiver<Envelope<S::Input, R>>,
    pub downstream: Arc<D>,
    pub executor: Arc<E>,
    pub config: StageConfig,
    pub control: Arc<Control>,
    pub counters: Arc<StageCounters>,
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
        let workers = self.config.nprocs;
        // A worker's index sits in this queue while the worker is idle. Taking one before
        // collecting a batch means batches form only when a worker can take them, so under
        // load tasks accumulate in the queue and batches come out full.
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
                self.config.batch_size,
                self.config.batch_timeout,
            )
            .await;
            let mut batch = self.admit(batch);
            if batch.is_empty() {
                let _ = idle_tx.try_send(worker);
                continue;
            }
            let tasks: Vec<S::Input> = batch.iter_mut().map(Envelope::take_task).collect();
            self.counters.batch(tasks.len());
            let (executor, downstream, counters, idle) = (
                self.executor.clone(),
                self.downstream.clone(),
                self.counters.clone(),
                idle_tx.clone(),
            );
            tokio::spawn(async move {
                deliver::<S, R, D>(
                    executor.run(worker, tasks).await,
                    batch,
                    &*downstream,
                    &counters,
                )
                .await;
                drop(downstream);
                let _ = idle.send(worker).await;
            });
        }
        // Wait until every worker is idle again: all in-flight batches delivered.
        for _ in 0..workers {
            if idle_rx.recv().await.is_err() {
                break;
            }
        }
        self.executor.shutdown().await;
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
