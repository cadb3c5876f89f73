//! Starting a flow's stages: for each, its input queue, its workers (threads or
//! processes) and its runner; then waiting until every worker's `init` has finished.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::{timeout_at, Instant};

use super::admission::{Load, StageLoad, WhenFull};
use super::chain::Entry;
use super::control::Control;
use super::direct::DirectEntry;
use super::downstream::Downstream;
use super::envelope::Envelope;
use super::handle::{Flow, FlowParts};
use super::pace::Pace;
use super::queue::{self, QueueRx, QueueTx};
use super::runner::{Kept, StageRunner};
use crate::exec::{Executor, ProcessExecutor, ThreadExecutor};
use crate::platform::clock;
use crate::stats::StageCounters;
use crate::{Error, Isolation, Stage, StageConfig, Task};

/// Flow-wide options set on the builder.
#[derive(Debug, Clone)]
pub(crate) struct FlowOptions {
    pub timeout: Duration,
    pub queue_size: Option<usize>,
    pub start_timeout: Option<Duration>,
    pub exec_timeout: Option<Duration>,
    pub when_full: WhenFull,
    /// Priority lanes in every stage's queue.
    pub priorities: usize,
}

/// What spawning the stages accumulates.
#[doc(hidden)]
pub struct StartCtx {
    options: FlowOptions,
    control: Arc<Control>,
    first_stage: &'static str,
    counters: Vec<Arc<StageCounters>>,
    loads: Vec<StageLoad>,
    /// Per stage: signalled when its runner takes tasks from its queue.
    rooms: Vec<Arc<Notify>>,
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
    pub(crate) fn new(options: FlowOptions) -> Self {
        Self {
            options,
            control: Arc::new(Control::new()),
            first_stage: "",
            counters: Vec::new(),
            loads: Vec::new(),
            rooms: Vec::new(),
            readiness: Vec::new(),
            runners: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// The counters of the stage spawned last.
    pub(crate) fn last_counters(&self) -> Arc<StageCounters> {
        self.counters
            .last()
            .expect("called after a stage was spawned")
            .clone()
    }

    /// Waits until every stage's workers have finished `init`, then hands over the
    /// running flow, fed through `input` (the first stage's queue). If one fails, the
    /// stages already started are stopped.
    pub(crate) async fn finish<In: Task, Out: Task>(
        mut self,
        entry: Entry<In, Out>,
    ) -> Result<Flow<In, Out>, Error> {
        // Stages were spawned from the last to the first.
        self.counters.reverse();
        self.loads.reverse();
        self.rooms.reverse();
        self.readiness.reverse();
        if let Err(error) = wait_ready(std::mem::take(&mut self.readiness)).await {
            self.control.begin_stop();
            self.control.halt();
            drop(entry.queue.close());
            self.control.set_stopped();
            return Err(error);
        }
        #[cfg(feature = "metrics")]
        super::sample::spawn_sampler(&self.counters);
        let load = Load {
            stages: self.loads,
            room: self.rooms.swap_remove(0),
            when_full: self.options.when_full,
        };
        Ok(Flow::new(FlowParts {
            input: entry.queue,
            direct: entry.direct,
            entry_skip: entry.skip,
            priorities: self.options.priorities,
            load,
            control: self.control,
            timeout: self.options.timeout,
            first_stage: self.first_stage,
            counters: self.counters,
            runners: self.runners,
            threads: self.threads,
        }))
    }

    /// Stops what was started before spawning failed with `error`; returns `error`.
    pub(crate) fn abort(self, error: Error) -> Error {
        self.control.halt();
        error
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
        let deadline = clock::deadline(started, stage.timeout);
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

/// A started stage, as the stage before it (or the flow) sees it.
pub(super) struct Spawned<In: Task, R: Task> {
    /// Its input queue.
    pub queue: QueueTx<Envelope<In, R>>,
    /// The way straight to its idle worker, if it lends its seat.
    pub direct: Option<Arc<dyn DirectEntry<In, R>>>,
}

/// Starts stage `S`: its queue, its workers and its runner. `lends`: the stage is fed
/// directly (the flow's first stage, or one after a plain `->`), so while it is idle,
/// whoever brings it a lone task may dispatch it itself (see [`super::direct`]); a
/// stage behind a condition is always fed through its queue. `keep`: what the stage's
/// runner holds until it is done (see [`StageRunner::keep_until_done`]).
pub(super) fn spawn_stage<S: Stage, R: Task, D: Downstream<S::Output, R>>(
    ctx: &mut StartCtx,
    downstream: D,
    lends: bool,
    keep: Option<Kept>,
) -> Result<Spawned<S::Input, R>, Error> {
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
    let (queue, input) = queue::bounded(ctx.options.priorities, config.queue_capacity());
    let counters = StageCounters::new(S::NAME, config.nprocs, input.counter());
    let stage = Launch::<S, R, D> {
        downstream,
        config,
        input,
        lends,
        keep,
    };
    let direct = match config.isolation {
        Isolation::Thread => {
            let (executor, started) = ThreadExecutor::<S>::spawn(config.nprocs)?;
            ctx.threads.extend(started.threads);
            stage.launch(ctx, executor, started.ready, Arc::new(counters))
        }
        Isolation::Process => {
            let counters = Arc::new(counters.with_processes());
            let (executor, ready) = ProcessExecutor::<S>::spawn(config, counters.clone())?;
            stage.launch(ctx, executor, ready, counters)
        }
    };
    Ok(Spawned { queue, direct })
}

/// A stage ready to launch over the executor its isolation asks for.
struct Launch<S: Stage, R: Task, D> {
    downstream: D,
    config: StageConfig,
    input: QueueRx<Envelope<S::Input, R>>,
    /// Whether it lends its seat (see `spawn_stage`).
    lends: bool,
    keep: Option<Kept>,
}

impl<S, R, D> Launch<S, R, D>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
{
    /// Starts the stage's runner over `executor`, whose workers report their `init` on
    /// `ready`; for a stage that lends its seat, returns its direct entry.
    fn launch<E: Executor<S>>(
        self,
        ctx: &mut StartCtx,
        executor: E,
        ready: Vec<oneshot::Receiver<Result<(), String>>>,
        counters: Arc<StageCounters>,
    ) -> Option<Arc<dyn DirectEntry<S::Input, R>>> {
        let config = self.config;
        let pace = Arc::new(Pace::new(config.nprocs));
        let room = Arc::new(Notify::new());
        ctx.loads.push(StageLoad {
            pace: pace.clone(),
            counters: counters.clone(),
            workers: config.nprocs,
            batch_size: config.batch_size,
            capacity: config.queue_capacity(),
            lanes: ctx.options.priorities.max(1),
        });
        ctx.rooms.push(room.clone());
        ctx.readiness.push(Readiness {
            stage: S::NAME,
            timeout: config.start_timeout,
            ready,
        });
        let mut runner = StageRunner::<S, R, D, E>::new(
            self.input,
            self.downstream,
            executor,
            config,
            ctx.control.clone(),
            counters.clone(),
            pace,
            room,
        );
        if let Some(keep) = self.keep {
            runner.keep_until_done(keep);
        }
        let direct = if self.lends { runner.direct() } else { None };
        ctx.runners.push(tokio::spawn(runner.run()));
        ctx.counters.push(counters);
        ctx.first_stage = S::NAME;
        direct.map(|direct| direct as Arc<dyn DirectEntry<S::Input, R>>)
    }
}
