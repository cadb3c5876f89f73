//! Executors run a stage's batches on its workers. The flow machinery (queues, batching,
//! deadlines, delivery) only sees the [`Executor`] trait, so worker threads and worker
//! processes are interchangeable behind it.

mod process;
mod thread;

pub(crate) use process::ProcessExecutor;
pub(crate) use thread::ThreadExecutor;

use std::future::Future;

use crate::shapes::catch;
use crate::shm::{ownership, ShmHandle};
use crate::{Error, Stage};

/// One result per input task: the output, or the handler's error message.
pub(crate) type BatchResults<T> = Vec<Result<T, String>>;

/// Runs batches of stage `S` on one of its workers.
pub(crate) trait Executor<S: Stage>: Send + Sync + 'static {
    /// Runs `batch` on `worker` (which the caller guarantees is idle). The batch's arena
    /// references pass to the executor; the outputs come back owning theirs. An `Err`
    /// means the worker could not run the batch at all.
    fn run(
        &self,
        worker: usize,
        batch: Vec<S::Input>,
    ) -> impl Future<Output = Result<BatchResults<S::Output>, Error>> + Send;

    /// Called once the stage has no more batches to run: lets the workers finish and
    /// waits for them (worker processes exit; threads end when the executor drops).
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Calls the handler on the tasks a worker received, one call per `batch_size` tasks
/// (the runner may send several single-task batches in one hand-off), with the
/// reference accounting described in [`crate::shm::ownership`]: outputs retained, inputs
/// and each call's own allocations released.
pub(crate) fn run_batch<S: Stage>(
    state: &mut S::State,
    inputs: Vec<S::Input>,
) -> BatchResults<S::Output> {
    let batch_size = S::CONFIG.batch_size.max(1);
    if inputs.len() <= batch_size {
        return run_one_batch::<S>(state, inputs);
    }
    let mut results = Vec::with_capacity(inputs.len());
    let mut rest = inputs.into_iter();
    loop {
        let batch: Vec<S::Input> = rest.by_ref().take(batch_size).collect();
        if batch.is_empty() {
            return results;
        }
        results.extend(run_one_batch::<S>(state, batch));
    }
}

fn run_one_batch<S: Stage>(state: &mut S::State, inputs: Vec<S::Input>) -> BatchResults<S::Output> {
    let count = inputs.len();
    let before: Vec<ShmHandle> = inputs.iter().flat_map(ownership::handles_of).collect();
    let (outcome, allocated) = ownership::scoped(|| catch(|| S::handle(state, inputs)));
    let mut results = match outcome {
        Ok(results) if results.len() == count => results,
        Ok(results) => (0..count)
            .map(|_| {
                Err(format!(
                    "handler returned {} results for {count} tasks",
                    results.len()
                ))
            })
            .collect(),
        Err(panic) => (0..count).map(|_| Err(panic.clone())).collect(),
    };
    for result in &mut results {
        if let Ok(output) = result {
            if let Err(error) = ownership::retain(output) {
                *result = Err(format!(
                    "output holds an unusable shared-memory handle: {error}"
                ));
            }
        }
    }
    ownership::release_all(&before);
    ownership::release_all(&allocated);
    results
}
