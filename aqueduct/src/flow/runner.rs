//! The per-stage loop: idle worker -> batch -> admission -> executor -> downstream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::batcher;
use super::control::Control;
use super::downstream::Downstream;
use super::envelope::{Envelope, Unfit};
use super::job::Job;
use super::observe;
use super::pace::Pace;
use super::queue::QueueRx;
use super::seats::{Seat, Seats};
use crate::exec::Executor;
use crate::stats::StageCounters;
use crate::{Stage, StageConfig, Task};

/// How long after its admission check any task of a run should start, by the stage's
/// measured pace.
const RUN_BUDGET: Duration = Duration::from_millis(2);
/// The slowest pace at which a stage serving a single request is waited for actively
/// (see [`StageRunner::is_quiet`]).
const QUIET_MAX_PACE: Duration = Duration::from_micros(100);

pub(crate) struct StageRunner<S: Stage, R: Task, D, E> {
    pub input: QueueRx<Envelope<S::Input, R>>,
    pub downstream: Arc<D>,
    pub executor: Arc<E>,
    pub config: StageConfig,
    pub control: Arc<Control>,
    pub counters: Arc<StageCounters>,
    pub pace: Arc<Pace>,
    /// Signalled whenever tasks are taken from `input`: room was made (see
    /// `Flow`'s readiness).
    pub room: Arc<Notify>,
}

impl<S, R, D, E> StageRunner<S, R, D, E>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    E: Executor<S>,
{
    /// Runs until the input queue is closed and drained and every batch has been
    /// delivered; then the downstream is dropped, which closes the next stage's queue.
    pub(crate) async fn run(self) {
        // A worker's seats sit in this queue while free. Taking one before collecting a
        // batch means batches form only when a worker can take them, so under load tasks
        // accumulate in the queue and batches come out full.
        //
        // A pipelined stage gives each worker a second seat, behind the one it runs: the
        // next run already waits on the worker when it finishes one, instead of the worker
        // idling while its answer travels back and the next dispatch is made. Only a
        // stage measured to take 20 us to 1 ms a task uses it (see `queues_behind`), so a
        // task waits behind another dispatch for at most a short run; otherwise the second
        // seats are parked, and admission (deadlines, callers gone) happens as late as
        // without pipelining.
        //
        // A seat whose worker is down (a process restarting) is set aside until the worker
        // is back, so the stage serves at the speed of its live workers; batches that come
        // back unrun, or from a lost worker, wait in `retries` and go before new tasks.
        let workers = self.config.nprocs;
        let depth = if self.config.pipelined() {
            self.executor.depth().clamp(1, 2)
        } else {
            1
        };
        let seats = Seats::new(workers * depth);
        for behind in [false, true].into_iter().take(depth) {
            for worker in 0..workers {
                seats.put(Seat { worker, behind });
            }
        }
        let (retry_tx, retries) = async_channel::unbounded();
        let mut parked: Vec<Seat> = Vec::new();
        let mut input_open = true;
        loop {
            if !input_open && retries.is_empty() {
                // Draining: only retries can still come, from batches in flight.
                if seats.all_home(parked.len()) {
                    break;
                }
                seats.settled().await;
                continue;
            }
            let Some(seat) = self.up_seat(&seats).await else {
                break;
            };
            let pipelining = self.queues_behind(depth);
            if seat.behind && !pipelining {
                parked.push(seat);
                continue;
            }
            if pipelining && !parked.is_empty() {
                parked.drain(..).for_each(|seat| seats.put(seat));
            }
            let ahead = if pipelining { depth } else { 1 };
            // A retry first; otherwise whichever comes first. (Once the input is closed
            // and drained its `recv` fails at once, and the loop's head waits instead.)
            let (batch, flush) = match retries.try_recv() {
                Ok(batch) => (batch, None),
                Err(_) => tokio::select! {
                    biased;
                    Ok(batch) = retries.recv() => (batch, None),
                    first = self.input.recv() => match first {
                        Some(first) => {
                            // Timed only for the metric (`metrics` feature), and only for a
                            // stage that waits for batches to fill: a stage of single-task
                            // batches takes what is queued at once.
                            let filling = (cfg!(feature = "metrics") && !self.config.pipelined())
                                .then(Instant::now);
                            let (batch, flush) = batcher::collect(
                                &self.input,
                                first,
                                self.dispatch_size(ahead),
                                self.config.batch_timeout,
                            )
                            .await;
                            if let Some(filling) = filling {
                                self.counters.metrics.batch_fill(filling.elapsed());
                            }
                            self.room.notify_waiters();
                            (batch, Some(flush))
                        }
                        None => {
                            input_open = false;
                            seats.put(seat);
                            continue;
                        }
                    },
                },
            };
            let batch = self.admit(batch);
            if batch.is_empty() {
                seats.put(seat);
                continue;
            }
            let (tasks, routes): (Vec<_>, Vec<_>) = batch.into_iter().map(Envelope::split).unzip();
            let span = observe::dispatch(&routes, seat.worker, &self.counters, flush);
            self.counters
                .dispatched(tasks.len().div_ceil(self.config.batch_size), tasks.len());
            let quiet = self.is_quiet();
            let count = tasks.len() as u64;
            // Handed to the worker here, before any task is spawned, so that one worker
            // sees dispatches in the order they were made.
            let sent = Instant::now();
            let outcome = self.executor.run(seat.worker, tasks, quiet, span);
            let job = Job::<S, R, D, _> {
                worker: seat.worker,
                count,
                sent,
                outcome,
                routes,
                downstream: self.downstream.clone(),
                counters: self.counters.clone(),
                pace: self.pace.clone(),
                retries: retry_tx.clone(),
                crash_retry: self.config.crash_retry,
            };
            if quiet || (workers == 1 && ahead == 1) {
                // Nothing else is waiting (quiet), or the only worker takes no other batch
                // until this one is delivered: run it here, saving a task spawn and two
                // wake-ups.
                job.run().await;
                seats.put(seat);
            } else {
                let home = seats.home();
                tokio::spawn(async move {
                    job.run().await;
                    home.put(seat);
                });
            }
        }
        self.executor.shutdown().await;
    }

    /// The next free seat whose worker is up; a seat whose worker is down goes back to
    /// the pool only once the worker is up again. `None` if the pool is gone.
    async fn up_seat(&self, seats: &Seats) -> Option<Seat> {
        loop {
            let seat = seats.take().await?;
            if self.executor.is_up(seat.worker) {
                return Some(seat);
            }
            seats.set_aside(seat, self.executor.until_up(seat.worker));
        }
    }

    /// Whether a dispatch may wait behind the one a worker runs. Only for a stage whose
    /// measured pace fits a task into a run's share of `RUN_BUDGET`, so the wait is
    /// short; slower stages keep late admission, and their workers' idle moment between
    /// dispatches is small next to their handler time. And only for a stage whose tasks
    /// take at least `PIPELINE_MIN_PACE`: below that the parent, not the worker, is the
    /// bottleneck, and a second dispatch in flight only adds to the parent's work
    /// (measured: 3 no-op stages lost about a quarter of their throughput).
    fn queues_behind(&self, depth: usize) -> bool {
        const PIPELINE_MIN_PACE: Duration = Duration::from_micros(20);
        let pace = self.pace.per_task_ns();
        depth > 1
            && pace >= PIPELINE_MIN_PACE.as_nanos() as u64
            && pace <= RUN_BUDGET.as_nanos() as u64 / depth as u64
    }

    /// How many tasks to hand a worker at once. Normally one batch. For a fast stage of
    /// single-task batches without a batch timeout, a run of queued tasks travels together
    /// (each is still its own handler call), so a busy worker gets many tasks per wake-up
    /// instead of one. A run is bounded by the stage's measured pace (a stage not yet
    /// measured gets single tasks) to its share of `RUN_BUDGET` among the `ahead`
    /// dispatches a worker holds, so every task starts within about `RUN_BUDGET` of its
    /// admission check; runs are also split fairly across workers.
    fn dispatch_size(&self, ahead: usize) -> usize {
        let pace = self.pace.per_task_ns();
        if !self.config.pipelined() || pace == 0 {
            return self.config.batch_size;
        }
        let budget = RUN_BUDGET.as_nanos() as u64 / ahead as u64;
        let affordable = (budget / pace).clamp(1, self.config.dispatch_cap() as u64) as usize;
        let fair_share = (self.input.len() + 1).div_ceil(self.config.nprocs * ahead);
        affordable
            .min(fair_share)
            .min(self.executor.max_dispatch())
            .max(1)
    }

    /// The flow serves a single request and this stage is fast (< 100 us a task): the
    /// latency regime, where waiting actively for the worker beats a wake-up. Under any
    /// load this is false, so no thread is spent spinning while there is other work.
    fn is_quiet(&self) -> bool {
        let pace = self.pace.per_task_ns();
        self.control.in_flight() <= 1
            && self.input.is_empty()
            && pace != 0
            && pace < QUIET_MAX_PACE.as_nanos() as u64
    }

    /// Keeps only the tasks that may reach the handler: none once the flow is halted
    /// (their callers are told it stopped); otherwise not those whose caller left, nor
    /// those whose deadline passed (answered with [`Error::Timeout`]).
    fn admit(&self, batch: Vec<Envelope<S::Input, R>>) -> Vec<Envelope<S::Input, R>> {
        let before = batch.len();
        let mut admitted = Vec::with_capacity(before);
        let (mut expired, mut cancelled) = (0, 0);
        if !self.control.is_halted() {
            let now = Instant::now();
            for envelope in batch {
                match envelope.unfit(now) {
                    None => admitted.push(envelope),
                    Some(Unfit::Expired) => {
                        expired += 1;
                        envelope.expire();
                    }
                    Some(Unfit::Abandoned) => {
                        cancelled += 1;
                        drop(envelope);
                    }
                }
            }
        }
        self.counters.metrics.abandoned(expired, cancelled);
        self.counters.abandoned(before - admitted.len());
        admitted
    }
}

#[cfg(test)]
mod tests;
