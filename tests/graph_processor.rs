//! Processors on their own: feeding, streaming results, cancelling, stopping, the
//! separate/sequential modes, and the blocking API from plain functions.
//!
//! Handlers here run on worker threads (`isolation = "thread"`) so tests can hold them at
//! gates; processor logic is above the executor. `graph_run.rs` and `graph_shm.rs` run
//! their graphs on worker processes, the default.

mod graph_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aqueduct::graph::{Mode, Processor, ProcessorState};
use aqueduct::Error;
use graph_common::{Gate, Latch, Record, LIMIT};

#[aqueduct::task]
#[derive(Debug, PartialEq)]
struct Num {
    n: u64,
}

fn nums(range: std::ops::Range<u64>) -> impl Iterator<Item = Num> {
    range.map(|n| Num { n })
}

#[aqueduct::handler(isolation = "thread", nprocs = 2)]
fn double(item: &mut Num) {
    item.n *= 2;
}

#[aqueduct::handler(isolation = "thread", nprocs = 2)]
fn odd_fails(item: &mut Num) -> Result<(), String> {
    if item.n % 2 == 1 {
        return Err(format!("{} is odd", item.n));
    }
    item.n += 1;
    Ok(())
}

/// Bounds a test so that a bug shows as a failure, not a hang.
async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("the test did not finish in time")
}

#[tokio::test]
async fn next_streams_every_result_then_ends() {
    bounded(async {
        let doubler = Processor::of::<double>().start().await.unwrap();
        assert_eq!(doubler.name(), "double");
        assert_eq!(doubler.mode(), Mode::Separate);
        let ids = doubler.feed_all(nums(0..50)).unwrap();
        assert_eq!(ids.len(), 50);

        let mut seen = Vec::new();
        while let Some(done) = doubler.next().await {
            assert_eq!(done.output().unwrap().n, done.input().n * 2);
            assert_eq!(done.input().n, done.id().get());
            seen.push(done.id());
        }
        seen.sort();
        assert_eq!(seen, ids);

        let status = doubler.status();
        assert_eq!(
            (status.fed, status.ok, status.pending(), status.ready),
            (50, 50, 0, 0)
        );

        // Idle is not the end: feeding again brings results again.
        doubler.feed(Num { n: 7 }).unwrap();
        assert_eq!(doubler.next().await.unwrap().output().unwrap().n, 14);
        assert!(doubler.next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn failures_come_back_as_failed_handles() {
    bounded(async {
        let checker = Processor::of::<odd_fails>().start().await.unwrap();
        let results = checker.run(nums(0..10)).await.unwrap();
        assert_eq!(results.len(), 10);
        for (n, done) in (0..10).zip(&results) {
            assert_eq!(done.input().n, n, "results come in feed order");
            if n % 2 == 1 {
                assert!(done.is_failed() && !done.is_cancelled() && !done.is_ok());
                match done.error() {
                    Some(Error::Handler { stage, message }) => {
                        assert_eq!(*stage, "odd_fails");
                        assert_eq!(message, &format!("{n} is odd"));
                    }
                    other => panic!("expected a handler error, got {other:?}"),
                }
            } else {
                assert_eq!(done.result().unwrap().n, n + 1);
            }
        }
        let one = checker.run_one(Num { n: 4 }).await.unwrap();
        assert_eq!(one.into_result().unwrap().n, 5);
    })
    .await;
}

static CANCEL_GATE: Gate = Gate::new();
static CANCEL_ENTERED: Latch = Latch::new();
static CANCEL_SEEN: Record = Record::new();

#[aqueduct::handler(isolation = "thread")]
fn held_first(item: &mut Num) {
    CANCEL_SEEN.push(item.n);
    CANCEL_ENTERED.arrive();
    if item.n == 0 {
        CANCEL_GATE.wait();
    }
    item.n += 100;
}

#[test]
fn cancelled_pending_inputs_never_reach_the_handler() {
    let held = Processor::of::<held_first>().start_blocking().unwrap();
    let ids = held.feed_all(nums(0..6)).unwrap();
    // Input 0 is in the handler; 1..6 wait (in the flow's queue or the processor's).
    assert!(CANCEL_ENTERED.wait_for(1));
    assert!(held.take_ready().is_empty(), "nothing has finished yet");
    assert!(held.cancel(ids[2]));
    assert!(held.cancel(ids[4]));
    assert!(!held.cancel(ids[2]), "already cancelled");
    let status = held.status();
    assert_eq!(
        (status.cancelled, status.pending(), status.ready),
        (2, 4, 2)
    );

    CANCEL_GATE.open();
    let mut results: Vec<_> = held.results_blocking().unwrap().collect();
    assert_eq!(results.len(), 6);
    results.sort_by_key(|done| done.id());
    for (n, done) in (0..6).zip(&results) {
        assert_eq!(done.input().n, n);
        if n == 2 || n == 4 {
            assert!(done.is_cancelled());
            assert_eq!(done.error(), Some(&Error::Cancelled));
        } else {
            assert_eq!(done.output().unwrap().n, n + 100);
        }
    }
    assert!(!held.cancel(ids[5]), "finished inputs cannot be cancelled");
    // A graceful stop drains the flow: an input that was going to reach the handler has
    // done so by then. Inputs enter the flow in feed order, so one worker sees them so.
    held.stop_blocking(true).unwrap();
    assert_eq!(CANCEL_SEEN.get(), vec![0, 1, 3, 5]);
}

static KILL_GATE: Gate = Gate::new();
static KILL_ENTERED: Latch = Latch::new();
static KILL_SEEN: Record = Record::new();

#[aqueduct::handler(isolation = "thread")]
fn held_kill(item: &mut Num) {
    KILL_SEEN.push(item.n);
    KILL_ENTERED.arrive();
    KILL_GATE.wait();
}

#[test]
fn cancel_all_cancels_running_and_waiting_inputs() {
    let held = Processor::of::<held_kill>().start_blocking().unwrap();
    held.feed_all(nums(0..4)).unwrap();
    assert!(KILL_ENTERED.wait_for(1));
    assert_eq!(held.cancel_all(), 4);
    let results: Vec<_> = held.results_blocking().unwrap().collect();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|done| done.is_cancelled()));

    KILL_GATE.open();
    // A graceful stop waits for the flow to drain, so anything that was going to reach
    // the handler has by now.
    held.stop_blocking(true).unwrap();
    assert_eq!(held.state(), ProcessorState::Stopped);
    assert_eq!(
        KILL_SEEN.get(),
        vec![0],
        "only the running input reached the handler"
    );
    assert_eq!(held.feed(Num { n: 9 }), Err(Error::NotRunning));
}

graph_common::held_at_gate!(held_stop, STOP_GATE, STOP_ENTERED);

#[test]
fn kill_cancels_pending_inputs_and_graceful_stop_finishes_them() {
    let held = Processor::of::<held_stop>().start_blocking().unwrap();
    held.feed_all(nums(0..3)).unwrap();
    assert!(STOP_ENTERED.wait_for(1));
    held.stop_blocking(false).unwrap();
    let status = held.status();
    assert_eq!(
        (status.state, status.cancelled, status.pending()),
        (ProcessorState::Stopped, 3, 0)
    );
    assert!(held.take_ready().iter().all(|done| done.is_cancelled()));
    STOP_GATE.open();

    let doubler = Processor::of::<double>().start_blocking().unwrap();
    doubler.feed_all(nums(0..20)).unwrap();
    doubler.stop_blocking(true).unwrap();
    let status = doubler.status();
    assert_eq!(
        (status.state, status.ok, status.ready),
        (ProcessorState::Stopped, 20, 20)
    );
    assert_eq!(doubler.take_ready().len(), 20);
    assert_eq!(doubler.feed(Num { n: 1 }), Err(Error::NotRunning));
}

graph_common::held_at_gate!(held_cut, CUT_GATE, CUT_ENTERED);

#[test]
fn kill_cuts_short_a_graceful_stop_under_way() {
    let held = Processor::of::<held_cut>().start_blocking().unwrap();
    held.feed_all(nums(0..3)).unwrap();
    assert!(CUT_ENTERED.wait_for(1));
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            held.stop_blocking(true).unwrap();
            stopped_tx.send(()).unwrap();
        });
        while held.state() == ProcessorState::Running {
            std::thread::yield_now();
        }
        held.stop_blocking(false).unwrap();
        let cut_short = stopped.recv_timeout(LIMIT);
        CUT_GATE.open();
        cut_short.expect("the graceful stop still waits for the held input");
    });
    let status = held.status();
    assert_eq!(
        (status.state, status.cancelled, status.pending()),
        (ProcessorState::Stopped, 3, 0)
    );
}

static SEQ_ORDER: Record = Record::new();
static SEQ_ACTIVE: AtomicU64 = AtomicU64::new(0);
static SEQ_MAX_ACTIVE: AtomicU64 = AtomicU64::new(0);

#[aqueduct::handler(isolation = "thread", nprocs = 4)]
fn recorded(item: &mut Num) {
    let active = SEQ_ACTIVE.fetch_add(1, Ordering::SeqCst) + 1;
    SEQ_MAX_ACTIVE.fetch_max(active, Ordering::SeqCst);
    SEQ_ORDER.push(item.n);
    item.n = aqueduct_suite::fib(18 + item.n % 3);
    SEQ_ACTIVE.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_processor_runs_one_at_a_time_in_feed_order() {
    bounded(async {
        let seq = Processor::of::<recorded>()
            .sequential()
            .start()
            .await
            .unwrap();
        assert_eq!(seq.mode(), Mode::Sequential);
        // Fed in two bursts, the second while the first is running.
        seq.feed_all(nums(0..30)).unwrap();
        let first = seq.next().await.unwrap();
        seq.feed_all(nums(30..60)).unwrap();
        let mut order = vec![first.input().n];
        while let Some(done) = seq.next().await {
            assert!(done.is_ok());
            order.push(done.input().n);
        }
        let expected: Vec<u64> = (0..60).collect();
        assert_eq!(order, expected, "results in feed order");
        assert_eq!(SEQ_ORDER.get(), expected, "handler calls in feed order");
        assert_eq!(
            SEQ_MAX_ACTIVE.load(Ordering::SeqCst),
            1,
            "never two at once"
        );
    })
    .await;
}

static MEETING: Latch = Latch::new();

/// Succeeds only if three inputs are in the handler at the same time.
#[aqueduct::handler(isolation = "thread", nprocs = 3)]
fn meet(item: &mut Num) -> Result<(), String> {
    MEETING.arrive();
    if MEETING.wait_for(3) {
        Ok(())
    } else {
        Err(format!("input {} ran alone", item.n))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processor_runs_inputs_in_parallel() {
    bounded(async {
        let separate = Processor::of::<meet>().start().await.unwrap();
        let results = separate.run(nums(0..3)).await.unwrap();
        assert!(results.iter().all(|done| done.is_ok()), "{results:?}");
    })
    .await;
}

#[test]
fn blocking_api_from_a_plain_function() {
    let doubler = Processor::of::<double>()
        .name("doubler")
        .max_in_flight(3)
        .timeout(Duration::from_secs(60))
        .start_blocking()
        .unwrap();
    assert_eq!(doubler.name(), "doubler");

    let results = doubler.run_blocking(nums(0..25)).unwrap();
    let outputs: Vec<u64> = results.iter().map(|d| d.output().unwrap().n).collect();
    assert_eq!(outputs, (0..25).map(|n| n * 2).collect::<Vec<_>>());

    let one = doubler.run_one_blocking(Num { n: 21 }).unwrap();
    assert_eq!(one.output().unwrap().n, 42);

    doubler.feed_all(nums(0..5)).unwrap();
    let mut streamed = 0;
    while let Some(done) = doubler.next_blocking().unwrap() {
        assert!(done.is_ok());
        streamed += 1;
    }
    assert_eq!(streamed, 5);
    doubler.stop_blocking(true).unwrap();
}

#[tokio::test]
async fn blocking_calls_inside_async_code_are_refused() {
    let doubler = Processor::of::<double>().start().await.unwrap();
    assert_eq!(
        doubler.run_blocking(nums(0..3)).unwrap_err(),
        Error::BlockingInAsync
    );
    assert_eq!(doubler.next_blocking().unwrap_err(), Error::BlockingInAsync);
    assert!(doubler.results_blocking().is_err());
    assert_eq!(doubler.status().fed, 0, "nothing was fed");
}
