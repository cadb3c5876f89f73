//! The processor: the seed's `AbstractBatchProcessor` (`feed_new` / `get_ready`), built
//! on a started [`Flow`]. Any `#[handler]` stage, or any chain of them, can serve.

use std::fmt;
use std::sync::Arc;

use super::handle::{InputId, ResultHandle};
use super::options::{Mode, ProcessorOptions, DEFAULT_IN_FLIGHT, NO_TIMEOUT};
use super::state::Shared;
use super::status::{ProcessorState, ProcessorStatus};
use crate::flow::{Chain, First, Flow, FlowBuilder};
use crate::shm::Owned;
use crate::{Error, Stage, Task};

/// Takes inputs at any time and hands back a [`ResultHandle`] for each as it finishes.
///
/// Feed with [`Processor::feed`]; receive with [`Processor::next`] (async, stream-like),
/// [`Processor::results_blocking`] (an iterator) or [`Processor::take_ready`] (what has
/// finished so far, without waiting). Inputs can be cancelled one by one or all at once
/// until they finish. One consumer should take the results: whoever takes a result first
/// gets it.
///
/// Cloning is cheap and every clone is the same processor (and the same node when added
/// to a [`crate::graph::Graph`]). When the last clone is dropped, pending inputs are
/// cancelled and unread results released.
///
/// ```no_run
/// # #[aqueduct::task] struct Item { n: u64 }
/// # #[aqueduct::handler] fn double(item: &mut Item) { item.n *= 2 }
/// # async fn demo() -> Result<(), aqueduct::Error> {
/// use aqueduct::graph::Processor;
///
/// let doubler = Processor::of::<double>().start().await?;
/// doubler.feed(Item { n: 1 })?;
/// doubler.feed(Item { n: 2 })?;
/// while let Some(done) = doubler.next().await {
///     println!("{} -> {:?}", done.input().n, done.result().map(|out| out.n));
/// }
/// # Ok(()) }
/// ```
pub struct Processor<In: Task, Out: Task> {
    owner: Arc<Owner<In, Out>>,
}

/// The user-side handle: when the last one goes, so does the pending work.
struct Owner<In: Task, Out: Task>(Arc<Shared<In, Out>>);

impl<In: Task, Out: Task> Drop for Owner<In, Out> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

impl<In: Task, Out: Task> Clone for Processor<In, Out> {
    fn clone(&self) -> Self {
        Self {
            owner: self.owner.clone(),
        }
    }
}

impl<In: Task, Out: Task> fmt::Debug for Processor<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processor")
            .field("name", &self.name())
            .field("mode", &self.mode())
            .field("status", &self.status())
            .finish()
    }
}

impl<In: Task, Out: Task> Processor<In, Out> {
    /// A processor for stage `S` (a `#[handler]` function's name); set options, then
    /// `start()`. For a chain of stages use [`ProcessorBuilder::new`] with `flow!(a -> b)`.
    pub fn of<S: Stage<Input = In, Output = Out>>() -> ProcessorBuilder<In, Out, First<S>> {
        let config = S::CONFIG;
        let mut builder = ProcessorBuilder::new(FlowBuilder::first::<S>());
        builder.fitted_limit = Some(config.queue_capacity() + config.nprocs * config.batch_size);
        builder
    }

    /// A processor over a flow that is already started. The flow's own `process` timeout
    /// does not apply; the processor's does.
    pub fn from_flow(flow: Flow<In, Out>, options: ProcessorOptions) -> Self {
        Self::assemble(flow, options, None)
    }

    fn assemble(
        flow: Flow<In, Out>,
        options: ProcessorOptions,
        fitted_limit: Option<usize>,
    ) -> Self {
        let name = options.name.unwrap_or_else(|| {
            let stages: Vec<&str> = flow.stats().iter().map(|stage| stage.name).collect();
            stages.join(" -> ")
        });
        let limit = options
            .max_in_flight
            .or(fitted_limit)
            .unwrap_or(DEFAULT_IN_FLIGHT);
        let timeout = options.timeout.unwrap_or(NO_TIMEOUT);
        let shared = Shared::new(flow, name, options.mode, timeout, limit);
        Self {
            owner: Arc::new(Owner(Arc::new(shared))),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<In, Out>> {
        &self.owner.0
    }

    /// Name shown in progress, summaries and errors.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// Separate or sequential.
    pub fn mode(&self) -> Mode {
        self.shared().mode
    }

    /// The flow the processor drives (for its per-stage statistics, say).
    pub fn flow(&self) -> &Flow<In, Out> {
        &self.shared().flow
    }

    /// Queues `input` (the seed's `feed_new`); never waits. The processor takes
    /// ownership of the input's shared memory. Fails with [`Error::NotRunning`] once the
    /// processor is stopping, or if the input holds an invalid shared-memory handle.
    pub fn feed(&self, input: In) -> Result<InputId, Error> {
        self.feed_owned(Owned::new(input))
    }

    /// [`Processor::feed`] at a priority of the processor's flow (see
    /// [`crate::FlowBuilder::priorities`]): it is dispatched before inputs of lower
    /// priority waiting in the processor, and overtakes them in the flow's queues.
    /// [`Error::InvalidPriority`] if the flow has no lane for it.
    pub fn feed_priority(&self, input: In, priority: usize) -> Result<InputId, Error> {
        self.shared().feed(Owned::new(input), priority)
    }

    /// [`Processor::feed`] for an input already in the runtime's custody.
    pub(crate) fn feed_owned(&self, input: Owned<In>) -> Result<InputId, Error> {
        self.shared().feed(input, 0)
    }

    /// Queues every input, in order. On the first failure the remaining inputs are
    /// released unfed and the error returned; those before it stay fed.
    pub fn feed_all(&self, inputs: impl IntoIterator<Item = In>) -> Result<Vec<InputId>, Error> {
        let (ids, error) = self.feed_iter(inputs);
        match error {
            None => Ok(ids),
            Some(error) => Err(error),
        }
    }

    fn feed_iter(&self, inputs: impl IntoIterator<Item = In>) -> (Vec<InputId>, Option<Error>) {
        // Every input is the processor's from here: one not fed is dropped, with its
        // shared memory.
        let mut inputs = inputs.into_iter().map(Owned::new);
        let mut ids = Vec::with_capacity(inputs.size_hint().0);
        for input in inputs.by_ref() {
            match self.feed_owned(input) {
                Ok(id) => ids.push(id),
                Err(error) => {
                    inputs.for_each(drop);
                    return (ids, Some(error));
                }
            }
        }
        (ids, None)
    }

    /// Every result finished so far, without waiting (the seed's `get_ready`).
    pub fn take_ready(&self) -> Vec<ResultHandle<In, Out>> {
        self.shared().take_ready()
    }

    /// The next result to finish. `None` once nothing is pending or ready; feeding more
    /// makes it return results again.
    pub async fn next(&self) -> Option<ResultHandle<In, Out>> {
        self.shared().next().await
    }

    /// [`Processor::next`] for code that is not async.
    pub fn next_blocking(&self) -> Result<Option<ResultHandle<In, Out>>, Error> {
        not_in_async()?;
        Ok(self.shared().next_blocking())
    }

    /// An iterator over results as they finish, for code that is not async; it ends once
    /// nothing is pending or ready.
    pub fn results_blocking(&self) -> Result<BlockingResults<'_, In, Out>, Error> {
        not_in_async()?;
        Ok(BlockingResults { processor: self })
    }

    /// Cancels one input if it has not finished: it comes back as a cancelled result.
    /// An input still waiting for dispatch, or still in the flow's queue, never reaches
    /// the handler; one already in a handler runs on, and its output is discarded.
    /// Returns `false` if the input is not pending.
    pub fn cancel(&self, id: InputId) -> bool {
        self.shared().cancel(id)
    }

    /// Cancels every pending input, as [`Processor::cancel`] does; returns how many.
    pub fn cancel_all(&self) -> usize {
        self.shared().cancel_all()
    }

    /// Running, stopping or stopped.
    pub fn state(&self) -> ProcessorState {
        self.status().state
    }

    /// Queue lengths and counters.
    pub fn status(&self) -> ProcessorStatus {
        self.shared().status()
    }

    /// Stops the processor and its flow; `feed` fails from now on. Graceful: every
    /// pending input finishes first. Not graceful (kill): every pending input is
    /// cancelled and the flow halted. Results not yet taken stay available. A kill also
    /// cuts short a graceful stop under way, as for a flow (see [`Flow::stop`]).
    ///
    /// [`Flow::stop`]: crate::Flow::stop
    pub async fn stop(&self, graceful: bool) {
        let shared = self.shared();
        if !shared.stop_goes_on(graceful) {
            return;
        }
        if graceful {
            shared.idle().await;
        } else {
            shared.cancel_all();
        }
        shared.flow.stop(graceful).await;
        shared.set_stopped();
    }

    /// [`Processor::stop`] for code that is not async.
    pub fn stop_blocking(&self, graceful: bool) -> Result<(), Error> {
        not_in_async()?;
        let shared = self.shared();
        if !shared.stop_goes_on(graceful) {
            return Ok(());
        }
        if graceful {
            shared.idle_blocking();
        } else {
            shared.cancel_all();
        }
        shared.flow.stop_blocking(graceful)?;
        shared.set_stopped();
        Ok(())
    }

    /// Runs every input and returns their results in feed order (the seed's
    /// `run_batch_processor`). Results of inputs fed by others are left in place.
    pub async fn run(
        &self,
        inputs: impl IntoIterator<Item = In>,
    ) -> Result<Vec<ResultHandle<In, Out>>, Error> {
        let ids = self.fed_or_withdrawn(inputs)?;
        Ok(self.shared().collect(&ids).await)
    }

    /// Runs one input and returns its result (the seed's `run_batch_processor_single`).
    pub async fn run_one(&self, input: In) -> Result<ResultHandle<In, Out>, Error> {
        let id = self.feed(input)?;
        Ok(one(self.shared().collect(&[id]).await))
    }

    /// [`Processor::run`] for code that is not async.
    pub fn run_blocking(
        &self,
        inputs: impl IntoIterator<Item = In>,
    ) -> Result<Vec<ResultHandle<In, Out>>, Error> {
        if let Err(error) = not_in_async() {
            // Refused inputs are dropped with their shared memory, as `feed` would.
            inputs.into_iter().map(Owned::new).for_each(drop);
            return Err(error);
        }
        let ids = self.fed_or_withdrawn(inputs)?;
        Ok(self.shared().collect_blocking(&ids))
    }

    /// [`Processor::run_one`] for code that is not async.
    pub fn run_one_blocking(&self, input: In) -> Result<ResultHandle<In, Out>, Error> {
        if let Err(error) = not_in_async() {
            drop(Owned::new(input));
            return Err(error);
        }
        let id = self.feed(input)?;
        Ok(one(self.shared().collect_blocking(&[id])))
    }

    /// Feeds all of `inputs`, or none: if one cannot be fed, those already fed are
    /// cancelled and their results dropped.
    fn fed_or_withdrawn(
        &self,
        inputs: impl IntoIterator<Item = In>,
    ) -> Result<Vec<InputId>, Error> {
        let (ids, error) = self.feed_iter(inputs);
        let Some(error) = error else {
            return Ok(ids);
        };
        for id in &ids {
            self.cancel(*id);
        }
        // Every one of them has finished now (cancelled, or done just before).
        drop(self.shared().collect_now(&ids));
        Err(error)
    }
}

fn one<In: Task, Out: Task>(mut results: Vec<ResultHandle<In, Out>>) -> ResultHandle<In, Out> {
    results.pop().expect("one input fed, one result collected")
}

/// Results as they finish, for code that is not async: see
/// [`Processor::results_blocking`].
pub struct BlockingResults<'a, In: Task, Out: Task> {
    processor: &'a Processor<In, Out>,
}

impl<In: Task, Out: Task> Iterator for BlockingResults<'_, In, Out> {
    type Item = ResultHandle<In, Out>;

    fn next(&mut self) -> Option<Self::Item> {
        self.processor.shared().next_blocking()
    }
}

impl<In: Task, Out: Task> fmt::Debug for BlockingResults<'_, In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingResults")
            .field("processor", &self.processor.name())
            .finish()
    }
}

/// A processor being configured: `Processor::of::<stage>()` or
/// `ProcessorBuilder::new(flow!(a -> b))`, then options, then `start()`.
#[must_use = "a processor does nothing until `.start()` is awaited"]
pub struct ProcessorBuilder<In, Out, C> {
    flow: FlowBuilder<In, Out, C>,
    options: ProcessorOptions,
    fitted_limit: Option<usize>,
}

impl<In, Out, C> fmt::Debug for ProcessorBuilder<In, Out, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorBuilder")
            .field("flow", &self.flow)
            .field("options", &self.options)
            .finish()
    }
}

impl<In: Task, Out: Task, C: Chain<In, Out = Out>> ProcessorBuilder<In, Out, C> {
    /// A processor over the flow `flow` will start (for instance `flow!(a -> b)`).
    pub fn new(flow: FlowBuilder<In, Out, C>) -> Self {
        Self {
            flow,
            options: ProcessorOptions::default(),
            fitted_limit: None,
        }
    }

    /// Separate (the default) or sequential.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.options.mode = mode;
        self
    }

    /// Runs inputs strictly one after another, in feed order.
    pub fn sequential(self) -> Self {
        self.mode(Mode::Sequential)
    }

    /// Longest time one input may take from dispatch to result (no limit unless set).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Most inputs handed to the flow at once (see [`ProcessorOptions::max_in_flight`]).
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.options.max_in_flight = Some(limit);
        self
    }

    /// Name shown in progress, summaries and errors (default: the stage names).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.options.name = Some(name.into());
        self
    }

    /// Starts the flow (every worker's `init` done) and the processor on it.
    pub async fn start(self) -> Result<Processor<In, Out>, Error> {
        let flow = self.flow.start().await?;
        Ok(Processor::assemble(flow, self.options, self.fitted_limit))
    }

    /// [`ProcessorBuilder::start`] for code that is not async: the processor gets its own
    /// small runtime and is then used through the `*_blocking` methods.
    pub fn start_blocking(self) -> Result<Processor<In, Out>, Error> {
        let flow = self.flow.start_blocking()?;
        Ok(Processor::assemble(flow, self.options, self.fitted_limit))
    }
}

pub(crate) fn not_in_async() -> Result<(), Error> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(Error::BlockingInAsync),
        Err(_) => Ok(()),
    }
}
