//! Building a flow: a type-level list of stages whose adjacent types are checked to link,
//! then `start()`, which spawns every stage from last to first (each needs the next
//! one's queue) and waits until every worker's `init` has finished.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

use super::control::Control;
use super::downstream::{Deliver, Downstream, Forward};
use super::envelope::Envelope;
use super::handle::{Flow, FlowParts};
use super::pace::Pace;
use super::runner::StageRunner;
use super::stats::StageCounters;
use crate::exec::{Executor, ProcessExecutor, ThreadExecutor};
use crate::{Error, Isolation, Stage, StageConfig, Task};

/// Proof that a stage emitting `Self` may feed a stage taking `In`: implemented only
/// when the two are the same type.
#[diagnostic::on_unimplemented(
    message = "this stage takes `{In}`, but the stage before it outputs `{Self}`",
    label = "expects `{In}`, the previous stage outputs `{Self}`",
    note = "in `flow!(a -> b)`, the output type of `a` must be the input type of `b`"
)]
pub trait Link<In> {
    /// The identity conversion.
    fn link(self) -> In;
}

impl<T> Link<T> for T {
    fn link(self) -> T {
        self
    }
}

/// Flow-wide options set on the builder.
#[derive(Debug, Clone)]
pub(crate) struct FlowOptions {
    pub timeout: Duration,
    pub queue_size: Option<usize>,
    pub start_timeout: Option<Duration>,
    pub exec_timeout: Option<Duration>,
}

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
            },
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
}

impl<In: Task, Out: Task, C: Chain<In, Out = Out>> FlowBuilder<In, Out, C> {
    /// Default timeout of `process()` (5 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// Input queue capacity of every stage, overriding each handler's `queue_size`.
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

    /// Spawns every stage's workers and waits until each has finished `init`.
    ///
    /// Fails with [`Error::Init`] naming the stage whose `init` failed, or
    /// [`Error::StartTimeout`] naming the stage that did not start in time.
    pub async fn start(self) -> Result<Flow<In, Out>, Error> {
        let mut ctx = StartCtx::new(self.options.clone());
        let input = match self.chain.spawn::<Out, Deliver>(&mut ctx, Deliver) {
            Ok(input) => input,
            Err(error) => {
                ctx.control.halt();
                return Err(error);
            }
        };
        ctx.counters.reverse();
        ctx.readiness.reverse();
        if let Err(error) = wait_ready(std::mem::take(&mut ctx.readiness)).await {
            ctx.control.begin_stop();
            ctx.control.halt();
            input.close();
            ctx.control.set_stopped();
            return Err(error);
        }
        Ok(Flow::new(FlowParts {
            input,
            control: ctx.control,
            timeout: self.options.timeout,
            first_stage: ctx.first_stage,
            counters: ctx.counters,
            runners: ctx.runners,
            threads: ctx.threads,
        }))
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

/// The outcome of each worker's `init` for one stage.
struct Readiness {
    stage: &'static str,
    timeout: Duration,
    ready: Vec<oneshot::Receiver<Result<(), String>>>,
}

async fn wait_ready(stages: Vec<Readiness>) -> Result<(), Error> {
    let started = Instant::now();
    for stage in stages {
        let deadline = started + stage.timeout;
        for ready in stage.ready {
            match timeout_at(deadline, ready).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(message))) => {
                    return Err(Error::Init {
                        stage: stage.stage,
                        message,
                    })
                }
                Ok(Err(_)) => {
                    return Err(Error::Init {
                        stage: stage.stage,
                        message: "worker exited during init".into(),
                    })
                }
                Err(_) => {
                    return Err(Error::StartTimeout {
                        stage: stage.stage,
                        after: stage.timeout,
                    })
                }
            }
        }
    }
    Ok(())
}

/// What spawning the stages accumulates.
#[doc(hidden)]
pub struct StartCtx {
    options: FlowOptions,
    control: Arc<Control>,
    first_stage: &'static str,
    counters: Vec<Arc<StageCounters>>,
    readiness: Vec<Readiness>,
    runners: Vec<tokio::task::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for StartCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartCtx")
            .field("stages", &self.counters.len())
            .finish_non_exhaustive()
    }
}

impl StartCtx {
    fn new(options: FlowOptions) -> Self {
        Self {
            options,
            control: Arc::new(Control::new()),
            first_stage: "",
            counters: Vec::new(),
            readiness: Vec::new(),
            runners: Vec::new(),
            threads: Vec::new(),
        }
    }
}

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
    ) -> Result<async_channel::Sender<Envelope<In, R>>, Error>;
}

/// The first stage of a chain.
#[doc(hidden)]
#[derive(Debug)]
pub struct First<S>(PhantomData<fn() -> S>);

/// A chain followed by stage `S`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Then<C, S>(C, PhantomData<fn() -> S>);

impl<S: Stage> Chain<S::Input> for First<S> {
    type Out = S::Output;

    fn spawn<R: Task, D: Downstream<S::Output, R>>(
        self,
        ctx: &mut StartCtx,
        downstream: D,
    ) -> Result<async_channel::Sender<Envelope<S::Input, R>>, Error> {
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
    ) -> Result<async_channel::Sender<Envelope<In, R>>, Error> {
        let queue = spawn_stage::<S, R, D>(ctx, downstream)?;
        self.0.spawn(ctx, Forward::new(queue))
    }
}

/// Starts stage `S`: its queue, its workers and its runner.
fn spawn_stage<S: Stage, R: Task, D: Downstream<S::Output, R>>(
    ctx: &mut StartCtx,
    downstream: D,
) -> Result<async_channel::Sender<Envelope<S::Input, R>>, Error> {
    let mut config = S::CONFIG;
    if let Some(capacity) = ctx.options.queue_size {
        config.queue_size = Some(capacity);
    }
    if let Some(timeout) = ctx.options.start_timeout {
        config.start_timeout = timeout;
    }
    if config.batch_size == 0 || config.nprocs == 0 {
        return Err(Error::Config(format!(
            "stage `{}`: batch_size and nprocs must be at least 1",
            S::NAME
        )));
    }
    if let Some(timeout) = ctx.options.exec_timeout {
        config.exec_timeout = Some(timeout);
    }
    let (queue, input) = async_channel::bounded(config.queue_capacity());
    let probe = input.clone();
    let counters = StageCounters::new(S::NAME, config.nprocs, move || probe.len());
    match config.isolation {
        Isolation::Thread => {
            let (executor, started) = ThreadExecutor::<S>::spawn(config.nprocs)?;
            ctx.threads.extend(started.threads);
            launch::<S, R, D, _>(
                ctx,
                downstream,
                executor,
                started.ready,
                config,
                input,
                counters,
            );
        }
        Isolation::Process => {
            let counters = Arc::new(counters.with_processes());
            let (executor, ready) = ProcessExecutor::<S>::spawn(config, counters.clone())?;
            launch::<S, R, D, _>(ctx, downstream, executor, ready, config, input, counters);
        }
    }
    Ok(queue)
}

/// Starts stage `S`'s runner over `executor`.
fn launch<S: Stage, R: Task, D: Downstream<S::Output, R>, E: Executor<S>>(
    ctx: &mut StartCtx,
    downstream: D,
    executor: E,
    ready: Vec<oneshot::Receiver<Result<(), String>>>,
    config: StageConfig,
    input: async_channel::Receiver<Envelope<S::Input, R>>,
    counters: impl Into<Arc<StageCounters>>,
) {
    let counters = counters.into();
    ctx.readiness.push(Readiness {
        stage: S::NAME,
        timeout: config.start_timeout,
        ready,
    });
    let runner = StageRunner::<S, R, D, E> {
        input,
        downstream: Arc::new(downstream),
        executor: Arc::new(executor),
        config,
        control: ctx.control.clone(),
        counters: counters.clone(),
        pace: Arc::new(Pace::new(config.nprocs)),
    };
    ctx.runners.push(tokio::spawn(runner.run()));
    ctx.counters.push(counters);
    ctx.first_stage = S::NAME;
}
