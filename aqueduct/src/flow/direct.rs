//! The way straight to a stage's worker: when the stage is idle (its runner waits for
//! work with a seat on offer, nothing is queued), `process` dispatches its own task on
//! the first stage's seat and runs the job itself, as the runner would have, saving the
//! queue and the two task switches through the runner (see [`super::idle`]). A job
//! delivering a lone task does the same at the next stage, so a lone request goes
//! through a quiet pipeline in its caller's task, without waking any runner.
//!
//! Nothing else changes: the same admission, executor, job and delivery (see
//! [`Dispatcher`]), so deadlines, crash retries and results behave as through the queue.
//! A caller that stops waiting (timeout, or its future dropped) leaves its job running
//! on the runtime, so the worker's answer is still taken and the seat comes back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::batcher::Flush;
use super::dispatch::Dispatcher;
use super::downstream::Downstream;
use super::envelope::Envelope;
use super::idle::IdleSeat;
use super::seats::{Home, Seat};
use crate::exec::Executor;
use crate::task::TaskField;
use crate::{Stage, Task};

/// A job run by whoever dispatched it: awaiting its answer, delivering it, giving the
/// seat back, then running the job of the stage it went on to straight, if any.
type JobFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A stage, as whoever brings it a task sees it (type-erased over the stage).
pub(crate) trait DirectEntry<T: TaskField, R: TaskField>: Send + Sync {
    /// Dispatches `envelope` on the stage's idle seat, if it has one and nothing is
    /// queued; gives the envelope back otherwise. `now` is a clock reading the caller
    /// has just taken (see [`Dispatcher::dispatch`]).
    fn try_run(&self, envelope: Envelope<T, R>, now: Instant) -> Result<Running, Envelope<T, R>>;

    /// Tells the worker of the stage's idle seat, if it has one, that a lone task is
    /// expected within microseconds (see [`Executor::expect`]).
    fn expect(&self);
}

/// A stage's dispatcher and the seat its runner lends.
pub(crate) struct Direct<S: Stage, R: Task, D, E> {
    /// Weak: once the runner is done (the flow stopped), the stage's executor and the
    /// next stage's queue must go with it, though the flow's handle lives on.
    stage: Weak<Dispatcher<S, R, D, E>>,
    idle: Arc<IdleSeat>,
    home: Arc<Home>,
    /// The flow's runtime, where a job dropped unfinished goes on.
    runtime: Handle,
}

impl<S: Stage, R: Task, D, E> Direct<S, R, D, E> {
    /// Called on the flow's runtime (as the flow starts).
    pub(super) fn new(
        stage: &Arc<Dispatcher<S, R, D, E>>,
        idle: Arc<IdleSeat>,
        home: Arc<Home>,
    ) -> Self {
        Self {
            stage: Arc::downgrade(stage),
            idle,
            home,
            runtime: Handle::current(),
        }
    }
}

impl<S, R, D, E> DirectEntry<S::Input, R> for Direct<S, R, D, E>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    E: Executor<S>,
{
    fn try_run(
        &self,
        envelope: Envelope<S::Input, R>,
        now: Instant,
    ) -> Result<Running, Envelope<S::Input, R>> {
        // Under load the seat is not on offer: to the queue, without writing anything
        // shared (the upgrade below is two atomic writes other threads contend for).
        if !self.idle.is_offered() {
            return Err(envelope);
        }
        // The job waits on the worker with tokio's timers: a caller polled by another
        // executor (no tokio context) leaves its task to the stage's runner instead.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(envelope);
        }
        let Some(stage) = self.stage.upgrade() else {
            return Err(envelope);
        };
        if stage.counters.queued() != 0 {
            return Err(envelope);
        }
        let Some(seat) = self.idle.take() else {
            return Err(envelope);
        };
        // Queued meanwhile: that task goes first. A worker down: the runner sets its
        // seat aside when work next reaches it.
        if stage.counters.queued() != 0 || !stage.executor.is_up(seat.worker) {
            self.idle.give_back(seat, &self.home);
            return Err(envelope);
        }
        if cfg!(feature = "metrics") && !stage.config.pipelined() {
            // The batch is complete as it starts.
            stage.counters.metrics.batch_fill(std::time::Duration::ZERO);
        }
        // As the runner would say of a batch of one taken from an otherwise empty queue.
        let flush = if stage.config.batch_size == 1 {
            Flush::Full
        } else {
            Flush::Immediate
        };
        let Some(job) = stage.dispatch(seat.worker, vec![envelope], Some(flush), now) else {
            // Not admitted (the flow halted, or the deadline passed): its caller is told.
            self.idle.give_back(seat, &self.home);
            return Ok(Running::finished());
        };
        let job: JobFuture = Box::pin(OnLentSeat {
            job,
            seat: Some((seat, self.idle.clone(), self.home.clone())),
            next: Running::finished(),
        });
        Ok(Running(Some((job, self.runtime.clone()))))
    }

    fn expect(&self) {
        let (Some(worker), Some(stage)) = (self.idle.offered_worker(), self.stage.upgrade()) else {
            return;
        };
        stage.executor.expect(worker);
    }
}

pin_project! {
    /// A job on a lent seat: the seat goes back when the job is done, then the task's
    /// next stage, entered straight from here, runs. (Written by hand: an `async` block
    /// would hold the job twice, as it was moved in and as it is awaited.)
    struct OnLentSeat<J> {
        #[pin]
        job: J,
        // The seat, until the job is done.
        seat: Option<(Seat, Arc<IdleSeat>, Arc<Home>)>,
        next: Running,
    }
}

impl<J: Future<Output = Option<Running>>> Future for OnLentSeat<J> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.seat.is_some() {
            let next = std::task::ready!(this.job.poll(cx));
            if let Some((seat, idle, home)) = this.seat.take() {
                idle.give_back(seat, &home);
            }
            if let Some(next) = next {
                *this.next = next;
            }
        }
        Pin::new(this.next).poll(cx)
    }
}

/// A job run by whoever dispatched it (a caller, or the previous stage's job, see
/// [`super::downstream::Downstream::push_alone`]). Dropped before it finished (the caller
/// stopped waiting, or its call was cancelled from another thread), it goes on as a task
/// of its own on the flow's runtime: the worker's answer must still be taken, and the
/// seat given back.
#[doc(hidden)]
pub struct Running(Option<(JobFuture, Handle)>);

impl Running {
    /// A job with nothing (left) to do.
    pub(crate) fn finished() -> Self {
        Self(None)
    }

    /// Whether the job has finished.
    pub(crate) fn is_done(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("done", &self.is_done())
            .finish()
    }
}

impl Future for Running {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some((job, _)) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        std::task::ready!(job.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some((job, runtime)) = self.0.take() {
            runtime.spawn(job);
        }
    }
}
