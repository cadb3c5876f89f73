//! Conditional stages (`flow!(a -> b if wanted -> c)`): a stage with a condition runs
//! only the tasks the condition accepts, evaluated on the task as it arrives there;
//! the others skip it and go on to the next stage, or straight back to the caller.
//!
//! A skippable stage maps a type to itself ([`SkipTo`]), so a task that skips it has
//! the type the next stage expects.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use super::downstream::Downstream;
use super::envelope::Envelope;
use super::link::Link;
use super::queue::QueueTx;
use crate::shm::Owned;
use crate::stats::StageCounters;
use crate::task::TaskField;
use crate::Task;

/// A stage's condition: whether a task arriving at the stage runs there.
pub type Condition<T> = fn(&T) -> bool;

/// Proof that a task skipping a stage that takes `Self` has the type the stage would
/// have output (`Out`): implemented only when the two are the same type.
#[diagnostic::on_unimplemented(
    message = "a stage with a condition must return the type it takes: it takes `{Self}` but returns `{Out}`",
    label = "a task that skips this stage would go on as `{Self}`, not `{Out}`",
    note = "only a stage that takes and returns the same `#[task]` type can have a condition"
)]
pub trait SkipTo<Out> {
    /// The identity conversion.
    fn skip_to(self) -> Out;
}

impl<T> SkipTo<T> for T {
    fn skip_to(self) -> T {
        self
    }
}

/// Where a task that skips a stage goes: where the stage's outputs go.
pub(crate) struct Skipped<D, U> {
    to: D,
    _out: PhantomData<fn() -> U>,
}

impl<D, U> Skipped<D, U> {
    pub(crate) fn new(to: D) -> Self {
        Self {
            to,
            _out: PhantomData,
        }
    }
}

impl<D: Clone, U> Clone for Skipped<D, U> {
    fn clone(&self) -> Self {
        Self::new(self.to.clone())
    }
}

impl<T, U, R, D> Downstream<T, R> for Skipped<D, U>
where
    T: Task + SkipTo<U>,
    U: Task,
    R: Task,
    D: Downstream<U, R>,
{
    async fn push(&self, envelope: Envelope<T, R>) {
        let (task, route) = envelope.split();
        // `skip_to` is the identity: the same task, as the stage's output type.
        let task = Owned::new(task.into_inner().skip_to());
        self.to.push(route.carry(task)).await;
    }
}

/// Sends a task to its stage's queue if the condition accepts it, and otherwise on to
/// where the stage's outputs go (`skip`).
pub(crate) struct Branch<T: TaskField, R: TaskField, D> {
    pub condition: Condition<T>,
    pub queue: QueueTx<Envelope<T, R>>,
    pub skip: D,
    pub counters: Arc<StageCounters>,
}

impl<T: TaskField, R: TaskField, D: Clone> Clone for Branch<T, R, D> {
    fn clone(&self) -> Self {
        Self {
            condition: self.condition,
            queue: self.queue.clone(),
            skip: self.skip.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<Out, T, R, D> Downstream<Out, R> for Branch<T, R, D>
where
    Out: Task + Link<T>,
    T: Task,
    R: Task,
    D: Downstream<T, R>,
{
    async fn push(&self, envelope: Envelope<Out, R>) {
        let (task, route) = envelope.split();
        // `link` is the identity: the same task, under the stage's input type.
        let task = Owned::new(task.into_inner().link());
        if (self.condition)(&task) {
            // A closed queue means the flow was halted; the task is dropped.
            let _ = self.queue.send(route.priority(), route.carry(task)).await;
        } else {
            self.counters.skipped();
            self.skip.push(route.carry(task)).await;
        }
    }
}

/// The flow's entry when its first stage has a condition: a task the condition rejects
/// goes on from there without entering the first stage's queue.
pub(crate) struct EntrySkip<In: TaskField, R: TaskField> {
    pub condition: Condition<In>,
    /// Where the first stage's outputs go. Weak: the first stage's runner holds it, so
    /// that it goes once the runner is done (the flow stopped and the first stage
    /// drained), and the next stage's queue closes then, though the flow's handle lives
    /// on (held here, it kept a graceful stop waiting forever).
    pub to: Weak<dyn PushBoxed<In, R>>,
    pub counters: Arc<StageCounters>,
}

/// [`Downstream`] as a trait object (its future boxed).
pub(crate) trait PushBoxed<T: TaskField, R: TaskField>: Send + Sync {
    fn push_boxed(&self, envelope: Envelope<T, R>)
        -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<T: TaskField, R: TaskField, D: Downstream<T, R>> PushBoxed<T, R> for D {
    fn push_boxed(
        &self,
        envelope: Envelope<T, R>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.push(envelope))
    }
}
