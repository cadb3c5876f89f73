//! The one error type of the runtime: every way a task or a flow can fail, typed, so
//! callers can tell a timeout from an overload from a handler failure.

use std::time::Duration;

/// Why a task or a flow operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task did not finish within its timeout. It may still run to completion; its
    /// result is then discarded and its shared memory released.
    #[error("task timed out after {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The flow turned the task away without running it: the first stage's queue was
    /// full (and the flow rejects at once, or stayed full as long as the caller could
    /// wait), or the work queued ahead of it would have outlasted its timeout. Nothing
    /// ran; the caller may try again later (HTTP 503).
    #[error("stage `{stage}` is overloaded: the task was not admitted (waited {waited:?})")]
    Overloaded {
        /// The flow's first stage.
        stage: &'static str,
        /// How long `process` waited for room.
        waited: Duration,
    },
    /// The handler returned an error or panicked for this task (or for the batch it was
    /// in, for handlers that take whole batches). The worker carries on.
    #[error("handler `{stage}` failed: {message}")]
    Handler {
        /// The stage whose handler failed.
        stage: &'static str,
        /// The handler's error, or the panic message.
        message: String,
    },
    /// The flow was stopped without waiting for this task.
    #[error("the flow was stopped before the task finished")]
    Stopped,
    /// `process` was called on a flow that is stopping or stopped.
    #[error("the flow is not running")]
    NotRunning,
    /// A stage's workers did not finish `init` within its start timeout.
    #[error("stage `{stage}` did not start within {after:?}")]
    StartTimeout {
        /// The stage that did not start.
        stage: &'static str,
        /// Its start timeout.
        after: Duration,
    },
    /// A worker's `init` returned an error or panicked.
    #[error("stage `{stage}` failed to start: {message}")]
    Init {
        /// The stage whose `init` failed.
        stage: &'static str,
        /// The error `init` returned, or its panic message.
        message: String,
    },
    /// The shared-memory arena has no free block large enough.
    #[error("shared-memory arena full: {requested} bytes requested, {free} of {capacity} bytes free (set AQUEDUCT_ARENA_BYTES or call aqueduct::arena::configure to enlarge it)")]
    ArenaFull {
        /// Bytes asked for.
        requested: usize,
        /// Bytes free in all (possibly fragmented).
        free: usize,
        /// The arena's size.
        capacity: usize,
    },
    /// A shared-memory handle does not name a live block: it was released already, or
    /// its bytes were corrupted.
    #[error("invalid shared-memory handle: {reason}")]
    InvalidHandle {
        /// What was wrong with it.
        reason: String,
    },
    /// A configuration value was rejected: a builder setting, or an `AQUEDUCT_*`
    /// environment variable set to a value it does not accept (the message names the
    /// variable, its value and what it accepts; the variables are listed in the README).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The input was cancelled (by `cancel`, `cancel_all` or a processor being killed)
    /// before it finished. Cancelled before dispatch, it never reached the handler.
    #[error("the input was cancelled")]
    Cancelled,
    /// A graph run was stopped because an edge kept feeding its destination past one of
    /// the run's limits: most likely a cycle whose converters never stop producing.
    #[error("graph edge `{edge}` kept feeding past the run's limit of {limit} {what}; is a cycle endless?")]
    EndlessCycle {
        /// The edge, as `source -> destination`.
        edge: String,
        /// The limit that was reached.
        limit: u64,
        /// What the limit counts: `"rounds"` (times one input's descendants went round
        /// the graph) or `"items"` (inputs fed along the edge in one run).
        what: &'static str,
    },
    /// The worker process running the task's batch died (a crash, a signal, an exit, or a
    /// kill by the runtime after the stage's execution timeout or a protocol violation).
    /// The task may have been partly executed. The worker is restarted; tasks that had not
    /// reached it are unaffected.
    #[error("stage `{stage}`: worker process {pid} died ({}) while the task was in flight", describe_exit(*.signal))]
    WorkerCrashed {
        /// The stage whose worker died.
        stage: &'static str,
        /// The worker's process id.
        pid: u32,
        /// The signal that ended it, if a signal did (`9` for SIGKILL, also used when the
        /// runtime killed it); `None` for a plain exit.
        signal: Option<i32>,
    },
    /// A worker process answered with data that fails validation (an index, length or
    /// shared-memory handle out of range). It is not trusted: the worker is killed and
    /// restarted, and the batch fails with this error.
    #[error("stage `{stage}`: worker process {pid} sent an invalid response and was restarted: {reason}")]
    WorkerProtocol {
        /// The stage whose worker misbehaved.
        stage: &'static str,
        /// The worker's process id.
        pid: u32,
        /// What was invalid.
        reason: String,
    },
    /// A `*_blocking` method was called from inside an async runtime, where blocking
    /// would stall the runtime's thread. Use the async method there.
    #[error("a blocking aqueduct call was made inside an async runtime; use the async method (e.g. `process(..).await`)")]
    BlockingInAsync,
}

fn describe_exit(signal: Option<i32>) -> String {
    match signal {
        Some(signal) => format!("killed by signal {signal}"),
        None => "exited".to_string(),
    }
}
