//! A task on its way through the flow: the task, in custody, and its [`Route`] (where
//! its result goes, by when). While a stage's executor holds the task, the runner holds
//! the route; the two are joined again when the task comes back.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::platform::clock;
use crate::shm::Owned;
use crate::task::TaskField;
use crate::Error;

/// Where the final result (or the first failure) of a task is sent.
pub(crate) type Reply<R> = oneshot::Sender<Result<Owned<R>, Error>>;

/// A task plus its route. The task is [`Owned`], so an envelope discarded anywhere
/// (expired, cancelled, flow halted, queue closed) frees its shared memory.
#[doc(hidden)]
pub struct Envelope<T: TaskField, R: TaskField> {
    task: Owned<T>,
    route: Route<R>,
}

/// Everything about a task but the task: its caller's reply channel and deadline, and
/// how often a worker holding it was lost.
#[derive(Debug)]
pub(crate) struct Route<R: TaskField> {
    reply: Reply<R>,
    deadline: Instant,
    /// The caller's timeout, for the error if the deadline passes inside the flow, in
    /// nanoseconds (saturated: such a timeout is 584 years, which never passes).
    timeout_ns: u64,
    /// How many times a worker was lost while it held this task (at this stage).
    losses: u32,
    /// The task's priority: the lane it takes in every stage's queue (below
    /// `queue::MAX_LANES`, checked by `process()`).
    priority: u32,
    /// The span of the `process` call, the parent of the events about the task; only
    /// when a subscriber wants them (boxed: an unobserved task carries one word).
    span: Option<Box<tracing::Span>>,
    /// When the task entered its current stage's queue; only when something reads it
    /// (a span, or the `metrics` feature).
    queued_at: Option<Instant>,
}

/// Why a task is not admitted to a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unfit {
    /// Its caller stopped waiting: nobody to answer.
    Abandoned,
    /// Its deadline passed.
    Expired,
}

impl<T: TaskField, R: TaskField> Envelope<T, R> {
    pub(crate) fn new(
        task: Owned<T>,
        reply: Reply<R>,
        timeout: Duration,
        priority: usize,
        span: tracing::Span,
        now: Instant,
    ) -> Self {
        Self {
            task,
            route: Route {
                reply,
                deadline: clock::deadline(now, timeout),
                timeout_ns: clock::nanos(timeout),
                losses: 0,
                priority: u32::try_from(priority).unwrap_or(u32::MAX),
                queued_at: (cfg!(feature = "metrics") || !span.is_none()).then_some(now),
                span: (!span.is_none()).then(|| Box::new(span)),
            },
        }
    }

    /// The task.
    pub(crate) fn task(&self) -> &T {
        &self.task
    }

    /// The task's priority.
    pub(crate) fn route_priority(&self) -> usize {
        self.route.priority as usize
    }

    /// The task's deadline.
    pub(crate) fn deadline(&self) -> Instant {
        self.route.deadline
    }

    /// Why the task must not reach the handler, if it must not: its caller dropped the
    /// future, or its deadline passed.
    pub(crate) fn unfit(&self, now: Instant) -> Option<Unfit> {
        if self.route.reply.is_closed() {
            Some(Unfit::Abandoned)
        } else if self.route.deadline <= now {
            Some(Unfit::Expired)
        } else {
            None
        }
    }

    /// Answers the caller that the task's deadline passed; the task is dropped.
    pub(crate) fn expire(self) {
        self.route.expire();
    }

    /// Separates the task (for an executor) from its route (kept by the runner).
    pub(crate) fn split(self) -> (Owned<T>, Route<R>) {
        (self.task, self.route)
    }
}

impl<R: TaskField> Route<R> {
    /// The task's priority.
    pub(crate) fn priority(&self) -> usize {
        self.priority as usize
    }

    /// The span of the task's `process` call, if it is observed.
    pub(crate) fn span(&self) -> Option<&tracing::Span> {
        self.span.as_deref()
    }

    /// Whether anything observes the task (its span or queue waits are kept).
    pub(crate) fn is_observed(&self) -> bool {
        self.queued_at.is_some()
    }

    /// How long the task waited in its current stage's queue, if that is observed.
    pub(crate) fn queue_wait(&self, now: Instant) -> Option<std::time::Duration> {
        Some(now.saturating_duration_since(self.queued_at?))
    }

    /// The route carrying `task` again, at the same stage (a task back unrun, or from
    /// a lost worker).
    pub(crate) fn carry<U: TaskField>(self, task: Owned<U>) -> Envelope<U, R> {
        Envelope { task, route: self }
    }

    /// The route carrying a stage's `output` to the next stage, where no worker has
    /// been lost holding it yet and its queue wait starts at `now` (one clock reading
    /// for a whole answered batch).
    pub(crate) fn forward<U: TaskField>(
        mut self,
        output: Owned<U>,
        now: Instant,
    ) -> Envelope<U, R> {
        self.losses = 0;
        if self.queued_at.is_some() {
            self.queued_at = Some(now);
        }
        self.carry(output)
    }

    /// Counts one more loss of a worker that held this task; returns the count.
    pub(crate) fn lost(&mut self) -> u32 {
        self.losses += 1;
        self.losses
    }

    /// Answers the caller with `error`.
    pub(crate) fn fail(self, error: Error) {
        let _ = self.reply.send(Err(error));
    }

    /// Answers the caller that the task's deadline passed.
    pub(crate) fn expire(self) {
        let after = Duration::from_nanos(self.timeout_ns);
        self.fail(Error::Timeout { after });
    }

    /// Answers the caller with the task's final result (last stage). If the caller is
    /// gone, the result is dropped with its shared memory.
    pub(crate) fn deliver(self, task: Owned<R>) {
        let _ = self.reply.send(Ok(task));
    }
}

impl<T: TaskField, R: TaskField> std::fmt::Debug for Envelope<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("deadline", &self.route.deadline)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[crate::task(crate = "crate")]
    struct Word {
        value: u64,
    }

    /// The route travels with every task, moved several times a stage: it is kept to
    /// eight words (at ten, W1's three process stages measured about 3% slower).
    #[test]
    fn a_route_is_eight_words() {
        assert_eq!(size_of::<Route<Word>>(), 64);
    }
}
