//! Workers as threads of this process: `nprocs` named threads, each running `init` once
//! and then the batches sent to it. Used for `isolation = "thread"`.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::{poll_within, run_batch, Dispatched, Executor, Timed, QUIET_SPIN};
use crate::shapes::catch;
use crate::shm::Owned;
use crate::spin::{IdleSpin, NextWork, SpinWait};
use crate::{Error, Stage};

struct Job<S: Stage> {
    inputs: Vec<Owned<S::Input>>,
    reply: oneshot::Sender<Timed<S::Output>>,
    /// The batch's span, entered while the handler runs.
    span: tracing::Span,
    /// When the job was sent, for the worker's idle poll.
    sent: std::time::Instant,
}

/// The worker threads of one stage.
pub(crate) struct ThreadExecutor<S: Stage> {
    workers: Vec<mpsc::Sender<Job<S>>>,
}

/// What starting the workers yields besides the executor: one `init` outcome per worker
/// and the threads to join at shutdown.
pub(crate) struct Started {
    pub ready: Vec<oneshot::Receiver<Result<(), String>>>,
    pub threads: Vec<JoinHandle<()>>,
}

impl<S: Stage> ThreadExecutor<S> {
    /// Spawns `count` worker threads; each reports its `init` outcome, then serves jobs
    /// until the executor is dropped.
    pub(crate) fn spawn(count: usize) -> Result<(Self, Started), Error> {
        let spin = crate::config::Settings::get()?.spin;
        let mut workers = Vec::with_capacity(count);
        let mut started = Started {
            ready: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
        };
        for index in 0..count {
            let (jobs_tx, jobs_rx) = mpsc::channel::<Job<S>>();
            let (ready_tx, ready_rx) = oneshot::channel();
            let thread = std::thread::Builder::new()
                .name(format!("aqueduct-{}-{index}", S::NAME))
                .spawn(move || worker_loop::<S>(jobs_rx, ready_tx, spin))
                .map_err(|e| Error::Init {
                    stage: S::NAME,
                    message: format!("cannot spawn worker thread: {e}"),
                })?;
            workers.push(jobs_tx);
            started.ready.push(ready_rx);
            started.threads.push(thread);
        }
        Ok((Self { workers }, started))
    }
}

fn worker_loop<S: Stage>(
    jobs: mpsc::Receiver<Job<S>>,
    ready: oneshot::Sender<Result<(), String>>,
    spin: IdleSpin,
) {
    let mut state = match catch(S::init).and_then(|r| r) {
        Ok(state) => state,
        Err(message) => {
            let _ = ready.send(Err(message));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut next_work = NextWork::new(spin);
    let mut answered_at: Option<std::time::Instant> = None;
    while let Some(job) = next_job(&jobs, &mut next_work) {
        if let Some(answered_at) = answered_at {
            // How long after the previous answer the job was sent (not received: a
            // sleeping worker's wake-up is not the caller's gap).
            next_work.arrived_after(job.sent.saturating_duration_since(answered_at));
        }
        let timed = job.span.in_scope(|| run_batch::<S>(&mut state, job.inputs));
        // If the dispatch is gone, the results are dropped with their memory.
        let _ = job.reply.send(timed);
        answered_at = Some(std::time::Instant::now());
    }
}

/// The next job, polling as `next_work` says before sleeping; `None` once the executor
/// is gone.
fn next_job<S: Stage>(jobs: &mpsc::Receiver<Job<S>>, next_work: &mut NextWork) -> Option<Job<S>> {
    let spin = next_work.budget();
    let mut wait = SpinWait::new(spin, spin);
    loop {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if wait.pause() => {}
            Err(mpsc::TryRecvError::Empty) => {
                if !spin.is_zero() {
                    next_work.missed();
                }
                return jobs.recv().ok();
            }
        }
    }
}

impl<S: Stage> Executor<S> for ThreadExecutor<S>
where
    S::Input: Send,
    S::Output: Send,
{
    /// A worker's jobs queue up in its channel, so one more can wait behind the running
    /// one.
    fn depth(&self) -> usize {
        2
    }

    fn run(
        &self,
        worker: usize,
        batch: Vec<Owned<S::Input>>,
        quiet: bool,
        span: tracing::Span,
    ) -> impl Future<Output = Dispatched<S::Input, S::Output>> + Send + 'static {
        let (reply, mut results) = oneshot::channel();
        // A failed send gives the job back, and it is dropped here with its tasks.
        let sent = self.workers[worker]
            .send(Job {
                inputs: batch,
                reply,
                span,
                sent: std::time::Instant::now(),
            })
            .is_ok();
        let outcome = async move {
            if !sent {
                // The worker thread is gone.
                return Err(Error::Stopped);
            }
            // The worker always answers unless its thread is gone (it exited after a
            // failed `init`, which `start()` reports before any batch is sent).
            if quiet {
                let early = poll_within(QUIET_SPIN, || match results.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => None,
                    outcome => Some(outcome.map_err(|_| Error::Stopped)),
                });
                if let Some(outcome) = early {
                    return outcome;
                }
            }
            results.await.map_err(|_| Error::Stopped)
        };
        async move { Dispatched::from(outcome.await) }
    }
}
