//! Workers as processes (`isolation = "process"`, the default): `nprocs` re-executed
//! copies of this program, each running one stage's `init` and then its batches.
//!
//! * Spawning, the handshake and the worker's side are in [`spawn`] and [`worker`].
//! * Transport ([`channel`], [`exchange`]): per worker, a sealed control memfd with
//!   request and response slots and two eventfds. A task crosses as its `#[task]` bytes;
//!   the shared arena's blocks its handles name are mapped by the worker, never copied.
//!   A stage of single-task batches keeps two requests per worker outstanding, so the
//!   worker never waits for the parent between them.
//! * New blocks a handler creates in a worker live in the worker's scratch area and are
//!   copied into the arena (one copy of new data) when the parent takes the outputs.
//!   Every handle in an output must be either such a scratch block or one of the
//!   handles lent with the batch; anything else is a protocol violation ([`results`]).
//! * One [`supervisor`] task per worker owns its `Child` and awaits `wait()` (pidfd-based).
//!   When the worker dies, the tasks it was running fail with
//!   [`Error::WorkerCrashed`] (a batch handler's whole call; of a per-task handler's run,
//!   the one task: those it finished are delivered, those it had not begun go again,
//!   see [`request_progress`]); a batch it had not yet picked up is sent to its
//!   replacement; the worker is restarted with backoff. A worker past the stage's
//!   execution timeout, or one that answers with invalid data, is killed and goes the
//!   same way.

mod channel;
mod exchange;
mod exit;
pub(crate) mod fault;
mod logs;
mod marker;
pub(crate) mod registry;
mod request_progress;
mod results;
mod spawn;
mod spawner;
mod supervisor;
mod wire;
mod worker;

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use self::channel::{EventFd, Region};
use self::exchange::{answer, publish, Failure, Lanes, Ticket};
use self::results::{
    claimed_copy_bytes, handle_offsets, take_lost, take_results, Answer, Salvaged,
};
use self::supervisor::{closed, kill_and_wait, live, supervise};
use self::wire::{read_report, Geometry, MAX_LANES};
use super::{Dispatched, Executor, LostTask, Wait};
use crate::metrics::RestartCause;
use crate::shm::arena::Arena;
use crate::shm::scratch::Scratch;
use crate::shm::Owned;
use crate::stats::StageCounters;
use crate::sync::lock;
use crate::task::TaskField;
use crate::{Error, Stage, StageConfig};

/// The least scratch space a request gets (the size is `AQUEDUCT_SCRATCH_BYTES`, see
/// [`crate::config`]).
const MIN_SCRATCH: usize = crate::platform::PAGE;

/// Identifies a stage across the process boundary: name plus both task layouts.
pub(crate) fn stage_hash<S: Stage>() -> u64 {
    registry::stage_hash::<S>()
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exit {
    signal: Option<i32>,
}

/// A live worker process, as the executor sees it.
struct Conn {
    pid: u32,
    ctl: Region,
    req: EventFd,
    resp: AsyncFd<EventFd>,
    /// Signalled by whichever dispatch drains `resp`, for the others waiting on it.
    drained: Notify,
    /// Signalled when a lane is freed: the request behind it is the worker's next one.
    freed: Notify,
    /// Dispatches sleeping on `freed`: a freed lane signals only if there are any (the
    /// signal takes the notification's lock, on every answer of a lone request).
    freed_watchers: AtomicUsize,
    /// Whether the worker answered a request (its restart then needs no backoff).
    served: AtomicBool,
    scratch: Scratch,
    /// What was published to the worker; locked while a request is written.
    lanes: Mutex<Lanes>,
    /// The number of the last request published; written under `lanes`, read without
    /// it (every answer is checked against it).
    last_published: AtomicU64,
    /// Set by the supervisor when the process has exited (and been reaped).
    exit: watch::Receiver<Option<Exit>>,
    /// Asks the supervisor to kill the process.
    kill: Notify,
    /// Why the executor had the process killed, if it did (the restart's cause).
    killed_for: Mutex<Option<RestartCause>>,
    /// The spans of the requests it runs, for its log lines.
    spans: Arc<logs::SpanBook>,
}

struct Slot {
    /// The worker's live process; `None` while it is (re)starting.
    current: watch::Sender<Option<Arc<Conn>>>,
}

struct Shared {
    stage: &'static str,
    config: StageConfig,
    geometry: Geometry,
    scratch_capacity: usize,
    /// Byte offsets of the arena handles inside an output task.
    output_handles: Vec<usize>,
    slots: Vec<Slot>,
    closing: watch::Sender<bool>,
    /// `closing`'s value, readable without its lock (every dispatch looks).
    closed: AtomicBool,
    counters: Arc<StageCounters>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

/// Where a worker reports its first `init` outcome.
type ReadyRx = oneshot::Receiver<Result<(), String>>;

/// The worker processes of one stage.
pub(crate) struct ProcessExecutor<S: Stage> {
    shared: Arc<Shared>,
    _stage: PhantomData<fn() -> S>,
}

impl<S: Stage> ProcessExecutor<S> {
    /// Starts supervising `config.nprocs` workers; each reports its first `init` outcome
    /// on the returned receivers.
    pub(crate) fn spawn(
        config: StageConfig,
        counters: Arc<StageCounters>,
    ) -> Result<(Self, Vec<ReadyRx>), Error> {
        let init_error = |message: String| Error::Init {
            stage: S::NAME,
            message,
        };
        spawn::check_hook().map_err(init_error)?;
        registry::check::<S>().map_err(init_error)?;
        let settings = crate::config::Settings::get()?;
        let arena = Arena::global()?;
        let output_handles = handle_offsets::<S::Output>().map_err(init_error)?;
        // Each lane's request gets the configured space (its window, see
        // `Geometry::scratch_window`), whole pages; the area holds every lane's.
        let scratch_share = settings
            .scratch_bytes
            .clamp(MIN_SCRATCH, arena.capacity().max(MIN_SCRATCH))
            & !(crate::platform::PAGE - 1);
        let scratch_capacity = scratch_share * MAX_LANES;
        let shared = Arc::new(Shared {
            stage: S::NAME,
            config,
            geometry: Geometry {
                batch_cap: config.dispatch_cap(),
                input_size: size_of::<S::Input>(),
                output_size: size_of::<S::Output>(),
                lanes: MAX_LANES,
            },
            scratch_capacity,
            output_handles,
            slots: (0..config.nprocs)
                .map(|_| Slot {
                    current: watch::Sender::new(None),
                })
                .collect(),
            closing: watch::Sender::new(false),
            closed: AtomicBool::new(false),
            counters,
            supervisors: Mutex::new(Vec::new()),
        });
        let mut ready = Vec::with_capacity(config.nprocs);
        let mut supervisors = Vec::with_capacity(config.nprocs);
        for index in 0..config.nprocs {
            let (tx, rx) = oneshot::channel();
            supervisors.push(tokio::spawn(supervise::<S>(shared.clone(), index, tx)));
            ready.push(rx);
        }
        *lock(&shared.supervisors) = supervisors;
        Ok((
            Self {
                shared,
                _stage: PhantomData,
            },
            ready,
        ))
    }
}

impl<S: Stage> Drop for ProcessExecutor<S> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Shared {
    /// The stage is closing: no more dispatches, and the supervisors end their workers.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closing.send_replace(true);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl<S: Stage> Executor<S> for ProcessExecutor<S>
where
    S::Input: Send,
    S::Output: Send,
{
    fn max_dispatch(&self) -> usize {
        self.shared.geometry.batch_cap
    }

    fn depth(&self) -> usize {
        self.shared.geometry.lanes
    }

    fn run(
        &self,
        worker: usize,
        batch: Vec<Owned<S::Input>>,
        wait: Wait,
        span: tracing::Span,
        sent: tokio::time::Instant,
    ) -> impl Future<Output = Dispatched<S::Input, S::Output>> + Send + 'static {
        let shared = self.shared.clone();
        // Published now if the worker is up, so that it receives dispatches in the order
        // they were made. A worker that is down (restarting) gives the batch back at
        // once, for a worker that is up.
        let conn = shared.slots[worker].current.borrow().clone();
        let published = conn.filter(|_| !shared.is_closed()).map(|conn| {
            let ticket = publish(shared.geometry, &conn, Owned::as_tasks(&batch), span, sent);
            (conn, ticket)
        });
        dispatch::<S>(shared, batch, wait, published)
    }

    fn expect(&self, worker: usize) {
        let conn = self.shared.slots[worker].current.borrow().clone();
        if let Some(conn) = conn {
            if wire::expect_request(&conn.ctl) {
                conn.req.notify();
            }
        }
    }

    fn is_up(&self, worker: usize) -> bool {
        self.shared.slots[worker].current.borrow().is_some()
    }

    fn until_up(&self, worker: usize) -> impl Future<Output = ()> + Send + 'static {
        let mut current = self.shared.slots[worker].current.subscribe();
        let mut closing = self.shared.closing.subscribe();
        async move {
            tokio::select! {
                _ = live(&mut current) => {}
                () = closed(&mut closing) => {}
            }
        }
    }

    async fn shutdown(&self) {
        self.shared.close();
        let supervisors = std::mem::take(&mut *lock(&self.shared.supervisors));
        for supervisor in supervisors {
            let _ = supervisor.await;
        }
    }

    fn halt(&self) {
        // The supervisors ask each worker to close and kill it after the close grace if
        // it does not (one stuck in a batch); none restarts.
        self.shared.close();
    }

    fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

/// A batch published to a worker (or the reason it could not be).
type Published = (Arc<Conn>, Result<Ticket, Failure>);

/// Above this many bytes of blocks to copy into the arena, an answer is read without
/// holding up the runtime (see [`read_answer`]). A copy runs at about 80 us a MiB here,
/// about what a task may run without yielding.
const COPY_INLINE_MAX: u64 = 1 << 20;

/// Reads the worker's answer to `ticket`'s request, for `batch`, with `take` (which
/// validates it: [`take_results`], or [`take_lost`] for a lost worker's). If its
/// results claim more than [`COPY_INLINE_MAX`] bytes of blocks the worker made, the
/// answer is read on tokio's blocking pool, so that copying them never holds up the
/// runtime's other tasks. Measured with 10 MiB blocks, 16 calls in flight (W3
/// `made_in_worker`): how long a `yield_now` took to come back, p99, went from 0.9-28 ms
/// to 23-27 us (14-21 us on the idle runtime), for 11% less throughput (the two hops per
/// answer). `block_in_place` kept the throughput with a p99 of 36-157 us, but it panics
/// on a current-thread runtime and is unsupported in a `LocalSet`'s task
/// (tokio-rs/tokio#7368: worker threads can be lost), neither of which can be told from
/// here. The batch comes back with what `take` made of it; `None` if the runtime shut
/// down before the blocking pool ran the read (the batch is dropped).
async fn read_answer<S: Stage, T: Send + 'static>(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    ticket: &Ticket,
    batch: Vec<Owned<S::Input>>,
    take: impl FnOnce(&Answer<'_>, &[S::Input]) -> T + Send + 'static,
) -> Option<(T, Vec<Owned<S::Input>>)> {
    let answer = answer_to(shared, conn, ticket.lane, ticket.seq);
    let heavy = !shared.output_handles.is_empty()
        && tokio::runtime::Handle::try_current().is_ok()
        && claimed_copy_bytes(&answer, batch.len()) > COPY_INLINE_MAX;
    if !heavy {
        let taken = take(&answer, Owned::as_tasks(&batch));
        return Some((taken, batch));
    }
    let (shared, conn, lane, seq) = (shared.clone(), conn.clone(), ticket.lane, ticket.seq);
    let read = tokio::task::spawn_blocking(move || {
        let answer = answer_to(&shared, &conn, lane, seq);
        let taken = take(&answer, Owned::as_tasks(&batch));
        (taken, batch)
    });
    match read.await {
        Ok(read) => Some(read),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => None,
    }
}

/// Where the answer to request `seq`, in `lane` of `conn`'s worker, lies.
fn answer_to<'a>(shared: &'a Shared, conn: &'a Conn, lane: usize, seq: u64) -> Answer<'a> {
    Answer {
        ctl: &conn.ctl,
        geometry: shared.geometry,
        lane,
        seq,
        published: &conn.last_published,
        output_handles: &shared.output_handles,
        scratch: &conn.scratch,
    }
}

/// Waits for the answer to `batch`, published as `published` (`None`: the worker was
/// down, or the stage is closing).
async fn dispatch<S: Stage>(
    shared: Arc<Shared>,
    mut batch: Vec<Owned<S::Input>>,
    wait: Wait,
    published: Option<Published>,
) -> Dispatched<S::Input, S::Output> {
    let Some((conn, ticket)) = published else {
        if shared.is_closed() {
            return Dispatched::Failed(Error::Stopped);
        }
        return Dispatched::Unrun(batch);
    };
    let ticket = match ticket {
        Ok(ticket) => ticket,
        Err(failure) => return lost::<S>(&shared, &conn, None, batch, failure).await,
    };
    let failure = match answer(&shared, &ticket, wait).await {
        Ok(()) => {
            let Some((taken, back)) =
                read_answer::<S, _>(&shared, &conn, &ticket, batch, take_results::<S>).await
            else {
                return Dispatched::Failed(Error::Stopped);
            };
            batch = back;
            match taken {
                Ok(results) => {
                    conn.served.store(true, Ordering::Relaxed);
                    let report = read_report(&conn.ctl, &shared.geometry, ticket.lane);
                    conn.spans.answered(ticket.seq, report.log_lines);
                    // The worker is done with the inputs: `batch` drops them.
                    return Dispatched::Answered {
                        results,
                        compute: Duration::from_nanos(report.compute_ns),
                    };
                }
                Err(reason) => Failure::Answer(reason),
            }
        }
        Err(failure) => failure,
    };
    lost::<S>(&shared, &conn, Some(&ticket), batch, failure).await
}

/// What became of `batch`, which did not come back from the worker for `failure`: its
/// worker is ended (if it is not gone already), and the batch is unrun, failed (the
/// stage halted) or lost, task by task as far as the worker's words tell (see
/// [`take_lost`]) where it died, ran past its timeout or answered wrongly. `ticket` is
/// the batch's request, if it was published.
async fn lost<S: Stage>(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    ticket: Option<&Ticket>,
    batch: Vec<Owned<S::Input>>,
    failure: Failure,
) -> Dispatched<S::Input, S::Output> {
    // Halted meanwhile (see `Executor::halt`): the worker was ended on purpose and the
    // batch's callers were answered; not a crash to report, nor tasks to send again.
    // (The worker is gone, so nothing reads the batch's blocks any more.)
    if shared.is_closed() && matches!(failure, Failure::Died(_) | Failure::NotTaken) {
        return Dispatched::Failed(Error::Stopped);
    }
    let crashed = |signal| Error::WorkerCrashed {
        stage: shared.stage,
        pid: conn.pid,
        signal,
    };
    let broke = |reason| Error::WorkerProtocol {
        stage: shared.stage,
        pid: conn.pid,
        reason,
    };
    // The error, and what the worker's words can tell of the batch: nothing, or its
    // results (`Some(false)`), or also which tasks it began (`Some(true)`).
    let (error, died) = match failure {
        Failure::NotTaken => return Dispatched::Unrun(batch),
        Failure::Died(exit) => (crashed(exit.signal), Some(true)),
        Failure::TimedOut => {
            // Boxed, as below: rare, and large for every dispatch's future to carry.
            Box::pin(kill_and_wait(conn, RestartCause::Timeout)).await;
            (crashed(Some(crate::platform::process::SIGKILL)), Some(true))
        }
        Failure::Answer(reason) => {
            Box::pin(kill_and_wait(conn, RestartCause::Protocol)).await;
            (broke(reason), Some(false))
        }
        Failure::Violation(reason) => {
            Box::pin(kill_and_wait(conn, RestartCause::Protocol)).await;
            (broke(reason), None)
        }
    };
    // The worker is gone, so its words are final and nothing reads the batch's blocks
    // any more; the tasks that did not finish stay the tasks' own, for a retry.
    if let (Some(died), Some(ticket)) = (died, ticket) {
        let take =
            move |answer: &Answer<'_>, batch: &[S::Input]| take_lost::<S>(answer, batch, died);
        let read = Box::pin(read_answer::<S, _>(shared, conn, ticket, batch, take)).await;
        let Some(((results, begun), batch)) = read else {
            return Dispatched::Failed(Error::Stopped);
        };
        return Dispatched::Lost {
            error,
            tasks: lost_tasks(batch, results, begun),
        };
    }
    let begun = batch.len();
    Dispatched::Lost {
        error,
        tasks: lost_tasks(batch, Vec::new(), begun),
    }
}

/// A lost batch task by task: finished where `results` has a result, running where it
/// has none (or past its end, up to `begun`), unrun from `begun` on. The inputs of
/// finished tasks are dropped: the worker is done with them.
fn lost_tasks<I: TaskField, O: TaskField>(
    batch: Vec<Owned<I>>,
    results: Salvaged<O>,
    begun: usize,
) -> Vec<LostTask<I, O>> {
    let mut results = results.into_iter();
    batch
        .into_iter()
        .enumerate()
        .map(|(index, task)| match results.next().flatten() {
            Some(result) => LostTask::Finished(result),
            None if index < begun => LostTask::Running(task),
            None => LostTask::Unrun(task),
        })
        .collect()
}

#[cfg(test)]
mod tests;
