//! The running flow: a cheap, cloneable handle for submitting tasks and stopping.

use crate::sync::lock;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::timeout_at;

use super::admission::Load;
use super::answer::{Answer, Call, Entering, Observe};
use super::condition::EntrySkip;
use super::control::Control;
pub use super::control::FlowState;
use super::direct::{DirectEntry, Running};
use super::envelope::Envelope;
use super::queue::{QueueTx, Spot, TrySendError};
use super::room::{InLine, Line};
use crate::shm::{ownership, Owned};
use crate::stats::{StageCounters, StageStats};
use crate::{Error, Task};

/// A started pipeline taking `In` tasks and returning `Out` tasks.
///
/// Cloning is cheap and every clone drives the same flow, so one flow can serve many
/// concurrent requests. Dropping the last handle closes the flow's input; tasks already
/// accepted still finish.
pub struct Flow<In: Task, Out: Task> {
    inner: Arc<Inner<In, Out>>,
}

impl<In: Task, Out: Task> Clone for Flow<In, Out> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<In: Task, Out: Task> std::fmt::Debug for Flow<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("state", &self.state())
            .field("stages", &self.stats())
            .finish()
    }
}

/// Everything `start()` produced.
pub(crate) struct FlowParts<In: Task, Out: Task> {
    pub input: QueueTx<Envelope<In, Out>>,
    pub direct: Option<Arc<dyn DirectEntry<In, Out>>>,
    pub entry_skip: Option<EntrySkip<In, Out>>,
    pub priorities: usize,
    pub load: Load,
    pub control: Arc<Control>,
    pub timeout: Duration,
    pub first_stage: &'static str,
    pub counters: Vec<Arc<StageCounters>>,
    pub runners: Vec<tokio::task::JoinHandle<()>>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

struct Inner<In: Task, Out: Task> {
    input: QueueTx<Envelope<In, Out>>,
    /// The stages' names joined by `->`.
    name: &'static str,
    /// The flow's request metrics (`metrics` feature).
    metrics: crate::metrics::FlowMetrics,
    /// `process` calls made so far (the `seq` of each call's span).
    calls: std::sync::atomic::AtomicU64,
    /// The way straight to the first stage's worker when it is idle.
    direct: Option<Arc<dyn DirectEntry<In, Out>>>,
    entry_skip: Option<EntrySkip<In, Out>>,
    priorities: usize,
    load: Load,
    control: Arc<Control>,
    timeout: Duration,
    first_stage: &'static str,
    counters: Vec<Arc<StageCounters>>,
    runners: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    handle: tokio::runtime::Handle,
    runtime: OnceLock<OwnedRuntime>,
}

impl<In: Task, Out: Task> Line for Inner<In, Out> {
    fn leave(&self, spot: Spot) -> bool {
        self.input.leave_line(spot).is_some()
    }

    fn stage(&self) -> &'static str {
        self.first_stage
    }
}

impl<In: Task, Out: Task> Flow<In, Out> {
    pub(crate) fn new(parts: FlowParts<In, Out>) -> Self {
        let name = flow_name(&parts.counters);
        if parts.counters.len() > 1 && crate::spin::multicore() {
            parts.control.expecting().measure();
        }
        let inner = Inner {
            input: parts.input,
            name,
            metrics: crate::metrics::FlowMetrics::new(name),
            calls: std::sync::atomic::AtomicU64::new(0),
            direct: parts.direct,
            entry_skip: parts.entry_skip,
            priorities: parts.priorities,
            load: parts.load,
            control: parts.control,
            timeout: parts.timeout,
            first_stage: parts.first_stage,
            counters: parts.counters,
            runners: Mutex::new(parts.runners),
            threads: Mutex::new(parts.threads),
            handle: tokio::runtime::Handle::current(),
            runtime: OnceLock::new(),
        };
        // Wakes callers at their deadlines, while the flow lives.
        let control = inner.control.clone();
        inner.handle.spawn(async move { control.tick().await });
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The runtime the flow was started on, for layers built on top of flows (graph
    /// processors) that spawn their own tasks next to the flow's.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    pub(crate) fn own_runtime(&self, runtime: tokio::runtime::Runtime) {
        let _ = self.inner.runtime.set(OwnedRuntime(Some(runtime)));
    }

    /// Runs `task` through every stage, with the flow's default timeout (5 s unless set
    /// on the builder). Never blocks the runtime: the work happens on the stages' workers.
    /// The timeout counts from this call, not from the returned future's first poll.
    pub fn process(&self, task: In) -> impl Future<Output = Result<Owned<Out>, Error>> + Send + '_ {
        // Not an `async fn`, nor is `process_timeout`: each layer of `async fn` would
        // store the task once more in the call's future, which is moved whole when a
        // caller spawns it and when it completes.
        self.process_owned(Owned::new(task), self.inner.timeout, 0)
    }

    /// [`Flow::process`] with an explicit timeout, covering both the wait for room in the
    /// first stage's queue ([`Error::Overloaded`] if none came) and the processing
    /// ([`Error::Timeout`]).
    pub fn process_timeout(
        &self,
        task: In,
        timeout: Duration,
    ) -> impl Future<Output = Result<Owned<Out>, Error>> + Send + '_ {
        self.process_owned(Owned::new(task), timeout, 0)
    }

    /// A `process` call with options, run by awaiting it:
    /// `flow.submit(task).priority(2).timeout(d).await`.
    pub fn submit(&self, task: In) -> Submission<'_, In, Out> {
        Submission {
            flow: self,
            task: Owned::new(task),
            priority: 0,
            timeout: self.inner.timeout,
        }
    }

    /// The flow's name: its stages' names joined by `->` (the `flow` label of its
    /// metrics and spans).
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Priority lanes in this flow's queues (`FlowBuilder::priorities`).
    pub fn priorities(&self) -> usize {
        self.inner.priorities
    }

    /// [`Flow::process_timeout`] for a task already in the runtime's custody (a graph
    /// processor's input); if it is refused, it is dropped with its shared memory.
    ///
    /// Observed: a `process` span (debug level; fields `flow` and `seq`, the call's
    /// number in this flow), the parent of the runner's events about the task; a
    /// `finished` event with the outcome; the request metrics.
    pub(crate) fn process_owned(
        &self,
        task: Owned<In>,
        timeout: Duration,
        priority: usize,
    ) -> Answer<'_, Out> {
        use std::sync::atomic::Ordering;
        let inner = &*self.inner;
        // One clock reading for the call: its deadline, its first dispatch if it finds
        // the first stage idle, and its duration (with the `metrics` feature).
        let now = std::time::Instant::now();
        let span = tracing::debug_span!(
            "process",
            flow = inner.name,
            seq = inner.calls.fetch_add(1, Ordering::Relaxed)
        );
        let observe = Observe {
            span: (!span.is_none()).then(|| span.clone()),
            started: cfg!(feature = "metrics").then_some(now),
            metrics: &inner.metrics,
        };
        // Sending is done here, so the task is not kept in the future's state, only what
        // the answer is awaited with.
        let sent = self.send(task, timeout, priority, span, now.into());
        Answer::new(sent, &inner.control, observe)
    }

    /// Checks `task` and hands it to the first stage (or past it, if its condition
    /// rejects the task); what is left is awaiting the answer.
    fn send(
        &self,
        task: Owned<In>,
        timeout: Duration,
        priority: usize,
        span: tracing::Span,
        now: tokio::time::Instant,
    ) -> Result<Call<'_, Out>, Error> {
        let inner = &*self.inner;
        if inner.control.state() != FlowState::Running {
            return Err(Error::NotRunning);
        }
        if priority >= inner.priorities {
            return Err(Error::InvalidPriority {
                priority,
                lanes: inner.priorities,
            });
        }
        ownership::validate(&*task)?;
        let in_flight = inner.control.enter();
        let expecting = inner.control.expecting();
        let lone = (expecting.measuring() && inner.control.in_flight() == 1)
            .then(|| (now.into_std(), expecting.on()));
        // If the caller stops waiting (timeout, halt, or this future is dropped), the
        // receiver is dropped: the runner sees the task abandoned, and a result that
        // arrives anyway is dropped with the channel.
        let (reply, receiver) = oneshot::channel();
        let envelope = Envelope::new(task, reply, timeout, priority, span, now);
        let deadline = envelope.deadline();
        let mut job = Running::finished();
        let entering = match &inner.entry_skip {
            // The first stage's condition rejects the task: it goes on from there.
            Some(skip) if !(skip.condition)(envelope.task()) => {
                // Gone once the first stage is done: the flow is stopping.
                let Some(to) = skip.to.upgrade() else {
                    return Err(Error::NotRunning);
                };
                skip.counters.skipped();
                Entering::Waiting(Box::pin(async move {
                    timeout_at(deadline, to.push_boxed(envelope))
                        .await
                        .map_err(|_| Error::Timeout { after: timeout })
                }))
            }
            // The work queued ahead would outlast the timeout: turned away (see
            // `admission`).
            _ if inner.load.turns_away(timeout) => {
                return Err(Error::Overloaded {
                    stage: inner.first_stage,
                    waited: Duration::ZERO,
                })
            }
            _ => match self.run_directly(envelope, now) {
                Ok(running) => {
                    job = running;
                    Entering::Entered
                }
                Err(envelope) => self.enter(envelope, now, priority)?,
            },
        };
        Ok(Call {
            entering,
            job,
            receiver,
            deadline,
            timeout,
            _in_flight: in_flight,
            lone,
        })
    }

    /// Dispatches `envelope` on the first stage's idle worker, if the stage is idle
    /// (see `direct`); gives it back otherwise, for the queue.
    fn run_directly(
        &self,
        envelope: Envelope<In, Out>,
        now: tokio::time::Instant,
    ) -> Result<Running, Envelope<In, Out>> {
        let inner = &*self.inner;
        match &inner.direct {
            Some(direct) => direct.try_run(envelope, now),
            None => Err(envelope),
        }
    }

    /// [`Flow::process`] for code that is not async (a plain thread, `fn main`). Returns
    /// [`Error::BlockingInAsync`] if called on a thread that runs async tasks.
    pub fn process_blocking(&self, task: In) -> Result<Owned<Out>, Error> {
        self.process_timeout_blocking(task, self.inner.timeout)
    }

    /// [`Flow::process_timeout`] for code that is not async.
    pub fn process_timeout_blocking(
        &self,
        task: In,
        timeout: Duration,
    ) -> Result<Owned<Out>, Error> {
        let task = Owned::new(task);
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::BlockingInAsync);
        }
        self.inner
            .handle
            .block_on(self.process_owned(task, timeout, 0))
    }

    /// Stops the flow. New `process` calls get [`Error::NotRunning`] at once.
    ///
    /// Graceful: every task already accepted runs to completion and is delivered, then
    /// the workers exit and this returns. Not graceful: every waiting caller gets
    /// [`Error::Stopped`] at once, queued tasks are dropped unrun, and this returns
    /// without waiting for batches that are mid-handler (their results are discarded);
    /// the worker processes are asked to exit, and one still running a batch 2 s later
    /// (a handler stuck, with no `exec_timeout_ms`) is killed. Worker threads cannot be
    /// killed: they finish their batches.
    ///
    /// A stop that does not wait also cuts short a graceful one under way (one waiting on
    /// a stuck handler, say), which then returns too: the usual shutdown is a graceful
    /// stop within a time limit, then one that does not wait.
    pub async fn stop(&self, graceful: bool) {
        let inner = &*self.inner;
        if !inner.control.stop_goes_on(graceful) {
            return;
        }
        // A task still standing in line for room was not accepted. (In a stop that cuts
        // another short, the input is closed already and this finds none.)
        for refused in inner.input.close() {
            refused.split().1.fail(Error::NotRunning);
        }
        // Every client waiting for readiness hears of it (see `room_made`).
        inner.load.room.notify_waiters();
        if graceful {
            let runners = std::mem::take(&mut *lock(&inner.runners));
            let threads = std::mem::take(&mut *lock(&inner.threads));
            let finished = async {
                for runner in runners {
                    let _ = runner.await;
                }
                let _ = tokio::task::spawn_blocking(move || {
                    threads.into_iter().for_each(|t| drop(t.join()))
                })
                .await;
            };
            // A stop that does not wait, meanwhile, cuts this one short: what is left
            // ends on its own (a worker process within its close grace; a worker thread
            // stuck in a batch when its handler returns, which no stop can hasten).
            tokio::select! {
                () = finished => {}
                () = inner.control.halted() => {}
            }
        } else {
            inner.control.halt();
        }
        inner.control.set_stopped();
    }

    /// [`Flow::stop`] for code that is not async.
    pub fn stop_blocking(&self, graceful: bool) -> Result<(), Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::BlockingInAsync);
        }
        self.inner.handle.block_on(self.stop(graceful));
        Ok(())
    }

    /// Running, stopping or stopped.
    pub fn state(&self) -> FlowState {
        self.inner.control.state()
    }

    /// Puts `envelope`, of a call made at `called`, into the first stage's queue, by the
    /// flow's admission policy (see `admission`; the task was not turned away). The
    /// queue has room (the common case): done here. It is full: the task stands in the
    /// queue's line from now, so callers go in in the order they called, and the call
    /// watches the end of its wait for room (see `room`).
    fn enter(
        &self,
        envelope: Envelope<In, Out>,
        called: tokio::time::Instant,
        priority: usize,
    ) -> Result<Entering<'_>, Error> {
        let inner = &*self.inner;
        let envelope = match inner.input.try_send(priority, envelope) {
            Ok(()) => return Ok(Entering::Entered),
            Err(TrySendError::Closed(_)) => return Err(Error::NotRunning),
            Err(TrySendError::Full(envelope)) => envelope,
        };
        let deadline = envelope.deadline();
        let Some(until) = inner.load.wait_until(called, deadline) else {
            return Err(Error::Overloaded {
                stage: inner.first_stage,
                waited: Duration::ZERO,
            });
        };
        let Ok(spot) = inner.input.stand_in_line(priority, envelope) else {
            return Err(Error::NotRunning);
        };
        Ok(Entering::InLine(InLine::new(inner, spot, called, until)))
    }

    /// Wakes the next waiter of [`Flow::room_made`]: for a waiter that was woken by room
    /// and found some left, so that room wakes waiters one after another while it lasts,
    /// not all of them at each take (that herd held 4096 tower clients to 0.09-0.15 of
    /// `process`'s calls/s: W8 of the workloads bench).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn pass_room_on(&self) {
        self.inner.load.room.notify_one();
    }

    /// Whether the first stage's queue has room now.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn has_room(&self) -> bool {
        !self.inner.input.is_full(0)
    }

    /// Resolves when the first stage next takes tasks from its queue (making room), or
    /// the flow begins to stop. Registers on its first poll. Room wakes one waiter: one
    /// that finds room tells the next with [`Flow::pass_room_on`]; a stop wakes all.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn room_made(&self) -> tokio::sync::futures::OwnedNotified {
        self.inner.load.room.clone().notified_owned()
    }

    /// Counters of every stage, in flow order.
    pub fn stats(&self) -> Vec<StageStats> {
        self.inner.counters.iter().map(|c| c.snapshot()).collect()
    }
}

impl<In: Task, Out: Task> Drop for Inner<In, Out> {
    fn drop(&mut self) {
        // No caller is left (each holds the flow while it waits), so nothing that is
        // still queued or running is awaited: the flow halts, as `stop(false)` would, and
        // its stages end; a worker process stuck in a batch is killed after its close
        // grace rather than kept for the program's life. Worker threads end with their
        // stages. (No task stands in line: its caller would hold the flow.)
        drop(self.input.close());
        self.control.halt();
        self.control.close();
    }
}

/// The stages' names joined by `->`, as a `&'static str` (it labels metrics, which
/// take such labels without allocating). Each distinct name is stored once for the
/// process's life, however often flows with it are started.
fn flow_name(counters: &[Arc<StageCounters>]) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let name = counters
        .iter()
        .map(|stage| stage.name)
        .collect::<Vec<_>>()
        .join("->");
    let mut names = lock(&NAMES);
    if let Some(known) = names.iter().find(|known| **known == name) {
        return known;
    }
    let name: &'static str = Box::leak(name.into_boxed_str());
    names.push(name);
    name
}

/// A `process` call being set up: [`Flow::submit`]. Await it to run the task.
#[must_use = "a submission does nothing until it is awaited"]
pub struct Submission<'a, In: Task, Out: Task> {
    flow: &'a Flow<In, Out>,
    task: Owned<In>,
    priority: usize,
    timeout: Duration,
}

impl<In: Task, Out: Task> Submission<'_, In, Out> {
    /// The task's priority: `0` (the default, lowest) up to `priorities - 1`. A queued
    /// task of higher priority overtakes queued tasks of lower priority at every stage;
    /// an out-of-range priority fails with [`Error::InvalidPriority`].
    pub fn priority(mut self, priority: usize) -> Self {
        self.priority = priority;
        self
    }

    /// The call's timeout, as in [`Flow::process_timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<'a, In: Task, Out: Task> std::future::IntoFuture for Submission<'a, In, Out> {
    type Output = Result<Owned<Out>, Error>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(
            self.flow
                .process_owned(self.task, self.timeout, self.priority),
        )
    }
}

impl<In: Task, Out: Task> std::fmt::Debug for Submission<'_, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A runtime the flow created for blocking use; shut down without blocking when the
/// flow goes away (which may happen inside another runtime).
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
