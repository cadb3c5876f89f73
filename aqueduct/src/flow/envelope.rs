//! A task on its way through the flow, with where its result goes and its deadline.

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::shm::ownership;
use crate::task::TaskField;
use crate::Error;

/// Where the final result (or the first failure) of a task is sent.
pub(crate) type Reply<R> = oneshot::Sender<Result<R, Error>>;

/// A task plus its reply channel. While `owns` is set the envelope owns the task's arena
/// references and releases them if dropped, so a task discarded anywhere (expired,
/// cancelled, flow halted, queue closed) frees its shared memory.
#[doc(hidden)]
pub struct Envelope<T: TaskField, R> {
    task: T,
    owns: bool,
    reply: Option<Reply<R>>,
    deadline: Instant,
}

impl<T: TaskField, R> Envelope<T, R> {
    pub(crate) fn new(task: T, reply: Reply<R>, deadline: Instant) -> Self {
        Self {
            task,
            owns: true,
            reply: Some(reply),
            deadline,
        }
    }

    /// Whether the task should be dropped before dispatch: its caller dropped the future
    /// (nobody to answer) or its deadline passed (answered with a timeout by the caller's
    /// own timer).
    pub(crate) fn is_abandoned(&self, now: Instant) -> bool {
        self.deadline <= now || self.reply.as_ref().is_none_or(oneshot::Sender::is_closed)
    }

    /// Moves the task out for a handler; the envelope no longer owns its references.
    pub(crate) fn take_task(&mut self) -> T {
        self.owns = false;
        self.task
    }

    /// The same reply and deadline, carrying `task` (which owns its references).
    pub(crate) fn with_task<U: TaskField>(mut self, task: U) -> Envelope<U, R> {
        self.owns = false;
        Envelope {
            task,
            owns: true,
            reply: self.reply.take(),
            deadline: self.deadline,
        }
    }

    /// Answers the caller with `error`; the task is dropped.
    pub(crate) fn fail(mut self, error: Error) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Err(error));
        }
    }
}

impl<R: TaskField> Envelope<R, R> {
    /// Answers the caller with the task itself (last stage).
    pub(crate) fn deliver(mut self) {
        if let Some(reply) = self.reply.take() {
            self.owns = false;
            if let Err(Ok(task)) = reply.send(Ok(self.task)) {
                // The caller is gone; the result and its shared memory are dropped.
                ownership::release(&task);
            }
        }
    }
}

impl<T: TaskField, R> std::fmt::Debug for Envelope<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<T: TaskField, R> Drop for Envelope<T, R> {
    fn drop(&mut self) {
        if self.owns {
            ownership::release(&self.task);
        }
    }
}
