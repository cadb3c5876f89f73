//! Graphs of processors: fan-out, fan-in, converters that drop and multiply items, failed
//! and cancelled results reaching converters, cycles (ending, and caught by the guard),
//! and the blocking run from a plain function.

mod graph_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aqueduct::graph::{Graph, Processor, Progress, ResultHandle};
use aqueduct::Error;
use graph_common::LIMIT;

#[aqueduct::task]
#[derive(Debug, PartialEq)]
struct Num {
    n: u64,
}

#[aqueduct::task]
#[derive(Debug, PartialEq)]
struct Tagged {
    n: u64,
    tag: u64,
}

fn nums(range: std::ops::Range<u64>) -> impl Iterator<Item = Num> {
    range.map(|n| Num { n })
}

#[aqueduct::handler(nprocs = 2, batch_size = 4)]
fn double(item: &mut Num) {
    item.n *= 2;
}

#[aqueduct::handler(nprocs = 2)]
fn tag(item: Num) -> Tagged {
    Tagged { n: item.n, tag: 0 }
}

#[aqueduct::handler]
fn store(_item: &mut Tagged) {}

#[aqueduct::handler(nprocs = 2)]
fn decrement(item: &mut Num) {
    item.n -= 1;
}

#[aqueduct::handler(nprocs = 2)]
fn third_fails(item: &mut Num) -> Result<(), String> {
    if item.n % 3 == 0 {
        return Err(format!("{} is a multiple of three", item.n));
    }
    Ok(())
}

async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("the test did not finish in time")
}

/// The output, as the next processor's input.
fn forward<In: aqueduct::Task, Out: aqueduct::Task>(done: &ResultHandle<In, Out>) -> Option<Out> {
    done.output_owned().ok()
}

#[tokio::test]
async fn adding_a_processor_twice_keeps_one_node() {
    let doubler = Processor::of::<double>().start().await.unwrap();
    let other = Processor::of::<double>().start().await.unwrap();
    let mut graph = Graph::new();
    for _ in 0..3 {
        graph.add(&doubler);
    }
    graph.add(&doubler.clone());
    assert_eq!(graph.len(), 1);
    graph.add(&other);
    assert_eq!(graph.len(), 2, "two processors of one stage are two nodes");
    assert!(graph.contains(&doubler) && graph.contains(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_into_two_processors_then_fan_in() {
    bounded(async {
        let source = Processor::of::<double>().start().await.unwrap();
        let left = Processor::of::<tag>().name("left").start().await.unwrap();
        let right = Processor::of::<tag>().name("right").start().await.unwrap();
        let sink = Processor::of::<store>().start().await.unwrap();

        let mut graph = Graph::new();
        graph
            .progress(Progress::SummaryOnly)
            .connect(&source, &left, forward)
            .connect(&source, &right, forward)
            .connect(&left, &sink, |done: &ResultHandle<Num, Tagged>| {
                done.output_owned().ok().map(|out| Tagged { tag: 1, ..out })
            })
            .connect(&right, &sink, |done: &ResultHandle<Num, Tagged>| {
                done.output_owned().ok().map(|out| Tagged { tag: 2, ..out })
            })
            .feed(&source, nums(0..100));
        let mut results = graph.run().await.unwrap();

        let counts: Vec<(String, u64)> = results
            .summaries()
            .iter()
            .map(|s| (s.name.clone(), s.inputs))
            .collect();
        let expected = [
            ("double", 100),
            ("left", 100),
            ("right", 100),
            ("store", 200),
        ];
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        assert_eq!(counts, expected);
        assert_eq!(results.handles(&left).len(), 100);

        let mut tags: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for done in results.take(&sink) {
            let out = done.output().unwrap();
            tags.entry(out.n).or_default().push(out.tag);
        }
        assert_eq!(tags.len(), 100);
        for (n, mut got) in tags {
            assert_eq!(n % 2, 0, "every item went through the doubler");
            got.sort();
            assert_eq!(
                got,
                vec![1, 2],
                "item {n} reached the sink along both branches"
            );
        }
        assert!(results.take(&sink).is_empty(), "taken already");
        let summary = results.summary(&source).unwrap();
        assert_eq!(
            summary.to_string(),
            "double: inputs=100 ok=100 failed=0 cancelled=0"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converters_drop_and_multiply_items() {
    bounded(async {
        let source = Processor::of::<double>().start().await.unwrap();
        let sink = Processor::of::<tag>().start().await.unwrap();
        let mut graph = Graph::new();
        // Input i becomes (i % 3) items: none, one or two.
        graph
            .progress(Progress::Silent)
            .connect(&source, &sink, |done: &ResultHandle<Num, Num>| {
                let n = done.output().map_or(0, |out| out.n);
                (0..(n / 2) % 3).map(move |k| Num { n: n * 10 + k })
            })
            .feed(&source, nums(0..30));
        let mut results = graph.run().await.unwrap();
        let mut got: Vec<u64> = results
            .take(&sink)
            .iter()
            .map(|done| done.output().unwrap().n)
            .collect();
        got.sort();
        let mut expected: Vec<u64> = (0..30)
            .flat_map(|i| (0..i % 3).map(move |k| i * 2 * 10 + k))
            .collect();
        expected.sort();
        assert_eq!(got, expected);
        assert_eq!(results.summary(&sink).unwrap().inputs, 30);
    })
    .await;
}

graph_common::held_at_gate!(held, GRAPH_GATE, GRAPH_ENTERED);

/// What a converter saw.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Ok(u64),
    Failed(u64),
    Cancelled(u64),
}

fn seen<In: aqueduct::Task, Out: aqueduct::Task>(
    log: &Arc<Mutex<Vec<Seen>>>,
    n: u64,
    done: &ResultHandle<In, Out>,
) {
    let entry = if done.is_ok() {
        Seen::Ok(n)
    } else if done.is_cancelled() {
        Seen::Cancelled(n)
    } else {
        Seen::Failed(n)
    };
    log.lock().unwrap().push(entry);
}

#[test]
fn failed_and_cancelled_results_reach_converters() {
    let checker = Processor::of::<third_fails>().start_blocking().unwrap();
    let gated = Processor::of::<held>().start_blocking().unwrap();
    let fallback = Processor::of::<double>()
        .name("fallback")
        .start_blocking()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));

    let mut graph = Graph::new();
    let checker_log = log.clone();
    let gated_log = log.clone();
    graph
        .progress(Progress::Silent)
        // Failures are sent on to the fallback: the converter sees them and reroutes.
        .connect(&checker, &fallback, move |done: &ResultHandle<Num, Num>| {
            seen(&checker_log, done.input().n, done);
            done.is_failed().then(|| done.input_owned().unwrap())
        })
        .connect(&gated, &fallback, move |done: &ResultHandle<Num, Num>| {
            seen(&gated_log, 100 + done.input().n, done);
            None
        })
        .feed(&checker, nums(1..13));
    // Fed directly rather than staged, so all four are pending before the run starts;
    // a run collects (and passes on) the results of inputs fed this way too.
    gated.feed_all(nums(0..4)).unwrap();

    let run = std::thread::spawn(move || {
        let results = graph.run_blocking();
        (graph, results)
    });
    // Input 0 of `gated` is in its handler; 1..4 wait. Cancel all four mid-run.
    assert!(GRAPH_ENTERED.wait_for(1));
    assert_eq!(gated.cancel_all(), 4);
    GRAPH_GATE.open();
    let (_graph, results) = run.join().unwrap();
    let results = results.unwrap();

    let mut log = log.lock().unwrap().clone();
    log.sort();
    let mut expected: Vec<Seen> = (1..13)
        .map(|n| {
            if n % 3 == 0 {
                Seen::Failed(n)
            } else {
                Seen::Ok(n)
            }
        })
        .chain((100..104).map(Seen::Cancelled))
        .collect();
    expected.sort();
    assert_eq!(log, expected);

    let rerouted: Vec<u64> = results
        .handles(&fallback)
        .iter()
        .map(|done| done.input().n)
        .collect();
    assert_eq!(rerouted.len(), 4);
    assert!(rerouted.iter().all(|n| n % 3 == 0));
    let gated_summary = results.summary(&gated).unwrap();
    assert_eq!((gated_summary.inputs, gated_summary.cancelled), (4, 4));
    let checker_summary = results.summary(&checker).unwrap();
    assert_eq!((checker_summary.ok, checker_summary.failed), (8, 4));
    // A graceful stop drains the flow: an input that was going to reach the handler
    // has done so by then.
    gated.stop_blocking(true).unwrap();
    assert_eq!(
        GRAPH_ENTERED.count(),
        1,
        "cancelled inputs never reached the handler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_runs_until_its_converters_stop_feeding() {
    bounded(async {
        // ping -> pong -> ping ..., each taking one off, until zero.
        let ping = Processor::of::<decrement>()
            .name("ping")
            .start()
            .await
            .unwrap();
        let pong = Processor::of::<decrement>()
            .name("pong")
            .start()
            .await
            .unwrap();
        let positive =
            |done: &ResultHandle<Num, Num>| done.output_owned().ok().filter(|out| out.n > 0);
        let mut graph = Graph::new();
        graph
            .progress(Progress::Silent)
            .connect(&ping, &pong, positive)
            .connect(&pong, &ping, positive)
            .feed(&ping, [Num { n: 5 }, Num { n: 8 }, Num { n: 1 }]);
        let results = graph.run().await.unwrap();
        // Values 5..1, 8..1 and 1 are each handled once, alternating ping and pong.
        let ping_in: u64 = results.handles(&ping).iter().map(|d| d.input().n).sum();
        let pong_in: u64 = results.handles(&pong).iter().map(|d| d.input().n).sum();
        assert_eq!(
            ping_in + pong_in,
            (1..=5).sum::<u64>() + (1..=8).sum::<u64>() + 1
        );
        assert_eq!(
            results.handles(&ping).len() + results.handles(&pong).len(),
            14
        );
        assert!(ping.status().pending() == 0 && pong.status().pending() == 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_cycle_is_stopped_by_the_round_guard() {
    bounded(async {
        let spin = Processor::of::<double>()
            .name("spin")
            .start()
            .await
            .unwrap();
        let mut graph = Graph::new();
        graph
            .progress(Progress::Silent)
            .max_rounds(25)
            .connect(&spin, &spin, |done: &ResultHandle<Num, Num>| {
                done.input_owned().ok()
            })
            .feed(&spin, nums(0..3));
        let error = graph.run().await.unwrap_err();
        assert_eq!(
            error,
            Error::EndlessCycle {
                edge: "spin -> spin".into(),
                limit: 25,
                what: "rounds"
            }
        );
        assert!(error.to_string().contains("spin -> spin"), "{error}");
        let status = spin.status();
        assert_eq!(
            (status.pending(), status.ready),
            (0, 0),
            "the run cleaned up"
        );
        // The processor still works, and the graph can run again.
        assert_eq!(
            spin.run_one(Num { n: 4 })
                .await
                .unwrap()
                .output()
                .unwrap()
                .n,
            8
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_edge_is_stopped_by_the_item_guard() {
    bounded(async {
        let grow = Processor::of::<double>()
            .name("grow")
            .start()
            .await
            .unwrap();
        let sink = Processor::of::<tag>().name("sink").start().await.unwrap();
        let mut graph = Graph::new();
        // Every result comes back twice: the number of items doubles every round.
        graph
            .progress(Progress::Silent)
            .max_edge_items(100)
            .connect(&grow, &sink, forward)
            .connect(&grow, &grow, |done: &ResultHandle<Num, Num>| {
                let again = done.input_owned().ok();
                again.into_iter().chain(done.input_owned().ok())
            })
            .feed(&grow, nums(0..1));
        match graph.run().await {
            Err(Error::EndlessCycle { edge, limit, what }) => {
                assert_eq!((edge.as_str(), limit, what), ("grow -> grow", 100, "items"));
            }
            other => panic!("expected the item guard to trip, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_runs_again_with_new_inputs() {
    bounded(async {
        let source = Processor::of::<double>().start().await.unwrap();
        let sink = Processor::of::<tag>().start().await.unwrap();
        let mut graph = Graph::new();
        graph
            .progress(Progress::Silent)
            .connect(&source, &sink, forward);
        graph.feed(&source, nums(0..10));
        assert_eq!(graph.run().await.unwrap().handles(&sink).len(), 10);
        graph.feed(&source, nums(0..3));
        let second = graph.run().await.unwrap();
        assert_eq!(
            second.summary(&sink).unwrap().inputs,
            3,
            "counts are per run"
        );
        assert_eq!(second.handles(&source).len(), 3);
    })
    .await;
}

#[test]
fn blocking_graph_run_from_a_plain_function() {
    let source = Processor::of::<double>().start_blocking().unwrap();
    let sink = Processor::of::<tag>()
        .sequential()
        .start_blocking()
        .unwrap();
    let mut graph = Graph::new();
    graph
        .progress(Progress::Silent)
        .connect(&source, &sink, forward)
        .feed(&source, nums(0..40));
    let results = graph.run_blocking().unwrap();
    let mut outputs: Vec<u64> = results
        .handles(&sink)
        .iter()
        .map(|done| done.output().unwrap().n)
        .collect();
    outputs.sort();
    assert_eq!(outputs, (0..40).map(|n| n * 2).collect::<Vec<_>>());
    assert_eq!(results.to_string().lines().count(), 2);
}
