//! The type-level list of a flow's stages (`First<a>`, `Then<First<a>, b>`, ...) that
//! `flow!(a -> b)` builds, and how it is started: from the last stage to the first,
//! since each stage needs the next one's queue.

use std::marker::PhantomData;

use super::downstream::{Downstream, Forward};
use super::envelope::Envelope;
use super::link::Link;
use super::queue::QueueTx;
use super::start::{spawn_stage, StartCtx};
use crate::{Error, Stage, Task};

/// A chain of stages taking `In` and emitting `Out` (a type-level list built by
/// [`FlowBuilder::then`]).
#[doc(hidden)]
pub trait Chain<In: Task>: Send + 'static {
    /// What the chain's last stage emits.
    type Out: Task;

    /// Spawns the chain's stages, the last one feeding `downstream`; returns the first
    /// stage's input queue.
    fn spawn<R: Task, D: Downstream<Self::Out, R>>(
        self,
        ctx: &mut StartCtx,
        downstream: D,
    ) -> Result<QueueTx<Envelope<In, R>>, Error>;
}

/// The first stage of a chain.
#[doc(hidden)]
#[derive(Debug)]
pub struct First<S>(pub(super) PhantomData<fn() -> S>);

/// A chain followed by stage `S`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Then<C, S>(pub(super) C, pub(super) PhantomData<fn() -> S>);

impl<S: Stage> Chain<S::Input> for First<S> {
    type Out = S::Output;

    fn spawn<R: Task, D: Downstream<S::Output, R>>(
        self,
        ctx: &mut StartCtx,
        downstream: D,
    ) -> Result<QueueTx<Envelope<S::Input, R>>, Error> {
        spawn_stage::<S, R, D>(ctx, downstream)
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
    ) -> Result<QueueTx<Envelope<In, R>>, Error> {
        let queue = spawn_stage::<S, R, D>(ctx, downstream)?;
        self.0.spawn(ctx, Forward::new(queue))
    }
}
