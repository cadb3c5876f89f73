//! The one thread that forks worker processes.
//!
//! A worker asks the kernel to kill it when its parent dies (`PR_SET_PDEATHSIG`), but
//! the kernel's "parent" there is the *thread* that forked it: when that thread exits,
//! the worker is killed although the process lives on. Tokio's threads do exit (a
//! worker thread that calls `block_in_place` leaves the runtime, and idle blocking-pool
//! threads end after `thread_keep_alive`), so every fork goes through one std thread,
//! started on first use, that never exits while the process runs.
//!
//! The thread enters the caller's runtime while it spawns, because `tokio::process`
//! registers each child with the runtime that will reap it.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::OnceLock;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A fork to perform on the spawner thread.
type Job = Box<dyn FnOnce() + Send>;

/// Spawns `command` from the spawner thread, as a child of the current runtime.
///
/// Must be called within a tokio runtime (it is: supervisors are tasks).
pub(crate) async fn spawn(command: Command) -> io::Result<Child> {
    let handle = Handle::current();
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let mut command = command;
        let _runtime = handle.enter();
        let _ = done.send(command.spawn());
    });
    jobs()?
        .send(job)
        .map_err(|_| io::Error::other("aqueduct's spawner thread is gone"))?;
    result
        .await
        .map_err(|_| io::Error::other("aqueduct's spawner thread dropped a spawn"))?
}

/// The spawner thread's queue, starting the thread on first use.
fn jobs() -> io::Result<&'static mpsc::Sender<Job>> {
    static JOBS: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("aqueduct-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop only ends with the process.
                for job in receiver {
                    // A panic must not end this thread: that would kill every worker.
                    // The job's result sender is dropped, so its caller gets an error.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map(|_| sender)
            .map_err(|e| format!("cannot start aqueduct's spawner thread: {e}"))
    })
    .as_ref()
    .map_err(|e| io::Error::other(e.clone()))
}
