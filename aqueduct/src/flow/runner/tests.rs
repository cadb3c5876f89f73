//! The runner's heuristics (run size, pipelining, quiet waits), driven through a fake
//! executor whose workers take a set time per task on tokio's paused clock, so the
//! stage's measured pace is exact.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::StageRunner;
use crate::exec::{Dispatched, Executor, Wait};
use crate::flow::control::Control;
use crate::flow::downstream::Deliver;
use crate::flow::envelope::Envelope;
use crate::flow::pace::Pace;
use crate::flow::queue::QueueTx;
use crate::shm::Owned;
use crate::stats::StageCounters;
use crate::{Error, Isolation, Stage, StageConfig};

#[crate::task(crate = "crate")]
#[derive(Debug)]
struct Item {
    n: u64,
}

/// Declares a stage with `nprocs` workers, of single-task batches (pipelined) unless a
/// `batch_size` is given.
macro_rules! stage {
    ($name:ident, nprocs = $nprocs:expr) => {
        stage!($name, nprocs = $nprocs, batch_size = 1);
    };
    ($name:ident, nprocs = $nprocs:expr, batch_size = $batch_size:expr) => {
        struct $name;

        impl Stage for $name {
            type Input = Item;
            type Output = Item;
            type State = ();
            const NAME: &'static str = stringify!($name);
            const CONFIG: StageConfig = StageConfig {
                nprocs: $nprocs,
                batch_size: $batch_size,
                isolation: Isolation::Thread,
                ..StageConfig::DEFAULT
            };

            fn init() -> Result<(), String> {
                Ok(())
            }

            fn handle(_: &mut (), inputs: Vec<Item>) -> Vec<Result<Item, String>> {
                inputs.into_iter().map(Ok).collect()
            }
        }
    };
}

stage!(OneWorker, nprocs = 1);
stage!(TwoWorkers, nprocs = 2);
stage!(BatchesOfFour, nprocs = 1, batch_size = 4);

/// One `run` call, as the fake executor saw it.
#[derive(Debug, Clone, Copy)]
struct Call {
    worker: usize,
    tasks: usize,
    wait: Wait,
    /// Dispatches the worker held, this one included.
    held: usize,
}

#[derive(Default)]
struct Book {
    calls: Vec<Call>,
    /// Per worker: dispatches handed over and not yet answered.
    held: Vec<usize>,
    /// Per worker: when it finishes what it holds.
    free_at: Vec<Option<Instant>>,
}

/// Workers that take `per_task` for every task, one dispatch after another, and may
/// hold `depth` dispatches at once.
struct Fake {
    per_task: Duration,
    depth: usize,
    book: Arc<Mutex<Book>>,
}

impl Fake {
    fn new(per_task: Duration, depth: usize) -> Self {
        Self {
            per_task,
            depth,
            book: Arc::default(),
        }
    }
}

impl<S: Stage<Input = Item, Output = Item>> Executor<S> for Fake {
    fn depth(&self) -> usize {
        self.depth
    }

    fn run(
        &self,
        worker: usize,
        batch: Vec<Owned<Item>>,
        wait: Wait,
        _span: tracing::Span,
        _sent: tokio::time::Instant,
    ) -> impl Future<Output = Dispatched<Item, Item>> + Send + 'static {
        let mut book = self.book.lock().unwrap();
        let workers = S::CONFIG.nprocs;
        book.held.resize(workers, 0);
        book.free_at.resize(workers, None);
        book.held[worker] += 1;
        let held = book.held[worker];
        book.calls.push(Call {
            worker,
            tasks: batch.len(),
            wait,
            held,
        });
        let now = Instant::now();
        let start = book.free_at[worker].map_or(now, |free| free.max(now));
        let done = start + self.per_task * batch.len() as u32;
        book.free_at[worker] = Some(done);
        let book = self.book.clone();
        async move {
            // Moves the paused clock to exactly `done` (a sleep would round up to the
            // timer's millisecond).
            let now = Instant::now();
            if done > now {
                tokio::time::advance(done - now).await;
            }
            book.lock().unwrap().held[worker] -= 1;
            Dispatched::Answered {
                results: batch.into_iter().map(Ok).collect(),
                compute: start.elapsed(),
            }
        }
    }
}

type Answer = oneshot::Receiver<Result<Owned<Item>, Error>>;

/// A runner for stage `S` over a fake executor, fed by the test.
struct Harness {
    input: QueueTx<Envelope<Item, Item>>,
    control: Arc<Control>,
    book: Arc<Mutex<Book>>,
    runner: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start<S: Stage<Input = Item, Output = Item>>(fake: Fake) -> Self {
        let (input, queue) = crate::flow::queue::bounded(1, 1024);
        let control = Arc::new(Control::new());
        let book = fake.book.clone();
        let probe = queue.counter();
        let runner = StageRunner::<S, Item, Deliver, Fake>::new(
            queue,
            Deliver::default(),
            fake,
            S::CONFIG,
            control.clone(),
            Arc::new(StageCounters::new(S::NAME, S::CONFIG.nprocs, probe)),
            Arc::new(Pace::new(S::CONFIG.nprocs)),
            Arc::default(),
        );
        Self {
            input,
            control,
            book,
            runner: tokio::spawn(runner.run()),
        }
    }

    /// Queues `count` tasks at once (the runner sees them all when it next runs).
    fn submit(&self, count: usize) -> Vec<Answer> {
        (0..count)
            .map(|n| {
                let (reply, answer) = oneshot::channel();
                let task = Owned::new(Item { n: n as u64 });
                let envelope = Envelope::new(
                    task,
                    reply,
                    Duration::from_secs(60),
                    0,
                    tracing::Span::none(),
                    tokio::time::Instant::now(),
                );
                self.input.try_send(0, envelope).unwrap();
                answer
            })
            .collect()
    }

    /// Runs one task through, so that the stage's pace is measured.
    async fn warm_up(&self) {
        wait(self.submit(1)).await;
    }

    /// The calls made since the last look.
    fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.book.lock().unwrap().calls)
    }

    async fn stop(self) {
        drop(self.input);
        self.runner.await.unwrap();
    }
}

async fn wait(answers: Vec<Answer>) {
    for answer in answers {
        answer.await.unwrap().unwrap();
    }
}

fn sizes(calls: &[Call]) -> Vec<usize> {
    calls.iter().map(|call| call.tasks).collect()
}

#[tokio::test(start_paused = true)]
async fn an_unmeasured_stage_sends_single_tasks_then_runs_up_to_the_cap() {
    let harness = Harness::start::<OneWorker>(Fake::new(Duration::from_micros(10), 1));
    wait(harness.submit(200)).await;
    let calls = harness.calls();
    assert_eq!(calls[0].tasks, 1, "nothing measured yet: one task");
    // 2 ms of budget at 10 us a task would be 200; a run is capped at MAX_RUN.
    assert_eq!(calls[1].tasks, crate::stage::MAX_RUN, "{:?}", sizes(&calls));
    assert_eq!(calls.iter().map(|c| c.tasks).sum::<usize>(), 200);
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_stage_gets_runs_that_fit_the_budget() {
    let harness = Harness::start::<OneWorker>(Fake::new(Duration::from_millis(1), 1));
    harness.warm_up().await;
    harness.calls();
    wait(harness.submit(20)).await;
    let calls = harness.calls();
    // 2 ms of budget at 1 ms a task: runs of 2.
    assert!(
        calls.iter().all(|call| call.tasks <= 2),
        "{:?}",
        sizes(&calls)
    );
    assert_eq!(calls[0].tasks, 2, "{:?}", sizes(&calls));
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_takes_only_a_fair_share_of_the_queue() {
    let harness = Harness::start::<TwoWorkers>(Fake::new(Duration::from_micros(10), 1));
    harness.warm_up().await;
    harness.calls();
    wait(harness.submit(8)).await;
    let calls = harness.calls();
    // Eight queued for two workers: the first run takes half, leaving work for the
    // other worker.
    assert_eq!(calls[0].tasks, 4, "{:?}", sizes(&calls));
    assert_ne!(calls[0].worker, calls[1].worker, "{calls:?}");
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn only_a_mid_paced_stage_queues_a_dispatch_behind_another() {
    for (per_task, pipelines) in [
        (Duration::from_micros(10), false),
        (Duration::from_micros(100), true),
        (Duration::from_millis(5), false),
    ] {
        let harness = Harness::start::<OneWorker>(Fake::new(per_task, 2));
        harness.warm_up().await;
        harness.calls();
        wait(harness.submit(40)).await;
        let calls = harness.calls();
        let most_held = calls.iter().map(|call| call.held).max().unwrap();
        assert_eq!(
            most_held > 1,
            pipelines,
            "{per_task:?} a task: a worker held {most_held} dispatches at once"
        );
        harness.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_batching_stage_queues_only_a_full_batch_behind_another() {
    for (per_task, tasks, pipelines) in [
        // A full batch queued behind, at 200 us a batch: the worker never waits.
        (Duration::from_micros(50), 40, true),
        // After the first batch, two tasks are left: they wait in the queue (and could
        // be joined by more) rather than leave as a partial batch behind the first.
        (Duration::from_micros(50), 6, false),
        // 8 us a batch: the parent is the bottleneck, a second dispatch only costs it.
        (Duration::from_micros(2), 40, false),
        // 20 ms a batch: too long a wait behind one.
        (Duration::from_millis(5), 40, false),
    ] {
        let harness = Harness::start::<BatchesOfFour>(Fake::new(per_task, 2));
        harness.warm_up().await;
        harness.calls();
        wait(harness.submit(tasks)).await;
        let calls = harness.calls();
        let most_held = calls.iter().map(|call| call.held).max().unwrap();
        assert_eq!(
            most_held > 1,
            pipelines,
            "{per_task:?} a task, {tasks} tasks: a worker held {most_held} dispatches at once"
        );
        if pipelines {
            assert!(
                calls.iter().all(|call| call.tasks == 4),
                "every batch full: {:?}",
                sizes(&calls)
            );
        }
        harness.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_fast_stage_is_waited_for_actively_when_alone_and_looked_for_under_load() {
    for (per_task, alone, loaded) in [
        (Duration::from_micros(10), Wait::Spin, Wait::Look),
        (Duration::from_micros(500), Wait::Sleep, Wait::Sleep),
    ] {
        let harness = Harness::start::<OneWorker>(Fake::new(per_task, 1));
        for _ in 0..3 {
            let _in_flight = harness.control.enter();
            harness.warm_up().await;
        }
        let calls = harness.calls();
        assert_eq!(calls[0].wait, Wait::Sleep, "nothing measured yet: asleep");
        assert!(
            calls[1..].iter().all(|call| call.wait == alone),
            "{per_task:?} a task: {calls:?}"
        );
        // Under load (two requests in flight), never actively.
        let under_load = {
            let _first = harness.control.enter();
            let _second = harness.control.enter();
            harness.warm_up().await;
            harness.calls()[0]
        };
        assert_eq!(
            under_load.wait, loaded,
            "{per_task:?} a task: {under_load:?}"
        );
        harness.stop().await;
    }
}
