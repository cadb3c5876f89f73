//! The type-level list of a flow's stages (`First<a>`, `Then<First<a>, b>`, ...) that
//! `flow!(a -> b)` builds, and how it is started: from the last stage to the first,
//! since each stage needs the next one's queue.

use std::marker::PhantomData;
use std::sync::Arc;

use super::condition::{Branch, Condition, EntrySkip, PushBoxed, SkipTo, Skipped};
use super::direct::DirectEntry;
use super::downstream::{Downstream, Forward};
use super::envelope::Envelope;
use super::link::Link;
use super::queue::QueueTx;
use super::start::{spawn_stage, StartCtx};
use crate::{Error, Stage, Task};

/// Where a flow's tasks enter: the first stage's queue, and, if the first stage has a
/// condition, where the tasks it rejects go instead.
#[doc(hidden)]
pub struct Entry<In: Task, R: Task> {
    pub(crate) queue: QueueTx<Envelope<In, R>>,
    /// The way straight to the first stage's idle worker, if it lends its seat.
    pub(crate) direct: Option<Arc<dyn DirectEntry<In, R>>>,
    pub(crate) skip: Option<EntrySkip<In, R>>,
}

impl<In: Task, R: Task> std::fmt::Debug for Entry<In, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("conditional", &self.skip.is_some())
            .finish_non_exhaustive()
    }
}

/// A chain of stages taking `In` and emitting `Out` (a type-level list built by
/// [`FlowBuilder::then`]).
#[doc(hidden)]
pub trait Chain<In: Task>: Send + 'static {
    /// What the chain's last stage emits.
    type Out: Task;

    /// Spawns the chain's stages, the last one feeding `downstream`; returns where the
    /// flow's tasks enter.
    fn spawn<R: Task, D: Downstream<Self::Out, R>>(
        self,
        ctx: &mut StartCtx,
        downstream: D,
    ) -> Result<Entry<In, R>, Error>;
}

/// The first stage of a chain.
#[doc(hidden)]
#[derive(Debug)]
pub struct First<S>(pub(super) PhantomData<fn() -> S>);

/// A chain followed by stage `S`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Then<C, S>(pub(super) C, pub(super) PhantomData<fn() -> S>);

/// The first stage of a chain, run only for the tasks its condition accepts.
#[doc(hidden)]
pub struct FirstIf<S: Stage>(pub(super) Condition<S::Input>);

/// A chain followed by stage `S`, run only for the tasks its condition accepts.
#[doc(hidden)]
pub struct ThenIf<C, S: Stage>(pub(super) C, pub(super) Condition<S::Input>);

impl<S: Stage> std::fmt::Debug for FirstIf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FirstIf({})", S::NAME)
    }
}

impl<C: std::fmt::Debug, S: Stage> std::fmt::Debug for ThenIf<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ThenIf")
            .field(&self.0)
            .field(&S::NAME)
            .finish()
    }
}

impl<S: Stage> Chain<S::Input> for First<S> {
    type Out = S::Output;

    fn spawn<R: Task, D: Downstream<S::Output, R>>(
        self,
        ctx: &mut StartCtx,
        downstream: D,
    ) -> Result<Entry<S::Input, R>, Error> {
        let stage = spawn_stage::<S, R, D>(ctx, downstream, true, None)?;
        Ok(Entry {
            queue: stage.queue,
            direct: stage.direct,
            skip: None,
        })
    }
}

impl<S: Stage> Chain<S::Input> for FirstIf<S>
where
    S::Input: SkipTo<S::Output>,
{
    type Out = S::Output;

    fn spawn<R: Task, D: Downstream<S::Output, R>>(
        self,
        ctx: &mut StartCtx,
        downstream: D,
    ) -> Result<Entry<S::Input, R>, Error> {
        // The first stage's runner keeps the way around it (see `EntrySkip::to`).
        let around = Arc::new(Skipped::<D, S::Output>::new(downstream.clone()));
        let stage = spawn_stage::<S, R, D>(ctx, downstream, true, Some(around.clone()))?;
        let to: Arc<dyn PushBoxed<S::Input, R>> = around;
        let skip = EntrySkip {
            condition: self.0,
            to: Arc::downgrade(&to),
            counters: ctx.last_counters(),
        };
        Ok(Entry {
            queue: stage.queue,
            direct: stage.direct,
            skip: Some(skip),
        })
    }
}

impl<In: Task, C: Chain<In>, S: Stage> Chain<In> for ThenIf<C, S>
where
    C::Out: Link<S::Input>,
    S::Input: SkipTo<S::Output>,
{
    type Out = S::Output;

    fn spawn<R: Task, D: Downstream<S::Output, R>>(
        self,
        ctx: &mut StartCtx,
        downstream: D,
    ) -> Result<Entry<In, R>, Error> {
        let stage = spawn_stage::<S, R, D>(ctx, downstream.clone(), false, None)?;
        let branch = Branch {
            condition: self.1,
            queue: stage.queue,
            skip: Skipped::<D, S::Output>::new(downstream),
            counters: ctx.last_counters(),
        };
        self.0.spawn(ctx, branch)
    }
}

impl<In: Task, C: Chain<In>, S: Stage> Chain<In> for Then<C, S>
where
    C::Out: Link<S::Input>,
{
    type Out = S::Output;

    fn spawn<R: Task, D: Downstream<S::Output, R>>(
        self,
        ctx: &mut StartCtx,
        downstream: D,
    ) -> Result<Entry<In, R>, Error> {
        let stage = spawn_stage::<S, R, D>(ctx, downstream, true, None)?;
        self.0.spawn(ctx, Forward::new(stage.queue, stage.direct))
    }
}
