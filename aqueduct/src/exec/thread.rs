//! Workers as threads of this process: `nprocs` named threads, each running `init` once
//! and then the batches sent to it. Used for `isolation = "thread"`.

use std::future::Future;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{poll_within, run_batch, Dispatched, Executor, Timed, Wait, QUIET_SPIN};
use crate::shapes::catch;
use crate::shm::Owned;
use crate::spin::{IdleSpin, NextWork, SpinWait, EXPECTED_POLL};
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
    workers: Vec<Worker<S>>,
}

/// The way to one worker thread: its jobs, and its bell.
struct Worker<S: Stage> {
    jobs: mpsc::Sender<Job<S>>,
    bell: Arc<Bell>,
    thread: Thread,
}

/// How a sleeping worker is woken: it announces its sleep here, looks for a job once
/// more, and parks; a sender that sees the announcement unparks it. The channel's own
/// blocking receive is not used: it wakes the receiver while holding the channel's lock,
/// and a worker woken on its caller's core then preempted the caller inside that lock
/// and waited for it (64-byte round trip on one core: 5.7 us, against 1.9 us for a
/// hand-rolled thread and 2.6 us with this bell).
///
/// `expected` works the same way: a caller that expects to send a job within
/// microseconds sets it (see [`Executor::expect`]), and a worker about to sleep polls
/// for the job instead; one asleep is woken to.
/// While the worker declines expectations (`declining`), none is set.
#[derive(Default)]
struct Bell {
    sleeping: AtomicBool,
    expected: AtomicBool,
    declining: AtomicBool,
}

impl Bell {
    /// Worker: says whether it declines expectations now (see [`NextWork`]).
    fn say_declining(&self, next_work: &NextWork) {
        self.declining
            .store(next_work.declines_expected(), Ordering::Relaxed);
    }
}

impl<S: Stage> Worker<S> {
    /// Sends `job`, waking the worker if it sleeps; the job back if the worker is gone.
    fn send(&self, job: Job<S>) -> Result<(), Job<S>> {
        self.jobs.send(job).map_err(|mpsc::SendError(job)| job)?;
        self.wake_if_asleep();
        Ok(())
    }

    /// After something for the worker to see (a job, an expectation) was made visible:
    /// wakes it if it announced its sleep. Paired with the worker's fence between its
    /// announcement and its last look: either it sees what was made visible, or this
    /// sees its announcement.
    fn wake_if_asleep(&self) {
        fence(Ordering::SeqCst);
        if self.bell.sleeping.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }

    /// Tells the worker a job is expected within microseconds, waking it if it sleeps.
    fn expect(&self) {
        if self.bell.declining.load(Ordering::Relaxed) {
            return;
        }
        self.bell.expected.store(true, Ordering::SeqCst);
        self.wake_if_asleep();
    }
}

impl<S: Stage> Drop for ThreadExecutor<S> {
    fn drop(&mut self) {
        // Each worker must see its channel closed: the sender goes first, then the
        // worker is woken to look.
        for worker in std::mem::take(&mut self.workers) {
            drop(worker.jobs);
            worker.thread.unpark();
        }
    }
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
            let bell = Arc::new(Bell::default());
            let worker_bell = bell.clone();
            let thread = std::thread::Builder::new()
                .name(format!("aqueduct-{}-{index}", S::NAME))
                .spawn(move || worker_loop::<S>(jobs_rx, &worker_bell, ready_tx, spin))
                .map_err(|e| Error::Init {
                    stage: S::NAME,
                    message: format!("cannot spawn worker thread: {e}"),
                })?;
            workers.push(Worker {
                jobs: jobs_tx,
                bell,
                thread: thread.thread().clone(),
            });
            started.ready.push(ready_rx);
            started.threads.push(thread);
        }
        Ok((Self { workers }, started))
    }
}

fn worker_loop<S: Stage>(
    jobs: mpsc::Receiver<Job<S>>,
    bell: &Bell,
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
    bell.say_declining(&next_work);
    let mut answered_at: Option<std::time::Instant> = None;
    while let Some(job) = next_job(&jobs, bell, &mut next_work) {
        if let Some(answered_at) = answered_at {
            // How long after the previous answer the job was sent (not received: a
            // sleeping worker's wake-up is not the caller's gap).
            next_work.arrived_after(job.sent.saturating_duration_since(answered_at));
        }
        next_work.took_task();
        if next_work.judges_catch() {
            next_work.caught_after(job.sent.elapsed());
        }
        bell.say_declining(&next_work);
        // Two clock readings a job: its handler's time, and (the second) when it was
        // answered, which the next job's gap is measured from.
        let started = std::time::Instant::now();
        let results = job.span.in_scope(|| run_batch::<S>(&mut state, job.inputs));
        let finished = std::time::Instant::now();
        let compute = finished - started;
        // If the dispatch is gone, the results are dropped with their memory.
        let _ = job.reply.send(Timed { results, compute });
        answered_at = Some(finished);
    }
}

/// What a worker looking for its next job is doing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Looking {
    /// Polling after its last job, as its [`NextWork`] says.
    AfterWork,
    /// Polling for a job its caller expects (see [`Bell`]).
    Expected,
    /// Not polling: announcing its sleep, or asleep.
    Asleep,
}

/// The next job, polling as `next_work` says before sleeping (and, when a job is
/// expected, for [`EXPECTED_POLL`] more); `None` once the executor is gone.
fn next_job<S: Stage>(
    jobs: &mpsc::Receiver<Job<S>>,
    bell: &Bell,
    next_work: &mut NextWork,
) -> Option<Job<S>> {
    let spin = next_work.budget();
    let mut wait = SpinWait::new(spin, spin);
    let mut looking = Looking::AfterWork;
    loop {
        match jobs.try_recv() {
            Ok(job) => {
                bell.sleeping.store(false, Ordering::Relaxed);
                if looking == Looking::Expected {
                    next_work.expected_poll_ended(true);
                }
                return Some(job);
            }
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if looking != Looking::Asleep && wait.pause() => {}
            Err(mpsc::TryRecvError::Empty) => {
                match looking {
                    Looking::AfterWork if !spin.is_zero() => next_work.missed(),
                    Looking::Expected => {
                        next_work.expected_poll_ended(false);
                        bell.say_declining(next_work);
                    }
                    Looking::AfterWork | Looking::Asleep => {}
                }
                // A job is expected within microseconds: poll for it, yielding the core
                // (the thread that will send it may be queued on this one).
                if bell.expected.swap(false, Ordering::SeqCst) && !next_work.declines_expected() {
                    bell.sleeping.store(false, Ordering::Relaxed);
                    wait = SpinWait::new(EXPECTED_POLL, Duration::ZERO);
                    looking = Looking::Expected;
                    continue;
                }
                if looking != Looking::Asleep {
                    // Announce the sleep, then look once more before parking (see
                    // `Bell`).
                    looking = Looking::Asleep;
                    bell.sleeping.store(true, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    continue;
                }
                // Parked until a sender (or the executor's drop) unparks this thread;
                // a spurious return just looks again.
                std::thread::park();
                bell.sleeping.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
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

    fn expect(&self, worker: usize) {
        self.workers[worker].expect();
    }

    fn run(
        &self,
        worker: usize,
        batch: Vec<Owned<S::Input>>,
        wait: Wait,
        span: tracing::Span,
        sent: tokio::time::Instant,
    ) -> impl Future<Output = Dispatched<S::Input, S::Output>> + Send + 'static {
        let (reply, mut results) = oneshot::channel();
        // A failed send gives the job back, and it is dropped here with its tasks.
        let sent = self.workers[worker]
            .send(Job {
                inputs: batch,
                reply,
                span,
                sent: sent.into_std(),
            })
            .is_ok();
        let outcome = async move {
            if !sent {
                // The worker thread is gone.
                return Err(Error::Stopped);
            }
            // The worker always answers unless its thread is gone (it exited after a
            // failed `init`, which `start()` reports before any batch is sent).
            if wait == Wait::Spin {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Isolation, StageConfig};

    #[crate::task(crate = "crate")]
    struct Item {
        n: u64,
    }

    struct Double;

    impl Stage for Double {
        type Input = Item;
        type Output = Item;
        type State = ();
        const NAME: &'static str = "double";
        const CONFIG: StageConfig = StageConfig {
            isolation: Isolation::Thread,
            ..StageConfig::DEFAULT
        };

        fn init() -> Result<(), String> {
            Ok(())
        }

        fn handle(_: &mut (), inputs: Vec<Item>) -> Vec<Result<Item, String>> {
            inputs
                .into_iter()
                .map(|i| Ok(Item { n: i.n * 2 }))
                .collect()
        }
    }

    /// Longer than any test here takes, so a lost wake-up fails instead of hanging.
    const LOST: Duration = Duration::from_secs(10);

    async fn doubled(executor: &ThreadExecutor<Double>, n: u64) -> u64 {
        let run = executor.run(
            0,
            vec![Owned::new(Item { n })],
            Wait::Sleep,
            tracing::Span::none(),
            tokio::time::Instant::now(),
        );
        let outcome = tokio::time::timeout(LOST, run)
            .await
            .expect("the worker never answered");
        let Dispatched::Answered { results, .. } = outcome else {
            panic!("not answered");
        };
        let result = results.into_iter().next().unwrap();
        result.unwrap().n
    }

    /// An executor of one worker thread whose `init` has run, and the thread.
    async fn one_worker() -> (ThreadExecutor<Double>, Vec<JoinHandle<()>>) {
        let (executor, started) = ThreadExecutor::<Double>::spawn(1).unwrap();
        for ready in started.ready {
            ready.await.unwrap().unwrap();
        }
        (executor, started.threads)
    }

    /// Asserts that each worker thread ends (the executor is gone) within [`LOST`].
    fn all_end(threads: Vec<JoinHandle<()>>) {
        for thread in threads {
            let (ended, joined) = std::sync::mpsc::channel();
            std::thread::spawn(move || ended.send(thread.join().is_ok()));
            assert_eq!(
                joined.recv_timeout(LOST),
                Ok(true),
                "the worker thread never ended"
            );
        }
    }

    #[tokio::test]
    async fn a_worker_told_to_expect_a_job_takes_it_whether_it_comes_at_once_late_or_never() {
        let (executor, threads) = one_worker().await;
        for n in 1..=300 {
            executor.expect(0);
            match n % 3 {
                // Comes at once: the worker polls for it, or sleeps and is woken.
                0 => {}
                // Comes after the poll ended: the worker sleeps again and is woken.
                1 => tokio::time::sleep(Duration::from_millis(1)).await,
                // Never comes: the next job is sent after a second expectation.
                _ => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    executor.expect(0);
                }
            }
            assert_eq!(doubled(&executor, n).await, 2 * n);
        }
        drop(executor);
        all_end(threads);
    }

    #[tokio::test]
    async fn a_sleeping_worker_wakes_for_each_job_and_ends_when_the_executor_goes() {
        let (executor, threads) = one_worker().await;
        for n in 1..=20 {
            assert_eq!(doubled(&executor, n).await, 2 * n);
            // Long past any idle poll: the next job finds the worker parked.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Back to back, as a busy stage sends them.
        for n in 0..1000 {
            assert_eq!(doubled(&executor, n).await, 2 * n);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        drop(executor);
        // Parked when the executor went: each must see its channel closed and end.
        all_end(threads);
    }
}
