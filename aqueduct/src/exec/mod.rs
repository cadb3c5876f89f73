//! Executors run a stage's batches on its workers. The flow machinery (queues, batching,
//! deadlines, delivery) only sees the [`Executor`] trait, so worker threads and worker
//! processes are interchangeable behind it.

mod calls;
pub(crate) mod process;
mod thread;

pub(crate) use calls::{call_handler, for_each_call, run_batch};

/// The table of stages worker processes can run (named by generated code).
pub(crate) use process::registry;
pub(crate) use process::ProcessExecutor;
pub(crate) use thread::ThreadExecutor;

use std::future::Future;
use std::time::Duration;

use crate::shm::Owned;
use crate::spin::SpinWait;
use crate::task::TaskField;
use crate::{Error, Stage};

/// How long a quiet dispatch polls for its worker's answer before sleeping. A sleeping
/// thread costs wake-ups of roughly 5-10 us each on small VMs; a fast handler usually
/// answers within this budget.
pub(crate) const QUIET_SPIN: Duration = Duration::from_micros(25);

/// How long a dispatch of a fast stage under load looks for its worker's answer between
/// the runtime's other tasks before it sleeps (see [`Wait::Look`]): a handful of the
/// runtime's rounds while it is busy, a few microseconds of checks where it is idle.
const LOOK_BUDGET: Duration = Duration::from_micros(40);

/// At most this many looks within [`LOOK_BUDGET`]: where the runtime has nothing else to
/// run, each look comes back at once (its cost is the runtime's check for I/O), and the
/// answer is then worth a sleep.
const LOOKS: usize = 64;

/// How a dispatch waits for its worker's answer, as the flow judges from what it has
/// measured of the stage and what else is waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A fast stage and nothing else waiting: poll actively for up to [`QUIET_SPIN`],
    /// since the wake-up would cost more than the wait and the thread has nothing else
    /// to do.
    Spin,
    /// A fast stage with other work waiting (a loaded flow): look for the answer between
    /// the runtime's other tasks for up to [`LOOK_BUDGET`], then sleep. A fast worker's
    /// answer usually comes within it, and is then taken without the worker signalling
    /// it, the parent reading the signal, or a timer armed for the sleep.
    Look,
    /// A slow stage, or one not measured yet: sleep until the answer is signalled.
    Sleep,
}

/// Looks up to [`LOOKS`] times, within [`LOOK_BUDGET`], for `answered` to hold, letting
/// the runtime run its other tasks before each look; whether it held.
pub(crate) async fn look_between_tasks(mut answered: impl FnMut() -> bool) -> bool {
    let started = tokio::time::Instant::now();
    for _ in 0..LOOKS {
        tokio::task::yield_now().await;
        if answered() {
            return true;
        }
        if started.elapsed() > LOOK_BUDGET {
            break;
        }
    }
    false
}

/// Polls `answer` for up to `budget` and returns the first answer it gives. The first
/// microseconds spin (a worker already running answers that fast); after that each poll
/// yields the core, because on a small machine the woken worker may be queued on this
/// very core and a pure spin would keep it from answering.
pub(crate) fn poll_within<T>(budget: Duration, mut answer: impl FnMut() -> Option<T>) -> Option<T> {
    const PURE_SPIN: Duration = Duration::from_micros(5);
    // Looked at once before the wait starts its clock: the answer is often there.
    if let Some(answer) = answer() {
        return Some(answer);
    }
    let mut wait = SpinWait::new(budget, PURE_SPIN);
    while wait.pause() {
        if let Some(answer) = answer() {
            return Some(answer);
        }
    }
    None
}

/// One result per input task: the output, or the handler's error message.
pub(crate) type BatchResults<T> = Vec<Result<T, String>>;

/// What became of one dispatch. Every task in it is in custody: the outputs, and the
/// inputs that come back, own their arena references.
#[derive(Debug)]
pub(crate) enum Dispatched<I: TaskField, O: TaskField> {
    /// The worker answered: one result per task, in order, and how long its handler
    /// calls took as the worker measured them (a worker process's word: a figure for
    /// metrics, never trusted beyond what the parent saw itself).
    Answered {
        results: BatchResults<Owned<O>>,
        compute: Duration,
    },
    /// No handler saw the batch (its worker was down, or died before taking it): the
    /// tasks come back unrun, to be sent elsewhere.
    Unrun(Vec<Owned<I>>),
    /// The worker was lost while it held the batch (it died, ran past a timeout or broke
    /// the protocol): what became of each task, in order (see [`LostTask`]), and the
    /// error that fails those that may have run, unless the stage retries them.
    Lost {
        error: Error,
        tasks: Vec<LostTask<I, O>>,
    },
    /// The batch cannot run (the stage is closing); its tasks were dropped.
    Failed(Error),
}

/// One task of a batch whose worker was lost, by what the parent can tell of it.
#[derive(Debug)]
pub(crate) enum LostTask<I: TaskField, O: TaskField> {
    /// It ran to the end: its result was written, and validated, before the worker was
    /// lost.
    Finished(Result<Owned<O>, String>),
    /// It may have run, in part or whole: its input comes back, to be failed or retried.
    Running(Owned<I>),
    /// It never began: its input comes back, to go again.
    Unrun(Owned<I>),
}

impl<I: TaskField, O: TaskField> From<Result<Timed<O>, Error>> for Dispatched<I, O> {
    fn from(outcome: Result<Timed<O>, Error>) -> Self {
        match outcome {
            Ok(Timed { results, compute }) => Self::Answered { results, compute },
            Err(error) => Self::Failed(error),
        }
    }
}

/// A batch's results and the time its handler calls took.
#[derive(Debug)]
pub(crate) struct Timed<O: TaskField> {
    pub results: BatchResults<Owned<O>>,
    pub compute: Duration,
}

/// Runs batches of stage `S` on one of its workers.
pub(crate) trait Executor<S: Stage>: Send + Sync + 'static {
    /// Most tasks one `run` call may carry (several handler batches at most; see
    /// [`run_batch`]).
    fn max_dispatch(&self) -> usize {
        usize::MAX
    }

    /// How many dispatches one worker may hold at once (the one it runs and those queued
    /// behind it). The runner uses more than one only for a stage whose dispatches take
    /// 20 us to 1 ms (see its `queues_behind`).
    fn depth(&self) -> usize {
        1
    }

    /// Hands `batch` to `worker` now, before returning, so that a worker receives
    /// dispatches in the order they were made; the future then waits for the results.
    /// The caller guarantees the worker holds fewer than `depth()` dispatches (it may be
    /// busy with an earlier one: this one then waits behind it). The batch passes into
    /// the executor's custody; see [`Dispatched`] for how it comes back.
    ///
    /// `wait` says how to wait for the answer (see [`Wait`]); an executor whose answer
    /// comes without a system call may treat [`Wait::Look`] as [`Wait::Sleep`].
    ///
    /// `span` is the batch's span (disabled when nobody observes the batch): what the
    /// handler logs while it runs the batch belongs to it, in a worker thread or process.
    ///
    /// `sent` is when the dispatch was made, read once by the caller for all who need it
    /// (a clock reading costs tens of nanoseconds on a virtual machine, several per task).
    fn run(
        &self,
        worker: usize,
        batch: Vec<Owned<S::Input>>,
        wait: Wait,
        span: tracing::Span,
        sent: tokio::time::Instant,
    ) -> impl Future<Output = Dispatched<S::Input, S::Output>> + Send + 'static;

    /// Tells `worker` that a dispatch is expected within microseconds (the stage before
    /// runs a lone task, and fast: see `Downstream::expect_next`). A sleeping
    /// worker is woken now and polls for it, so that its wake-up, the larger part of a
    /// lone task's trip through a stage, overlaps the work of the stage before instead of
    /// following it. Only ever a hint: a dispatch that comes later, or never, is served
    /// as any other.
    fn expect(&self, _worker: usize) {}

    /// Whether `worker` can take a dispatch now (a worker process may be restarting).
    fn is_up(&self, _worker: usize) -> bool {
        true
    }

    /// Resolves once `worker` is up again, or the executor is closing.
    fn until_up(&self, _worker: usize) -> impl Future<Output = ()> + Send + 'static {
        async {}
    }

    /// Called once the stage has no more batches to run: lets the workers finish and
    /// waits for them (worker processes exit; threads end when the executor drops).
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The flow halted (`stop(false)`, or dropped): no caller waits, so no batch in
    /// flight is awaited by anyone. Ends the workers now instead of when the runner is
    /// done, which a batch that never finishes would put off for ever: a worker process
    /// still running one is killed after its close grace, and the batch fails with
    /// [`Error::Stopped`]. (A thread cannot be killed: a thread executor lets its
    /// handlers finish, as before.)
    fn halt(&self) {}

    /// Whether the executor was halted or shut down: none of its workers will be up
    /// again.
    fn is_closed(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    // The clock is paused in both: only the count of looks can end them.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_look_finds_an_answer_given_by_another_task_meanwhile() {
        let given = Arc::new(AtomicBool::new(false));
        let giver = given.clone();
        // On one thread, the other task runs only when the look lets the runtime run it.
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            giver.store(true, Ordering::SeqCst);
        });
        assert!(look_between_tasks(|| given.load(Ordering::SeqCst)).await);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_look_that_finds_nothing_ends_after_its_looks() {
        let mut looks = 0;
        let found = look_between_tasks(|| {
            looks += 1;
            false
        })
        .await;
        assert!(!found);
        assert_eq!(looks, LOOKS);
    }
}
