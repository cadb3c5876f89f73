//! Where a stage's outputs go: the next stage's queue, or back to the caller.

use std::future::Future;

use super::envelope::Envelope;
use super::link::Link;
use super::queue::QueueTx;
use crate::shm::Owned;
use crate::task::{Task, TaskField};

/// Receives a stage's successful outputs. Awaiting `push` is how backpressure travels
/// upstream: a full next stage holds the worker that produced the output.
#[doc(hidden)]
pub trait Downstream<T: TaskField, R: TaskField>: Clone + Send + Sync + 'static {
    fn push(&self, envelope: Envelope<T, R>) -> impl Future<Output = ()> + Send;
}

/// Sends outputs into the next stage's input queue.
pub(crate) struct Forward<In: TaskField, R: TaskField> {
    queue: QueueTx<Envelope<In, R>>,
}

impl<In: TaskField, R: TaskField> Clone for Forward<In, R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<In: TaskField, R: TaskField> Forward<In, R> {
    pub(crate) fn new(queue: QueueTx<Envelope<In, R>>) -> Self {
        Self { queue }
    }
}

impl<Out, In, R> Downstream<Out, R> for Forward<In, R>
where
    Out: Task + Link<In>,
    In: Task,
    R: Task,
{
    async fn push(&self, envelope: Envelope<Out, R>) {
        let (task, route) = envelope.split();
        // `link` is the identity: the same task, under the next stage's input type.
        let task = Owned::new(task.into_inner().link());
        // A closed queue means the flow was halted; the envelope is dropped with its task.
        let _ = self.queue.send(route.priority(), route.carry(task)).await;
    }
}

/// Answers the caller: the last stage's outputs are the flow's results.
#[derive(Clone, Copy)]
pub(crate) struct Deliver;

impl<R: Task> Downstream<R, R> for Deliver {
    async fn push(&self, envelope: Envelope<R, R>) {
        let (task, route) = envelope.split();
        route.deliver(task);
    }
}
