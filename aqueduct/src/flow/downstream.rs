//! Where a stage's outputs go: the next stage's queue, or back to the caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use tokio::time::Instant;

use super::direct::{DirectEntry, Running};
use super::envelope::Envelope;
use super::link::Link;
use super::queue::{QueueTx, TrySendError};
use crate::shm::Owned;
use crate::task::{Task, TaskField};

/// Receives a stage's successful outputs. Awaiting `push` is how backpressure travels
/// upstream: a full next stage holds the worker that produced the output.
#[doc(hidden)]
pub trait Downstream<T: TaskField, R: TaskField>: Clone + Send + Sync + 'static {
    fn push(&self, envelope: Envelope<T, R>) -> impl Future<Output = ()> + Send;

    /// Passes on the outputs of one batch, in order. Where they go to a queue, they go
    /// in together (see [`QueueTx::send_all`]).
    /// They are made as they are taken (no batch of envelopes is built first).
    fn push_all(
        &self,
        envelopes: impl Iterator<Item = Envelope<T, R>> + Send,
    ) -> impl Future<Output = ()> + Send {
        async move {
            for envelope in envelopes {
                self.push(envelope).await;
            }
        }
    }

    /// [`Downstream::push`] for a lone task: the only output of its dispatch, with
    /// nothing queued behind it at its stage. If the next stage is idle, the task is
    /// dispatched on its seat here (see [`super::direct`]), and the job is returned, to
    /// be run once the pushing job's own seat is given back. `now` is when the task
    /// was answered, a clock reading just taken.
    ///
    /// Not a future: the lone task's path is every quiet request's, and a job's future
    /// (which a caller's job boxes) would carry the room of this one's. Only a wait (a
    /// full queue) comes back, boxed.
    fn push_alone(&self, envelope: Envelope<T, R>, _now: Instant) -> Pushed {
        let this = self.clone();
        Pushed::Waiting(Box::pin(async move { this.push(envelope).await }))
    }

    /// A lone task is expected here within microseconds (the stage before has just
    /// dispatched it, and is fast): the next stage's idle worker, if it has one, is told
    /// now, so that it is awake when the task comes (see
    /// [`crate::exec::Executor::expect`]). After the last stage, the first stage's
    /// worker is told, for the caller's next task (see [`Deliver`]).
    fn expect_next(&self) {}
}

/// How outputs were passed on: a lone task's (see [`Downstream::push_alone`]), or a
/// whole batch's delivery (see `job`).
#[doc(hidden)]
pub enum Pushed {
    /// Passed on; with the next stage's job, if a lone task went straight to its worker.
    Done(Option<Running>),
    /// Passed on once this resolves (it waits for room in the next queue).
    Waiting(Waiting),
}

/// A hand-over that waits for room (boxed: the rare case, kept out of every job's room).
pub type Waiting = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

impl std::fmt::Debug for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Done(next) => f.debug_tuple("Done").field(next).finish(),
            Self::Waiting(_) => f.write_str("Waiting"),
        }
    }
}

/// Sends outputs into the next stage's input queue, or, for a lone task, straight to
/// the next stage's idle worker.
pub(crate) struct Forward<In: TaskField, R: TaskField> {
    queue: QueueTx<Envelope<In, R>>,
    /// The way straight to the next stage's idle worker, if it lends its seat.
    direct: Option<Arc<dyn DirectEntry<In, R>>>,
}

impl<In: TaskField, R: TaskField> Clone for Forward<In, R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            direct: self.direct.clone(),
        }
    }
}

impl<In: TaskField, R: TaskField> Forward<In, R> {
    pub(crate) fn new(
        queue: QueueTx<Envelope<In, R>>,
        direct: Option<Arc<dyn DirectEntry<In, R>>>,
    ) -> Self {
        Self { queue, direct }
    }
}

impl<Out, In, R> Downstream<Out, R> for Forward<In, R>
where
    Out: Task + Link<In>,
    In: Task,
    R: Task,
{
    async fn push(&self, envelope: Envelope<Out, R>) {
        let envelope = linked(envelope);
        // A closed queue means the flow was halted; the envelope is dropped with its task.
        let _ = self.queue.send(envelope.route_priority(), envelope).await;
    }

    async fn push_all(&self, envelopes: impl Iterator<Item = Envelope<Out, R>> + Send) {
        // A closed queue means the flow was halted; the envelopes are dropped with their
        // tasks.
        self.queue
            .send_all(envelopes.map(linked), Envelope::route_priority)
            .await;
    }

    fn expect_next(&self) {
        if let Some(next) = &self.direct {
            next.expect();
        }
    }

    fn push_alone(&self, envelope: Envelope<Out, R>, now: Instant) -> Pushed {
        let mut envelope = linked(envelope);
        if let Some(next) = &self.direct {
            match next.try_run(envelope, now) {
                Ok(running) => return Pushed::Done(Some(running)),
                Err(refused) => envelope = refused,
            }
        }
        match self.queue.try_send(envelope.route_priority(), envelope) {
            // A closed queue means the flow was halted; the envelope is dropped with its
            // task.
            Ok(()) | Err(TrySendError::Closed(_)) => Pushed::Done(None),
            Err(TrySendError::Full(envelope)) => {
                let queue = self.queue.clone();
                Pushed::Waiting(Box::pin(async move {
                    let _ = queue.send(envelope.route_priority(), envelope).await;
                }))
            }
        }
    }
}

/// `envelope`'s task under the next stage's input type (`link` is the identity).
fn linked<Out: Task + Link<In>, In: Task, R: Task>(envelope: Envelope<Out, R>) -> Envelope<In, R> {
    let (task, route) = envelope.split();
    route.carry(Owned::new(task.into_inner().link()))
}

/// Answers the caller: the last stage's outputs are the flow's results.
#[derive(Clone, Default)]
pub(crate) struct Deliver {
    /// The flow's first stage, told of the caller's next task (see
    /// [`Deliver::expect_next`]); unset where it lends no seat.
    first: Arc<OnceLock<FirstStage>>,
}

/// Tells the flow's first stage that a lone task is expected (its
/// [`DirectEntry::expect`], type-erased over the flow's input).
pub(crate) type FirstStage = Box<dyn Fn() + Send + Sync>;

impl Deliver {
    /// Where the flow's first stage is set once it is started: the stages start from
    /// the last, so it does not exist yet when this one is made.
    pub(crate) fn first_stage(&self) -> Arc<OnceLock<FirstStage>> {
        self.first.clone()
    }
}

impl<R: Task> Downstream<R, R> for Deliver {
    async fn push(&self, envelope: Envelope<R, R>) {
        let (task, route) = envelope.split();
        route.deliver(task);
    }

    fn push_alone(&self, envelope: Envelope<R, R>, _now: Instant) -> Pushed {
        let (task, route) = envelope.split();
        route.deliver(task);
        Pushed::Done(None)
    }

    /// A lone task's answer is on its way to its caller, and a caller that awaits each
    /// answer before sending its next task (a client in a loop) sends it within
    /// microseconds: the first stage's idle worker is told, as a stage tells the next,
    /// so that its wake-up overlaps the last stage's work instead of starting the next
    /// call. (Measured with the rest of telling ahead: see `expecting`. A caller that
    /// sends no next task costs one poll, which the worker then declines for a while.)
    fn expect_next(&self) {
        if let Some(first) = self.first.get() {
            first();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flow::queue;
    use crate::Error;

    #[crate::task(crate = "crate")]
    #[derive(Debug)]
    struct Item {
        n: u64,
    }

    type Answer = tokio::sync::oneshot::Receiver<Result<Owned<Item>, Error>>;

    fn envelope(n: u64) -> (Envelope<Item, Item>, Answer) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let envelope = Envelope::new(
            Owned::new(Item { n }),
            reply,
            Duration::from_secs(60),
            0,
            tracing::Span::none(),
            Instant::now(),
        );
        (envelope, answer)
    }

    #[tokio::test]
    async fn a_lone_task_meeting_a_full_queue_waits_and_goes_in_when_room_is_made() {
        let (queue, input) = queue::bounded(1, 1);
        let forward = Forward::<Item, Item>::new(queue, None);
        let (first, _first_answer) = envelope(1);
        assert!(matches!(
            forward.push_alone(first, Instant::now()),
            Pushed::Done(None)
        ));
        let (second, _second_answer) = envelope(2);
        let Pushed::Waiting(wait) = forward.push_alone(second, Instant::now()) else {
            panic!("the queue is full: the task must wait for room");
        };
        let waiting = tokio::spawn(wait);
        assert_eq!(input.try_recv().map(|envelope| envelope.task().n), Some(1));
        waiting.await.unwrap();
        assert_eq!(
            input.try_recv().map(|envelope| envelope.task().n),
            Some(2),
            "queued once room was made, not dropped"
        );
    }

    #[test]
    fn a_lone_answer_tells_the_first_stage_once_it_is_set() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let deliver = Deliver::default();
        // Before the first stage is started (or where it lends no seat): nothing to tell.
        Downstream::<Item, Item>::expect_next(&deliver);
        let told = Arc::new(AtomicUsize::new(0));
        let counted = told.clone();
        let set = deliver.first_stage().set(Box::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        }));
        assert!(set.is_ok());
        // The flow's clones of the last stage's downstream share the slot.
        Downstream::<Item, Item>::expect_next(&deliver.clone());
        assert_eq!(told.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_lone_last_output_is_answered_at_once() {
        let (last, answer) = envelope(3);
        assert!(matches!(
            Deliver::default().push_alone(last, Instant::now()),
            Pushed::Done(None)
        ));
        assert_eq!(answer.await.unwrap().map(|out| out.n), Ok(3));
    }
}
