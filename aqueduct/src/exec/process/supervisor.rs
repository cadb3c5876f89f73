//! One supervisor task per worker: spawns the process, waits for its handshake, owns its
//! `Child` and awaits its exit (pidfd-based), then restarts it with backoff until the
//! executor closes.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::channel::{EventFd, Region};
use super::exit;
use super::marker;
use super::spawn::{self, Spec, WORKER_ENV};
use super::spawner;
use super::wire::WorkerState;
use super::{logs, stage_hash, Conn, Exit, Shared};
use crate::config::Settings;
use crate::metrics::RestartCause;
use crate::platform::reactor::{self, Unwatched};
use crate::platform::{clock, fd, process};
use crate::shm::arena::Arena;
use crate::shm::scratch::Scratch;
use crate::Stage;

/// First delay before restarting a worker that died soon after starting; doubles up to
/// [`MAX_BACKOFF`]. A worker that had been up for [`STABLE_AFTER`], or that answered a
/// request before it died (a poison task, not a crash loop), restarts at once.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// How long a worker asked to close may take before it is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A started worker: its process and the sender of its exit.
struct Started {
    child: Child,
    conn: Arc<Conn>,
    exit: watch::Sender<Option<Exit>>,
    /// When the worker's log lines have all been forwarded.
    logs: logs::Forwarded,
}

/// Keeps worker `index` running until the executor closes.
pub(super) async fn supervise<S: Stage>(
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
                tracing::error!(
                    target: "aqueduct::worker",
                    stage = shared.stage,
                    worker = index,
                    "restarting a worker process failed: {message}"
                );
            }
            Ok(mut started) => {
                let conn = started.conn.clone();
                shared.counters.set_pid(index, conn.pid);
                shared.slots[index].current.send_replace(Some(conn.clone()));
                // Reported ready only now, so that `start()` returns with real pids.
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
                let status = tokio::select! {
                    status = started.child.wait() => status,
                    () = conn.kill.notified() => {
                        let _ = started.child.start_kill();
                        started.child.wait().await
                    }
                    () = closed(&mut closing) => {
                        conn.ctl.header().closing.store(1, Ordering::SeqCst);
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
                    // Killed by the executor, or died on its own.
                    let killed_for = *crate::sync::lock(&conn.killed_for);
                    shared
                        .counters
                        .restarted(killed_for.unwrap_or(RestartCause::Crashed));
                }
                let _ = started.exit.send(Some(Exit { signal }));
                if !restart {
                    // So that a graceful stop returns with everything its workers wrote forwarded.
                    started.logs.within().await;
                    return;
                }
                if started_at.elapsed() >= STABLE_AFTER || conn.served.load(Ordering::Relaxed) {
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
    let settings = Settings::get().map_err(|e| e.to_string())?;
    let geometry = shared.geometry;
    let ctl = Region::create(geometry.region_len())
        .map_err(|e| format!("cannot create the worker's control region: {e}"))?;
    let req = EventFd::create(false).map_err(|e| format!("cannot create an eventfd: {e}"))?;
    let resp = EventFd::create(true).map_err(|e| format!("cannot create an eventfd: {e}"))?;
    let scratch = Scratch::create(shared.scratch_capacity).map_err(|e| e.to_string())?;
    let parent_pid = std::process::id();
    let spec = Spec {
        build_id: spawn::build_id(),
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
        spin_us: Spec::spin_us(settings.spin),
        log_level: settings.worker_log,
    };
    let resp = register(resp)?;
    // Kept open until the child has been spawned (and has its own copy).
    let (spec_file, marker) =
        marker::spec_file(&spec).map_err(|e| format!("cannot write the worker's spec: {e}"))?;
    let mut inherit = spec.inherited_fds().to_vec();
    inherit.push(std::os::fd::AsRawFd::as_raw_fd(&spec_file));
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0(format!("aqueduct-worker:{}:{index}", shared.stage))
        .env(WORKER_ENV, marker)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (the `platform` functions so marked: raw system calls) on
    // plain integers. The descriptors in `inherit` are open in the child: the parent holds
    // them open until the spawn has returned.
    unsafe {
        command.pre_exec(move || {
            for &fd in &inherit {
                // The fds were created close-on-exec so that other children spawned
                // concurrently never inherit them; only this child's copies are opened.
                fd::set_close_on_exec_raw(fd, false)?;
            }
            // Die with the parent. (Fires when the forking *thread* exits, which is why
            // every fork runs on the spawner thread; the worker also polls getppid.)
            process::die_with_parent()?;
            if process::parent_pid() != parent_pid {
                process::exit_immediately(exit::ORPHANED);
            }
            Ok(())
        });
    }
    let mut child = spawner::spawn(command)
        .await
        .map_err(|e| format!("cannot spawn a worker process: {e}"))?;
    drop(spec_file);
    let pid = child.id().unwrap_or(0);
    let spans = Arc::new(logs::SpanBook::default());
    let forwarded = match child.stderr.take().map(|stderr| stderr.into_owned_fd()) {
        Some(Ok(fd)) => logs::forward(shared.stage, pid, std::fs::File::from(fd), spans.clone()),
        _ => logs::Forwarded::none(),
    };
    let deadline = clock::deadline(Instant::now(), shared.config.start_timeout);
    loop {
        match ctl.state() {
            Ok(WorkerState::Ready) => break,
            Ok(WorkerState::Starting) => {}
            Ok(WorkerState::InitFailed | WorkerState::Refused) => {
                let message = ctl.message();
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(message);
            }
            Err(other) => {
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
                if ctl.state() != Ok(WorkerState::Starting) {
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
            lanes: Mutex::default(),
            last_published: AtomicU64::new(0),
            drained: Notify::new(),
            freed: Notify::new(),
            freed_watchers: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            exit: exit_rx,
            kill: Notify::new(),
            killed_for: Mutex::default(),
            spans,
        }),
        exit: exit_tx,
        logs: forwarded,
    })
}

/// Registers the response eventfd with the runtime's reactor.
fn register(resp: EventFd) -> Result<AsyncFd<EventFd>, String> {
    reactor::watch_readable(resp).map_err(|unwatched| match unwatched {
        Unwatched::Refused(e) => format!("cannot register an eventfd: {e}"),
        Unwatched::NoIoDriver => "process workers need a tokio runtime with IO enabled (`Builder::enable_all`, as `#[tokio::main]` does)".into(),
    })
}

/// Resolves once the executor is closing.
pub(super) async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

/// The worker's live process, once there is one; `None` if its supervisor is gone.
pub(super) async fn live(current: &mut watch::Receiver<Option<Arc<Conn>>>) -> Option<Arc<Conn>> {
    current
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|conn| conn.clone())
}

pub(super) async fn exited(exit: &mut watch::Receiver<Option<Exit>>) -> Exit {
    match exit.wait_for(Option::is_some).await {
        Ok(exit) => exit.unwrap_or(Exit { signal: None }),
        // The supervisor is gone (the runtime is shutting down); the child was killed.
        Err(_) => Exit {
            signal: Some(process::SIGKILL),
        },
    }
}

/// Has the worker killed for `cause` (its restart's cause), and waits until it is gone.
pub(super) async fn kill_and_wait(conn: &Conn, cause: RestartCause) {
    crate::sync::lock(&conn.killed_for).get_or_insert(cause);
    conn.kill.notify_one();
    exited(&mut conn.exit.clone()).await;
}
