//! A task on its way through the flow, with where its result goes and its deadline.

use std::time::Duration;

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
    /// The caller's timeout, for the error if the deadline passes inside the flow.
    timeout: Duration,
    /// How many times a worker was lost while it held this task (at this stage).
    losses: u32,
}

/// Why a task is not admitted to a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unfit {
    /// Its caller stopped waiting: nobody to answer.
    Abandoned,
    /// Its deadline passed.
    Expired,
}

impl<T: TaskField, R> Envelope<T, R> {
    pub(crate) fn new(task: T, reply: Reply<R>, timeout: Duration) -> Self {
        Self {
            task,
            owns: true,
            reply: Some(reply),
            deadline: Instant::now() + timeout,
            timeout,
            losses: 0,
        }
    }

    /// The task's deadline.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Why the task must not reach the handler, if it must not: its caller dropped the
    /// future, or its deadline passed.
    pub(crate) fn unfit(&self, now: Instant) -> Option<Unfit> {
        if self.reply.as_ref().is_none_or(oneshot::Sender::is_closed) {
            Some(Unfit::Abandoned)
        } else if self.deadline <= now {
            Some(Unfit::Expired)
        } else {
            None
        }
    }

    /// Answers the caller that the task's deadline passed.
    pub(crate) fn expire(self) {
        let after = self.timeout;
        self.fail(Error::Timeout { after });
    }

    /// Gives the envelope back the task a handler did not (or may not fully) run; the
    /// envelope owns its references again.
    pub(crate) fn restore(&mut self, task: T) {
        self.task = task;
        self.owns = true;
    }

    /// Counts one more loss of a worker that held this task; returns the count.
    pub(crate) fn lost(&mut self) -> u32 {
        self.losses += 1;
        self.losses
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
            timeout: self.timeout,
            losses: 0,
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
