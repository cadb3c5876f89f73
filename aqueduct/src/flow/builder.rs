//! The public builder: `flow!(a -> b)` is `FlowBuilder::first::<a>().then::<b>()`;
//! options, then `start()`.

use std::marker::PhantomData;
use std::time::Duration;

use super::admission::WhenFull;
use super::chain::{Chain, First, FirstIf, Then, ThenIf};
use super::condition::{Condition, SkipTo};
use super::downstream::Deliver;
use super::handle::Flow;
use super::link::Link;
use super::queue;
use super::start::{FlowOptions, StartCtx};
use crate::{Error, Stage, Task};

/// A flow being assembled: `flow!(a -> b)` is `FlowBuilder::first::<a>().then::<b>()`.
/// Set options, then `start()`.
#[must_use = "a flow does nothing until `.start()` is awaited"]
pub struct FlowBuilder<In, Out, C> {
    chain: C,
    options: FlowOptions,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Out, C> std::fmt::Debug for FlowBuilder<In, Out, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl FlowBuilder<(), (), ()> {
    /// A flow that starts with stage `S`.
    pub fn first<S: Stage>() -> FlowBuilder<S::Input, S::Output, First<S>> {
        FlowBuilder {
            chain: First(PhantomData),
            options: FlowOptions {
                timeout: Duration::from_secs(5),
                queue_size: None,
                start_timeout: None,
                exec_timeout: None,
                when_full: WhenFull::Wait(None),
                priorities: 1,
            },
            _types: PhantomData,
        }
    }
}

impl FlowBuilder<(), (), ()> {
    /// A flow whose first stage `S` runs only the tasks `condition` accepts; the others
    /// skip it (see [`FlowBuilder::then_if`]).
    pub fn first_if<S: Stage>(
        condition: Condition<S::Input>,
    ) -> FlowBuilder<S::Input, S::Output, FirstIf<S>>
    where
        S::Input: SkipTo<S::Output>,
    {
        let FlowBuilder { options, .. } = Self::first::<S>();
        FlowBuilder {
            chain: FirstIf(condition),
            options,
            _types: PhantomData,
        }
    }
}

// `then` asks only that adjacent stages link (not the whole chain's bounds, which `start`
// needs), so a first stage that is not a `Stage` is one error, not one more per `then`.
impl<In, Out, C> FlowBuilder<In, Out, C> {
    /// Appends stage `S`, which must take this flow's current output type.
    pub fn then<S: Stage>(self) -> FlowBuilder<In, S::Output, Then<C, S>>
    where
        Out: Link<S::Input>,
    {
        FlowBuilder {
            chain: Then(self.chain, PhantomData),
            options: self.options,
            _types: PhantomData,
        }
    }

    /// Appends stage `S`, run only for the tasks `condition` accepts, evaluated on each
    /// task as it arrives there (after the stages before it). A task it rejects skips
    /// the stage, and goes on to the next stage whose condition accepts it, or straight
    /// back to the caller. `S` must take and return the same type. Its statistics count
    /// the skips.
    pub fn then_if<S: Stage>(
        self,
        condition: Condition<S::Input>,
    ) -> FlowBuilder<In, S::Output, ThenIf<C, S>>
    where
        Out: Link<S::Input>,
        S::Input: SkipTo<S::Output>,
    {
        FlowBuilder {
            chain: ThenIf(self.chain, condition),
            options: self.options,
            _types: PhantomData,
        }
    }
}

impl<In: Task, Out: Task, C: Chain<In, Out = Out>> FlowBuilder<In, Out, C> {
    /// Default timeout of `process()` (5 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// Input queue capacity of every stage, overriding each handler's `queue_size`
    /// (at least 1: a capacity of 0 is taken as 1).
    pub fn queue_size(mut self, capacity: usize) -> Self {
        self.options.queue_size = Some(capacity);
        self
    }

    /// Start timeout of every stage, overriding each handler's `start_timeout_ms`.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.options.start_timeout = Some(timeout);
        self
    }

    /// Execution timeout of every process-isolated stage, overriding each handler's
    /// `exec_timeout_ms`: a worker process still running a batch after it is killed and
    /// restarted, and the batch fails with [`Error::WorkerCrashed`].
    pub fn exec_timeout(mut self, timeout: Duration) -> Self {
        self.options.exec_timeout = Some(timeout);
        self
    }

    /// Gives every stage's queue `lanes` priority lanes (default 1). Tasks are submitted
    /// with a priority from `0` (the default, lowest) to `lanes - 1` through
    /// [`Flow::submit`]. At every stage a queued task of higher priority overtakes queued
    /// tasks of lower priority (a running batch is not pre-empted); a lower lane still
    /// starts a batch after being passed over 8 times, so it is never starved. With one
    /// lane (or `0`, taken as 1) there is no cost. At most 256 lanes: more fail `start`
    /// with [`Error::Config`].
    pub fn priorities(mut self, lanes: usize) -> Self {
        self.options.priorities = lanes.max(1);
        self
    }

    /// Makes `process()` answer [`Error::Overloaded`] at once when the first stage's
    /// queue is full, instead of waiting for room: load shedding, for services that
    /// would rather tell a client to come back (HTTP 503) than keep it waiting.
    pub fn reject_when_full(mut self) -> Self {
        self.options.when_full = WhenFull::Reject;
        self
    }

    /// Longest time `process()` waits for room when the first stage's queue is full,
    /// before it answers [`Error::Overloaded`]. Without it a caller waits while a task
    /// that got in could still finish within its timeout, by the flow's measured pace
    /// (at first, before anything is measured: up to the whole timeout).
    ///
    /// Whatever the setting, a task is turned away at once with `Error::Overloaded` when
    /// the work already queued ahead of it would, by the same measure, outlast its
    /// timeout: it would only expire in the queue.
    pub fn max_queue_wait(mut self, wait: Duration) -> Self {
        self.options.when_full = if wait.is_zero() {
            WhenFull::Reject
        } else {
            WhenFull::Wait(Some(wait))
        };
        self
    }

    /// Spawns every stage's workers and waits until each has finished `init`.
    ///
    /// Fails with [`Error::Init`] naming the stage whose `init` failed, or
    /// [`Error::StartTimeout`] naming the stage that did not start in time. Awaited
    /// outside a tokio runtime (another executor), it fails with [`Error::Config`]: the
    /// flow's runners, timers and worker pipes live on the runtime it starts on.
    pub async fn start(self) -> Result<Flow<In, Out>, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "a flow starts inside a tokio runtime (with IO and time enabled, as \
                 `#[tokio::main]` makes); code that is not async uses `start_blocking()`"
                    .into(),
            ));
        }
        if self.options.priorities > queue::MAX_LANES {
            return Err(Error::Config(format!(
                "priorities({}): a flow has at most {} priority lanes",
                self.options.priorities,
                queue::MAX_LANES
            )));
        }
        let mut ctx = StartCtx::new(self.options);
        let deliver = Deliver::default();
        let first_stage = deliver.first_stage();
        match self.chain.spawn::<Out, Deliver>(&mut ctx, deliver) {
            Ok(entry) => {
                // The last stage tells the first one of a caller's next lone task.
                if let Some(first) = entry.direct.clone() {
                    let _ = first_stage.set(Box::new(move || first.expect()));
                }
                ctx.finish(entry).await
            }
            Err(error) => Err(ctx.abort(error)),
        }
    }

    /// [`FlowBuilder::start`] for code that is not async: the flow gets its own small
    /// runtime, and is then used through the `*_blocking` methods.
    pub fn start_blocking(self) -> Result<Flow<In, Out>, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::BlockingInAsync);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("aqueduct-runtime")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot build a runtime for the flow: {e}")))?;
        let flow = runtime.block_on(self.start())?;
        flow.own_runtime(runtime);
        Ok(flow)
    }
}
