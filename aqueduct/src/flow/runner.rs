//! The per-stage loop: idle worker -> batch -> admission -> executor -> downstream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::batcher;
use super::control::Control;
use super::direct::Direct;
use super::dispatch::Dispatcher;
use super::downstream::Downstream;
use super::envelope::Envelope;
use super::idle::IdleSeat;
use super::job::Delivery;
use super::pace::Pace;
use super::precise_timer::PreciseTimer;
use super::queue::QueueRx;
use super::seats::{Seat, Seats};
use crate::exec::Executor;
use crate::stats::StageCounters;
use crate::{Stage, StageConfig, Task};

/// How long after its admission check any task of a run should start, by the stage's
/// measured pace.
const RUN_BUDGET: Duration = Duration::from_millis(2);

pub(crate) struct StageRunner<S: Stage, R: Task, D, E> {
    input: QueueRx<Envelope<S::Input, R>>,
    stage: Arc<Dispatcher<S, R, D, E>>,
    retries: async_channel::Receiver<Vec<Envelope<S::Input, R>>>,
    seats: Seats,
    /// The seat lent while this stage waits for work (to callers at the first stage, to
    /// the previous stage's jobs at the others); `None` for a stage that does not lend
    /// it (see [`StageRunner::direct`]).
    idle: Option<Arc<IdleSeat>>,
    /// Signalled whenever tasks are taken from `input`: room was made (see
    /// `Flow`'s readiness). One waiter is woken, which passes the word on while room
    /// lasts (see `FlowService::poll_ready`).
    room: Arc<Notify>,
    /// Held until the runner is done (see [`StageRunner::keep_until_done`]).
    kept: Option<Kept>,
}

/// Something a stage's runner holds until it is done.
pub(crate) type Kept = Arc<dyn std::any::Any + Send + Sync>;

impl<S, R, D, E> StageRunner<S, R, D, E>
where
    S: Stage,
    R: Task,
    D: Downstream<S::Output, R>,
    E: Executor<S>,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        input: QueueRx<Envelope<S::Input, R>>,
        downstream: D,
        executor: E,
        config: StageConfig,
        control: Arc<Control>,
        counters: Arc<StageCounters>,
        pace: Arc<Pace>,
        room: Arc<Notify>,
    ) -> Self {
        let depth = executor.depth().clamp(1, 2);
        let (retries_tx, retries) = async_channel::unbounded();
        Self {
            input,
            seats: Seats::new(config.nprocs * depth),
            stage: Arc::new(Dispatcher {
                executor: Arc::new(executor),
                config,
                control,
                delivery: Arc::new(Delivery {
                    downstream,
                    counters: counters.clone(),
                    pace: pace.clone(),
                    retries: retries_tx,
                    crash_retry: config.crash_retry,
                }),
                counters,
                pace,
            }),
            retries,
            idle: None,
            room,
            kept: None,
        }
    }

    /// Holds `kept` until this runner is done: the flow's way around its first stage
    /// (see `EntrySkip`), which feeds the next stage's queue as this stage does, and so
    /// must go when this stage's own way there goes.
    pub(crate) fn keep_until_done(&mut self, kept: Kept) {
        self.kept = Some(kept);
    }

    /// The way to hand a task straight to this stage's worker while the stage is idle
    /// (see [`super::direct`]). Only a stage that takes what is queued at once lends
    /// its seat: one whose batches wait for a timeout to fill must see every task in
    /// its queue.
    pub(crate) fn direct(&mut self) -> Option<Arc<Direct<S, R, D, E>>> {
        if !self.stage.config.batch_timeout.is_zero() {
            return None;
        }
        let idle = self.idle.get_or_insert_with(|| Arc::new(IdleSeat::new()));
        Some(Arc::new(Direct::new(
            &self.stage,
            idle.clone(),
            self.seats.home(),
        )))
    }

    /// Runs until the input queue is closed and drained and every batch has been
    /// delivered; then the downstream is dropped, which closes the next stage's queue.
    pub(crate) async fn run(self) {
        // A worker's seats sit in this queue while free. Taking one before collecting a
        // batch means batches form only when a worker can take them, so under load tasks
        // accumulate in the queue and batches come out full.
        //
        // Each worker has a second seat, behind the one it runs: the next dispatch already
        // waits on the worker when it finishes one, instead of the worker idling while its
        // answer travels back and the next dispatch is made. Only a stage whose
        // dispatches are measured to take 20 us to 1 ms uses it, and a batching stage only
        // for a full batch (see `queues_behind`), so a task waits behind another dispatch
        // for at most a short one, and batches still fill while the workers are busy;
        // otherwise the second seats are parked, and admission (deadlines, callers gone)
        // happens as late as without them.
        //
        // A seat whose worker is down (a process restarting) is set aside until the worker
        // is back, so the stage serves at the speed of its live workers; batches that come
        // back unrun, or from a lost worker, wait in `retries` and go before new tasks.
        //
        // While the stage waits for work with nothing queued, its seat is lent (`idle`)
        // to whoever brings a lone task (a caller, or the previous stage's job), who
        // dispatches it on the seat; the runner takes it back when work reaches it, or
        // waits for it if it is out. Work is awaited without taking a task, so that a
        // task arriving while the seat is out stays queued, as any other.
        let halt = self.end_workers_on_halt();
        let seats = &self.seats;
        let stage = &*self.stage;
        let workers = stage.config.nprocs;
        let depth = seats.total() / workers;
        for behind in [false, true].into_iter().take(depth) {
            for worker in 0..workers {
                seats.put(Seat { worker, behind });
            }
        }
        let retries = &self.retries;
        let mut fill_timer = PreciseTimer::new();
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
            let Some(seat) = self.up_seat().await else {
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
            let lent = self.lend(seat, input_open);
            // A retry first; otherwise whichever comes first. (Once the input is closed
            // and drained, `ready` and `recv` return at once, and the loop's head waits
            // instead.)
            let retry = match retries.try_recv() {
                Ok(batch) => Some(batch),
                // Work is queued (the case under load): no wait to set up.
                Err(_) if !self.input.is_empty() => None,
                Err(_) => tokio::select! {
                    biased;
                    Ok(batch) = retries.recv() => Some(batch),
                    _ = self.input.ready() => None,
                },
            };
            let seat = if lent {
                match self.reclaim(&mut parked, depth).await {
                    Some(seat) => seat,
                    None => break,
                }
            } else {
                seat
            };
            let (batch, flush) = match retry {
                Some(retry) => (retry, None),
                None => match self.input.recv().await {
                    Some(first) => {
                        // Timed only for the metric (`metrics` feature), and only for a
                        // stage that waits for batches to fill: a stage of single-task
                        // batches takes what is queued at once.
                        let filling = (cfg!(feature = "metrics") && !stage.config.pipelined())
                            .then(Instant::now);
                        let (batch, flush) = batcher::collect(
                            &self.input,
                            first,
                            self.dispatch_size(ahead),
                            stage.config.batch_timeout,
                            &mut fill_timer,
                        )
                        .await;
                        if let Some(filling) = filling {
                            stage.counters.metrics.batch_fill(filling.elapsed());
                        }
                        self.room.notify_one();
                        (batch, Some(flush))
                    }
                    None => {
                        input_open = false;
                        seats.put(seat);
                        continue;
                    }
                },
            };
            let Some(job) = stage.dispatch(seat.worker, batch, flush, Instant::now()) else {
                seats.put(seat);
                continue;
            };
            if stage.is_quiet() || (workers == 1 && ahead == 1) {
                // Nothing else is waiting (quiet), or the only worker takes no other batch
                // until this one is delivered: run it here, saving a task spawn and two
                // wake-ups.
                let next = job.await;
                seats.put(seat);
                // A task gone straight on to the next stage: its job runs on its own,
                // so this stage goes on meanwhile.
                if let Some(next) = next {
                    tokio::spawn(next);
                }
            } else {
                let home = seats.home();
                tokio::spawn(async move {
                    let next = job.await;
                    home.put(seat);
                    if let Some(next) = next {
                        next.await;
                    }
                });
            }
        }
        halt.abort();
        stage.executor.shutdown().await;
    }

    /// Watches for the flow's halt (`stop(false)`, its last handle dropped, or a start
    /// that failed) and then ends the stage's workers at once (see [`Executor::halt`]):
    /// a batch that never finishes (a handler stuck, no execution timeout) would
    /// otherwise hold its seat, and so this runner and every worker, for ever. Once the
    /// executor is closed the runner takes no seat again (see [`StageRunner::up_seat`]),
    /// so it ends as soon as its batches in flight come back.
    fn end_workers_on_halt(&self) -> tokio::task::JoinHandle<()> {
        let stage = Arc::downgrade(&self.stage);
        let control = self.stage.control.clone();
        tokio::spawn(async move {
            control.halted().await;
            if let Some(stage) = stage.upgrade() {
                stage.executor.halt();
            }
        })
    }

    /// Offers `seat` to callers while the runner waits for work, if this stage lends
    /// its seat and nothing is waiting for it; whether it did.
    fn lend(&self, seat: Seat, input_open: bool) -> bool {
        let Some(idle) = &self.idle else {
            return false;
        };
        let waiting = !self.retries.is_empty() || !self.input.is_empty();
        !seat.behind && input_open && !waiting && idle.offer(seat).is_ok()
    }

    /// Takes back the seat offered to callers, waiting for it (or another) if a caller
    /// holds it; a seat behind another is parked as at the loop's head, unless the stage
    /// pipelines. `None` if the pool is gone.
    async fn reclaim(&self, parked: &mut Vec<Seat>, depth: usize) -> Option<Seat> {
        if let Some(seat) = self.idle.as_ref().and_then(|idle| idle.reclaim()) {
            return Some(seat);
        }
        loop {
            let seat = self.up_seat().await?;
            if !seat.behind || self.queues_behind(depth) {
                return Some(seat);
            }
            parked.push(seat);
        }
    }

    /// The next free seat whose worker is up; a seat whose worker is down goes back to
    /// the pool only once the worker is up again. `None` if the pool is gone, or the
    /// executor was closed (halted): no worker will be up again.
    async fn up_seat(&self) -> Option<Seat> {
        let executor = &self.stage.executor;
        loop {
            let seat = self.seats.take().await?;
            if executor.is_closed() {
                return None;
            }
            if executor.is_up(seat.worker) {
                return Some(seat);
            }
            self.seats.set_aside(seat, executor.until_up(seat.worker));
        }
    }

    /// Whether a dispatch may wait behind the one a worker runs. Only for a stage whose
    /// measured dispatch (a run's task, for a stage of single-task batches; a full batch
    /// otherwise) fits `RUN_BUDGET`'s share, so the wait is short; slower stages keep
    /// late admission, and their workers' idle moment between dispatches is small next
    /// to their handler time. And only for one that takes at least `PIPELINE_MIN_PACE`:
    /// below that the parent, not the worker, is the bottleneck, and a second dispatch
    /// in flight only adds to the parent's work (measured: 3 no-op stages lost about a
    /// quarter of their throughput). A batching stage sends a batch behind only when a
    /// full one is queued: a batch that can still fill waits in the queue while the
    /// worker is busy, as without a second seat. (Two dispatches on one worker may be
    /// delivered to the next stage in either order, as two runs may.)
    fn queues_behind(&self, depth: usize) -> bool {
        const PIPELINE_MIN_PACE: Duration = Duration::from_micros(20);
        let config = &self.stage.config;
        let pace = self.stage.pace.per_task_ns();
        let (dispatch, ready) = if config.pipelined() {
            (pace, true)
        } else {
            // (A stage of single tasks with a batch timeout never queues one behind.)
            (
                pace.saturating_mul(config.batch_size as u64),
                config.batch_size > 1 && self.input.len() >= config.batch_size,
            )
        };
        depth > 1
            && ready
            && dispatch >= PIPELINE_MIN_PACE.as_nanos() as u64
            && dispatch <= RUN_BUDGET.as_nanos() as u64 / depth as u64
    }

    /// How many tasks to hand a worker at once. Normally one batch. For a fast stage of
    /// single-task batches without a batch timeout, a run of queued tasks travels together
    /// (each is still its own handler call), so a busy worker gets many tasks per wake-up
    /// instead of one. A run is bounded by the stage's measured pace (a stage not yet
    /// measured gets single tasks) to its share of `RUN_BUDGET` among the `ahead`
    /// dispatches a worker holds, so every task starts within about `RUN_BUDGET` of its
    /// admission check; runs are also split fairly across workers.
    fn dispatch_size(&self, ahead: usize) -> usize {
        let pace = self.stage.pace.per_task_ns();
        if !self.stage.config.pipelined() || pace == 0 {
            return self.stage.config.batch_size;
        }
        let budget = RUN_BUDGET.as_nanos() as u64 / ahead as u64;
        let affordable = (budget / pace).clamp(1, self.stage.config.dispatch_cap() as u64) as usize;
        let fair_share = (self.input.len() + 1).div_ceil(self.stage.config.nprocs * ahead);
        affordable
            .min(fair_share)
            .min(self.stage.executor.max_dispatch())
            .max(1)
    }
}

#[cfg(test)]
mod tests;
