//! What a stage is, as the runtime sees it. `#[handler]` implements [`Stage`] for a marker
//! type named after the function; implementing it by hand is equally supported.

use std::time::Duration;

use crate::task::Task;

/// Most single-task batches handed to a worker at once (see
/// [`StageConfig::dispatch_cap`]).
pub(crate) const MAX_RUN: usize = 64;

/// How a stage runs: batching, workers, queue and start-up limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageConfig {
    /// Most tasks per handler call (>= 1).
    pub batch_size: usize,
    /// How long a batch may wait to fill after its first task arrived. Zero: take what
    /// is already queued, up to `batch_size`, and run at once.
    pub batch_timeout: Duration,
    /// Worker count (>= 1); each runs `init` once and then takes batches.
    pub nprocs: usize,
    /// Capacity of the stage's input queue; `None` means three dispatches' worth, at
    /// least 20: `max(3 * batch_size, 20)`, and 192 for a stage of single-task batches,
    /// whose dispatches carry runs of up to 64 tasks. (A queue shorter than that parks
    /// callers one at a time and cuts the runs short: W1 of the workloads bench ran at
    /// 210k tasks/s with 20, 330k with 192.)
    pub queue_size: Option<usize>,
    /// How long every worker's `init` may take before `start()` fails.
    pub start_timeout: Duration,
    /// Whether workers are processes (the default: a crash or leak is contained) or
    /// threads of the calling process.
    pub isolation: Isolation,
    /// Longest a batch may run on a worker process; a worker still busy after it is
    /// killed and restarted, and the batch fails with [`crate::Error::WorkerCrashed`].
    /// `None`: no limit. (Threads cannot be killed, so thread workers ignore it.)
    pub exec_timeout: Option<Duration>,
    /// Longest a worker process with nothing older to run may take to pick up a request
    /// (normally microseconds). A worker past it is wedged, whatever its shared memory
    /// says: it is killed and restarted, and the request, which provably never ran, goes
    /// to another worker. (Thread workers ignore it.)
    pub take_timeout: Duration,
    /// Whether the tasks of a batch whose worker process was lost (it crashed, was
    /// killed, hung past `exec_timeout` or broke the protocol) run again, each on its
    /// own, so that only the task that kills its worker fails. A task lost twice fails
    /// with the error of its second loss. On by default; this makes execution
    /// at-least-once for a lost batch (a task that ran before its batch-mate crashed the
    /// worker runs again), so turn it off for handlers with side effects that must not
    /// repeat. A batch its worker never took is sent to another worker either way: it
    /// never ran.
    pub crash_retry: bool,
}

/// How a stage's workers are isolated from the calling process and from each other.
///
/// Worker processes need nothing in `main`: they are this executable re-executed, and
/// a start-up hook diverts them into the worker loop before `main` (or a test harness,
/// or a doctest like this one) would run.
///
/// ```
/// #[aqueduct::task]
/// struct Pid {
///     pid: u64,
/// }
///
/// #[aqueduct::handler] // `isolation = "process"` is the default
/// fn whoami(task: &mut Pid) {
///     task.pid = std::process::id() as u64;
/// }
///
/// let flow = aqueduct::flow!(whoami).start_blocking()?;
/// let out = flow.process_blocking(Pid { pid: 0 })?;
/// assert_ne!(out.pid, std::process::id() as u64, "ran in a worker process");
/// flow.stop_blocking(true)?;
/// # Ok::<(), aqueduct::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Each worker is a process: this executable re-executed, sharing the arena's memory.
    /// A worker that crashes, aborts or is killed is restarted; the flow keeps serving.
    #[default]
    Process,
    /// Each worker is a thread of this process (no isolation, lowest latency).
    Thread,
}

impl StageConfig {
    /// The defaults `#[handler]` starts from.
    pub const DEFAULT: Self = Self {
        batch_size: 1,
        batch_timeout: Duration::ZERO,
        nprocs: 1,
        queue_size: None,
        start_timeout: Duration::from_secs(30),
        isolation: Isolation::Process,
        exec_timeout: None,
        take_timeout: Duration::from_secs(5),
        crash_retry: true,
    };

    /// The input queue's capacity.
    pub fn queue_capacity(&self) -> usize {
        self.queue_size
            .unwrap_or((3 * self.dispatch_cap()).max(20))
            .max(1)
    }

    /// Single-task batches with no batch timeout: batches need not form behind a busy
    /// worker, so the runner sends runs of queued tasks, and may keep a second run
    /// waiting on each worker (see the stage runner). A batching stage keeps a second
    /// batch waiting only when a full one is queued, so that its batches still fill while
    /// the workers are busy.
    pub(crate) fn pipelined(&self) -> bool {
        self.batch_size == 1 && self.batch_timeout.is_zero()
    }

    /// Most tasks one hand-off to a worker may carry: one batch, or for a stage of
    /// single-task batches a run of up to [`MAX_RUN`] of them (each still its own handler
    /// call), which the runner sends a busy worker so it gets many tasks per wake-up.
    pub(crate) fn dispatch_cap(&self) -> usize {
        if self.batch_size == 1 {
            MAX_RUN
        } else {
            self.batch_size
        }
    }
}

impl Default for StageConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A pipeline stage: takes batches of `Input` tasks and returns one result per task.
///
/// `#[aqueduct::handler]` implements this for a zero-sized marker type with the
/// function's name, which is what `flow!` names.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aqueduct stage",
    label = "not a stage",
    note = "stages are functions annotated with `#[aqueduct::handler]`; `flow!` takes their names"
)]
pub trait Stage: 'static {
    /// The task type the stage takes.
    type Input: Task;
    /// The task type the stage emits.
    type Output: Task;
    /// Per-worker state built by [`Stage::init`] (a loaded model, a connection).
    type State: 'static;
    /// Name used in errors, logs and statistics.
    const NAME: &'static str;
    /// Batching, workers and limits.
    const CONFIG: StageConfig;

    /// Whether [`Stage::handle`] treats each input on its own, as a handler that takes
    /// one task does (`fn(&mut T)`, `fn(T) -> U`): one call may then take a whole run of
    /// tasks, whatever `batch_size` says, rather than one (two vectors fewer a task).
    /// Set by `#[aqueduct::handler]`.
    #[doc(hidden)]
    const EACH_ON_ITS_OWN: bool = false;

    /// Runs once in each worker before it takes work.
    fn init() -> Result<Self::State, String>;

    /// Handles one batch. Must return exactly one result per input, in order; an `Err`
    /// fails only that task.
    fn handle(
        state: &mut Self::State,
        inputs: Vec<Self::Input>,
    ) -> Vec<Result<Self::Output, String>>;
}
