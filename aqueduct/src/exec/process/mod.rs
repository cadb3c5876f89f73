//! Workers as processes (`isolation = "process"`, the default): `nprocs` re-executed
//! copies of this program, each running one stage's `init` and then its batches.
//!
//! * Spawning, the handshake and the worker's side are in [`spawn`] and [`worker`].
//! * Transport ([`channel`]): per worker, a sealed control memfd with request and
//!   response slots and two eventfds. A task crosses as its `#[task]` bytes; the shared
//!   arena's blocks its handles name are mapped by the worker, never copied.
//! * New blocks a handler creates in a worker live in the worker's scratch area and are
//!   copied into the arena (one copy of new data) when the parent takes the outputs.
//!   Every handle in an output must be either such a scratch block or one of the
//!   handles lent with the batch; anything else is a protocol violation.
//! * One supervisor task per worker owns its `Child` and awaits `wait()` (pidfd-based).
//!   When the worker dies, the batch it was executing fails with
//!   [`Error::WorkerCrashed`]; a batch it had not yet picked up is sent to its
//!   replacement; the worker is restarted with backoff. A worker past the stage's
//!   execution timeout, or one that answers with invalid data, is killed and goes the
//!   same way.

mod channel;
mod logs;
mod spawn;
mod worker;

use crate::sync::lock;
use std::marker::PhantomData;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use self::channel::*;
use self::spawn::{Spec, WORKER_ENV};
use super::{BatchResults, Executor};
use crate::flow::StageCounters;
use crate::shm::arena::Arena;
use crate::shm::ownership::{self, handles_of};
use crate::shm::scratch::{ImportError, Scratch};
use crate::shm::ShmHandle;
use crate::task::TaskField;
use crate::{Error, Stage, StageConfig};

/// Default size of a worker's scratch area (address space; only written pages cost
/// memory). `AQUEDUCT_SCRATCH_BYTES` overrides it.
const DEFAULT_SCRATCH: usize = 256 << 20;
/// First delay before restarting a worker that died soon after starting; doubles up to
/// [`MAX_BACKOFF`]. A worker that had been up for [`STABLE_AFTER`] restarts at once.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// How long a worker asked to close may take before it is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Identifies a stage across the process boundary: name plus both task layouts.
pub(crate) fn stage_hash<S: Stage>() -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |value: u64| {
        for byte in value.to_le_bytes() {
            hash = (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    S::NAME.bytes().for_each(|b| mix(b as u64));
    mix(<S::Input as crate::Task>::FINGERPRINT);
    mix(<S::Output as crate::Task>::FINGERPRINT);
    mix(size_of::<S::Input>() as u64);
    mix(size_of::<S::Output>() as u64);
    hash
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
    scratch: Scratch,
    /// Sequence number of the last request sent.
    seq: AtomicU64,
    /// Set by the supervisor when the process has exited (and been reaped).
    exit: watch::Receiver<Option<Exit>>,
    /// Asks the supervisor to kill the process.
    kill: Notify,
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
        let arena = Arena::global()?;
        let output_handles = handle_offsets::<S::Output>().map_err(init_error)?;
        let scratch_capacity = std::env::var("AQUEDUCT_SCRATCH_BYTES")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_SCRATCH)
            .clamp(4096, arena.capacity().max(4096));
        let shared = Arc::new(Shared {
            stage: S::NAME,
            config,
            geometry: Geometry {
                // Room for a run of single-task batches (see the runner's dispatch size).
                batch_cap: if config.batch_size == 1 {
                    crate::flow::MAX_RUN
                } else {
                    config.batch_size
                },
                input_size: size_of::<S::Input>(),
                output_size: size_of::<S::Output>(),
            },
            scratch_capacity,
            output_handles,
            slots: (0..config.nprocs)
                .map(|_| Slot {
                    current: watch::Sender::new(None),
                })
                .collect(),
            closing: watch::Sender::new(false),
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
        self.shared.closing.send_replace(true);
    }
}

/// A started worker: its process and the sender of its exit.
struct Started {
    child: Child,
    conn: Arc<Conn>,
    exit: watch::Sender<Option<Exit>>,
}

/// Keeps worker `index` running until the executor closes.
async fn supervise<S: Stage>(
    shared: Arc<Shared>,
    index: usize,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    let mut closing = shared.closing.subscribe();
    let mut backoff = MIN_BACKOFF;
    loop {
        if *closing.borrow() {
            return;
        }
        let started_at = Instant::now();
        match start::<S>(&shared, index).await {
            Err(message) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(message));
                    return;
                }
                eprintln!(
                    "aqueduct: stage `{}`: restarting worker {index} failed: {message}",
                    shared.stage
                );
            }
            Ok(mut started) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
                let conn = started.conn.clone();
                shared.counters.set_pid(index, conn.pid);
                shared.slots[index].current.send_replace(Some(conn.clone()));
                let status = tokio::select! {
                    status = started.child.wait() => status,
                    () = conn.kill.notified() => {
                        let _ = started.child.start_kill();
                        started.child.wait().await
                    }
                    () = closed(&mut closing) => {
                        conn.ctl.u32(OFF_CLOSING).store(1, Ordering::SeqCst);
                        conn.req.notify();
                        match timeout(CLOSE_GRACE, started.child.wait()).await {
                            Ok(status) => status,
                            Err(_) => {
                                let _ = started.child.start_kill();
                                started.child.wait().await
                            }
                        }
                    }
                };
                shared.slots[index].current.send_replace(None);
                shared.counters.set_pid(index, 0);
                let signal = status.ok().and_then(|s| s.signal());
                let restart = !*closing.borrow();
                if restart {
                    shared.counters.restarted();
                }
                let _ = started.exit.send(Some(Exit { signal }));
                if !restart {
                    return;
                }
                if started_at.elapsed() >= STABLE_AFTER {
                    backoff = MIN_BACKOFF;
                    continue;
                }
            }
        }
        tokio::select! {
            () = sleep(backoff) => {}
            () = closed(&mut closing) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Spawns worker `index` of stage `S` and waits for its handshake: ready, or the text of
/// its `init` error or refusal.
async fn start<S: Stage>(shared: &Shared, index: usize) -> Result<Started, String> {
    let arena = Arena::global().map_err(|e| e.to_string())?;
    let geometry = shared.geometry;
    let ctl = Region::create(geometry.region_len())
        .map_err(|e| format!("cannot create the worker's control region: {e}"))?;
    let req = EventFd::create(false).map_err(|e| format!("cannot create an eventfd: {e}"))?;
    let resp = EventFd::create(true).map_err(|e| format!("cannot create an eventfd: {e}"))?;
    let scratch = Scratch::create(shared.scratch_capacity).map_err(|e| e.to_string())?;
    let parent_pid = std::process::id();
    let spec = Spec {
        build_id: spawn::build_id(),
        entry: spawn::handle_of(worker::worker_entry::<S>),
        stage_hash: stage_hash::<S>(),
        parent_pid,
        ctl_fd: ctl.raw_fd(),
        ctl_len: ctl.len(),
        req_fd: std::os::fd::AsRawFd::as_raw_fd(&req),
        resp_fd: std::os::fd::AsRawFd::as_raw_fd(&resp),
        arena_fd: arena.raw_fd(),
        arena_len: arena.capacity(),
        scratch_fd: scratch.raw_fd(),
        scratch_len: scratch.capacity(),
        geometry,
    };
    let resp = register(resp)?;
    let inherit = [
        spec.ctl_fd,
        spec.req_fd,
        spec.resp_fd,
        spec.arena_fd,
        spec.scratch_fd,
    ];
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0(format!("aqueduct-worker:{}:{index}", shared.stage))
        .env(WORKER_ENV, spec.encode())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (fcntl, prctl, getppid) on plain integers it owns.
    unsafe {
        command.pre_exec(move || {
            for fd in inherit {
                // The fds were created close-on-exec so that other children spawned
                // concurrently never inherit them; only this child's copies are opened.
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Die with the parent. (Fires when the spawning *thread* exits: workers are
            // spawned from runtime worker threads, and the worker also polls getppid.)
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent_pid {
                libc::_exit(5);
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot spawn a worker process: {e}"))?;
    let pid = child.id().unwrap_or(0);
    if let Some(stderr) = child.stderr.take() {
        if let Ok(fd) = stderr.into_owned_fd() {
            logs::forward(shared.stage, pid, std::fs::File::from(fd));
        }
    }
    let deadline = Instant::now() + shared.config.start_timeout;
    loop {
        match ctl.u32(OFF_STATE).load(Ordering::Acquire) {
            STATE_READY => break,
            STATE_STARTING => {}
            STATE_INIT_FAILED | STATE_REFUSED => {
                let message = ctl.read_message();
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(message);
            }
            other => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!("worker {pid} reported an invalid state {other}"));
            }
        }
        tokio::select! {
            readable = resp.readable() => match readable {
                Ok(mut guard) => {
                    if guard.get_inner().drain().is_err() {
                        guard.clear_ready();
                    }
                }
                Err(e) => return Err(format!("cannot wait for worker {pid}: {e}")),
            },
            status = child.wait() => {
                // It may have reported before exiting.
                if ctl.u32(OFF_STATE).load(Ordering::Acquire) != STATE_STARTING {
                    continue;
                }
                return Err(match status {
                    Ok(status) => format!("worker process {pid} exited during start-up ({status})"),
                    Err(e) => format!("worker process {pid} was lost during start-up: {e}"),
                });
            }
            () = sleep_until(deadline) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!(
                    "worker process {pid} did not start within {:?}",
                    shared.config.start_timeout
                ));
            }
        }
    }
    let (exit_tx, exit_rx) = watch::channel(None);
    Ok(Started {
        child,
        conn: Arc::new(Conn {
            pid,
            ctl,
            req,
            resp,
            scratch,
            seq: AtomicU64::new(0),
            exit: exit_rx,
            kill: Notify::new(),
        }),
        exit: exit_tx,
    })
}

/// Registers the response eventfd with the runtime's reactor.
fn register(resp: EventFd) -> Result<AsyncFd<EventFd>, String> {
    // Registration panics when the runtime was built without its IO driver.
    let registered = std::panic::catch_unwind(move || {
        // SAFETY: the eventfd is owned by the `AsyncFd` from here on, so it stays open
        // and is the same descriptor for the `AsyncFd`'s whole life.
        unsafe { AsyncFd::register_with_interest(resp, Interest::READABLE) }
    });
    match registered {
        Ok(Ok(fd)) => Ok(fd),
        Ok(Err(e)) => Err(format!("cannot register an eventfd: {e}")),
        Err(_) => Err("process workers need a tokio runtime with IO enabled (`Builder::enable_all`, as `#[tokio::main]` does)".into()),
    }
}

/// Why a batch did not come back.
enum Failure {
    /// The worker died before picking the batch up: send it to the replacement.
    NotTaken,
    Died(Exit),
    TimedOut,
    Violation(String),
}

impl<S: Stage> Executor<S> for ProcessExecutor<S>
where
    S::Input: Send,
    S::Output: Send,
{
    fn max_dispatch(&self) -> usize {
        self.shared.geometry.batch_cap
    }

    async fn run(
        &self,
        worker: usize,
        batch: Vec<S::Input>,
        quiet: bool,
    ) -> Result<BatchResults<S::Output>, Error> {
        let shared = &*self.shared;
        let mut current = shared.slots[worker].current.subscribe();
        let mut closing = shared.closing.subscribe();
        loop {
            let conn = tokio::select! {
                conn = live(&mut current) => conn,
                () = closed(&mut closing) => None,
            };
            let Some(conn) = conn else {
                batch.iter().for_each(ownership::release);
                return Err(Error::Stopped);
            };
            let failure = match exchange(shared, &conn, &batch, quiet).await {
                Ok(()) => match take_results::<S>(
                    &conn.ctl,
                    shared.geometry,
                    &shared.output_handles,
                    &conn.scratch,
                    &batch,
                ) {
                    Ok(results) => {
                        batch.iter().for_each(ownership::release);
                        return Ok(results);
                    }
                    Err(reason) => Failure::Violation(reason),
                },
                Err(failure) => failure,
            };
            let error = match failure {
                Failure::NotTaken => continue,
                Failure::Died(exit) => Error::WorkerCrashed {
                    stage: shared.stage,
                    pid: conn.pid,
                    signal: exit.signal,
                },
                Failure::TimedOut => {
                    kill_and_wait(&conn).await;
                    Error::WorkerCrashed {
                        stage: shared.stage,
                        pid: conn.pid,
                        signal: Some(libc::SIGKILL),
                    }
                }
                Failure::Violation(reason) => {
                    kill_and_wait(&conn).await;
                    Error::WorkerProtocol {
                        stage: shared.stage,
                        pid: conn.pid,
                        reason,
                    }
                }
            };
            // The worker is gone, so nothing reads the batch's blocks any more.
            batch.iter().for_each(ownership::release);
            return Err(error);
        }
    }

    async fn shutdown(&self) {
        self.shared.closing.send_replace(true);
        let supervisors = std::mem::take(&mut *lock(&self.shared.supervisors));
        for supervisor in supervisors {
            let _ = supervisor.await;
        }
    }
}

/// Resolves once the executor is closing.
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

/// The worker's live process, once there is one; `None` if its supervisor is gone.
async fn live(current: &mut watch::Receiver<Option<Arc<Conn>>>) -> Option<Arc<Conn>> {
    current
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|conn| conn.clone())
}

async fn exited(exit: &mut watch::Receiver<Option<Exit>>) -> Exit {
    match exit.wait_for(Option::is_some).await {
        Ok(exit) => exit.unwrap_or(Exit { signal: None }),
        // The supervisor is gone (the runtime is shutting down); the child was killed.
        Err(_) => Exit {
            signal: Some(libc::SIGKILL),
        },
    }
}

async fn kill_and_wait(conn: &Conn) {
    conn.kill.notify_one();
    exited(&mut conn.exit.clone()).await;
}

/// How long a quiet stage polls for its worker's answer before sleeping on the eventfd.
/// A sleeping thread costs two wake-ups (epoll, then the task) of roughly 5-10 us each
/// on small VMs; a fast handler usually answers within this budget.
const QUIET_SPIN: std::time::Duration = std::time::Duration::from_micros(25);

/// Polls the response sequence number for up to `budget`; `true` once `seq` is answered.
/// The first microseconds spin (a worker already running answers that fast); after that
/// each poll yields the core, because on a small machine the woken worker may be queued
/// on this very core and a pure spin would keep it from answering.
fn answered_within(ctl: &Region, seq: u64, budget: std::time::Duration) -> bool {
    const PURE_SPIN: std::time::Duration = std::time::Duration::from_micros(5);
    let started = std::time::Instant::now();
    loop {
        if ctl.u64(OFF_RESP_SEQ).load(Ordering::Acquire) == seq {
            return true;
        }
        let waited = started.elapsed();
        if waited >= budget {
            return false;
        }
        if waited < PURE_SPIN {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Sends `batch` to the worker and waits for its answer, its death or the timeout.
async fn exchange<T: TaskField>(
    shared: &Shared,
    conn: &Conn,
    batch: &[T],
    quiet: bool,
) -> Result<(), Failure> {
    let ctl = &conn.ctl;
    let geometry = shared.geometry;
    if batch.len() > geometry.batch_cap {
        return Err(Failure::Violation(format!(
            "aqueduct bug: a dispatch of {} tasks exceeds the worker's {} request slots",
            batch.len(),
            geometry.batch_cap
        )));
    }
    let seq = conn.seq.fetch_add(1, Ordering::Relaxed) + 1;
    for (i, task) in batch.iter().enumerate() {
        ctl.write(geometry.request_offset(i), bytemuck::bytes_of(task));
    }
    ctl.write_u32(OFF_REQ_COUNT, batch.len() as u32);
    ctl.u64(OFF_REQ_SEQ).store(seq, Ordering::Release);
    fence(Ordering::SeqCst);
    if ctl.u32(OFF_WORKER_WAITING).swap(0, Ordering::SeqCst) != 0 {
        conn.req.notify();
    }
    if quiet && answered_within(ctl, seq, QUIET_SPIN) {
        return Ok(());
    }
    let deadline = shared.config.exec_timeout.map(|t| Instant::now() + t);
    let mut exit = conn.exit.clone();
    loop {
        let answered = ctl.u64(OFF_RESP_SEQ).load(Ordering::Acquire);
        if answered == seq {
            return Ok(());
        }
        if answered > seq {
            return Err(Failure::Violation(format!(
                "response sequence number {answered} is ahead of the request's {seq}"
            )));
        }
        tokio::select! {
            readable = conn.resp.readable() => match readable {
                Ok(mut guard) => {
                    if guard.get_inner().drain().is_err() {
                        guard.clear_ready();
                    }
                }
                Err(e) => return Err(Failure::Violation(format!("cannot wait on the worker: {e}"))),
            },
            exit = exited(&mut exit) => {
                // A response published just before dying still counts.
                if ctl.u64(OFF_RESP_SEQ).load(Ordering::Acquire) == seq {
                    return Ok(());
                }
                return Err(if ctl.u64(OFF_TAKEN_SEQ).load(Ordering::Acquire) < seq {
                    Failure::NotTaken
                } else {
                    Failure::Died(exit)
                });
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                return Err(Failure::TimedOut);
            }
        }
    }
}

/// Reads and validates the worker's response to `batch`. On success the outputs own
/// one reference per handle (scratch blocks copied in, lent handles retained).
fn take_results<S: Stage>(
    ctl: &Region,
    geometry: Geometry,
    output_handles: &[usize],
    scratch: &Scratch,
    batch: &[S::Input],
) -> Result<BatchResults<S::Output>, String> {
    let count = ctl.read_u32(OFF_RESP_COUNT).unwrap_or(u32::MAX) as usize;
    if count != batch.len() {
        return Err(format!(
            "response holds {count} results for a batch of {} tasks",
            batch.len()
        ));
    }
    let lent: Vec<ShmHandle> = batch.iter().flat_map(handles_of).collect();
    let mut results: BatchResults<S::Output> = Vec::with_capacity(count);
    let outcome = (0..count).try_for_each(|i| {
        let at = geometry.response_offset(i);
        let status = ctl.read_u32(at).ok_or("response slot out of range")?;
        let len = ctl.read_u32(at + 4).ok_or("response slot out of range")? as usize;
        match status {
            STATUS_OK if len == geometry.output_size => {
                let mut output = <S::Output as bytemuck::Zeroable>::zeroed();
                ctl.read(at + RESP_HEADER, bytemuck::bytes_of_mut(&mut output));
                match adopt_handles(&mut output, output_handles, &lent, scratch) {
                    Ok(()) => results.push(Ok(output)),
                    // No room in the arena for what the handler made: that task fails,
                    // as it would have in a worker thread; the worker did nothing wrong.
                    Err(Rejected::Resources(error)) => results.push(Err(error.to_string())),
                    Err(Rejected::Invalid(reason)) => return Err(format!("result {i}: {reason}")),
                }
                Ok(())
            }
            STATUS_ERR if len <= ERR_CAP.min(geometry.slot_data()) => {
                let mut text = vec![0; len];
                ctl.read(at + RESP_HEADER, &mut text);
                results.push(Err(String::from_utf8_lossy(&text).into_owned()));
                Ok(())
            }
            _ => Err(format!(
                "result {i}: invalid slot (status {status}, length {len})"
            )),
        }
    });
    match outcome {
        Ok(()) => Ok(results),
        Err(reason) => {
            results.iter().flatten().for_each(ownership::release);
            Err(reason)
        }
    }
}

/// Why an output's handles could not be adopted.
enum Rejected {
    /// A handle the worker had no right to produce: a protocol violation.
    Invalid(String),
    /// No room to copy a block the worker made: fails that task only.
    Resources(Error),
}

/// Makes `output`'s handles the parent's own: each must be empty, a block in the
/// worker's scratch area (copied into the arena), or one of the `lent` handles
/// (retained). On error, whatever was adopted is released again.
fn adopt_handles<T: TaskField>(
    output: &mut T,
    offsets: &[usize],
    lent: &[ShmHandle],
    scratch: &Scratch,
) -> Result<(), Rejected> {
    let mut adopted = Vec::with_capacity(offsets.len());
    let result = offsets.iter().try_for_each(|&offset| {
        let bytes = bytemuck::bytes_of_mut(output);
        let slot = &mut bytes[offset..offset + size_of::<ShmHandle>()];
        let handle: ShmHandle = bytemuck::pod_read_unaligned(slot);
        let owned = if handle.is_empty() {
            ShmHandle::EMPTY
        } else if Scratch::is_scratch(&handle) {
            scratch.import(&handle).map_err(|e| match e {
                ImportError::Invalid(reason) => Rejected::Invalid(reason),
                ImportError::Arena(error) => Rejected::Resources(error),
            })?
        } else if lent.contains(&handle) {
            Arena::global()
                .and_then(|arena| arena.retain(&handle))
                .map_err(|e| Rejected::Invalid(e.to_string()))?;
            handle
        } else {
            return Err(Rejected::Invalid(format!(
                "handle (offset {}, length {}, generation {}) names no block lent to the worker nor one it created",
                handle.offset, handle.len, handle.generation
            )));
        };
        slot.copy_from_slice(bytemuck::bytes_of(&owned));
        adopted.push(owned);
        Ok(())
    });
    if result.is_err() {
        ownership::release_all(&adopted);
    }
    result
}

/// Byte offsets of the arena handles inside a `T`, found by visiting a probe value
/// whose every 8-byte word names its own position.
fn handle_offsets<T: TaskField>() -> Result<Vec<usize>, String> {
    if !T::HAS_HANDLES {
        return Ok(Vec::new());
    }
    const TAG: u64 = 0x5A5A_0000_0000_0000;
    let mut probe = <T as bytemuck::Zeroable>::zeroed();
    for (i, word) in bytemuck::bytes_of_mut(&mut probe)
        .chunks_exact_mut(8)
        .enumerate()
    {
        word.copy_from_slice(&(TAG | i as u64).to_ne_bytes());
    }
    let mut offsets = Vec::new();
    let mut bad = false;
    crate::task::for_each_handle(&probe, &mut |handle| {
        if handle.offset & !0xFFFF_FFFF == TAG {
            offsets.push((handle.offset & 0xFFFF_FFFF) as usize * 8);
        } else {
            bad = true;
        }
    });
    let bytes = bytemuck::bytes_of(&probe);
    let consistent = !bad
        && offsets.iter().all(|&offset| {
            offset + size_of::<ShmHandle>() <= bytes.len()
                && bytemuck::pod_read_unaligned::<ShmHandle>(
                    &bytes[offset..offset + size_of::<ShmHandle>()],
                )
                .offset
                    == TAG | (offset / 8) as u64
        });
    if consistent {
        Ok(offsets)
    } else {
        Err(format!(
            "`{}` reports shared-memory handles that are not stored in place, so they cannot cross to a worker process",
            std::any::type_name::<T>()
        ))
    }
}

#[cfg(test)]
mod tests;
