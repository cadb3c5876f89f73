//! Priority lanes: a queued task of higher priority overtakes queued tasks of lower
//! priority at every stage, a lower lane is never starved, and a priority the flow has
//! no lane for is an error.
//!
//! The first stage's worker is held at a `Gate` while the test queues tasks, so what is
//! queued when it is released is exact.

use std::sync::Mutex;
use std::time::Duration;

use aqueduct::{Error, Flow};
use aqueduct_suite::{until, Gate};

const LIMIT: Duration = Duration::from_secs(10);

#[aqueduct::task]
struct Doc {
    id: u64,
}

/// Three stages; the first holds doc 0 at its gate; each records the order it sees docs
/// in. A batch timeout keeps them from pipelining (runs of tasks, and a second dispatch
/// waiting on the worker whose results may be delivered concurrently), so every batch
/// is one task.
macro_rules! three_stages {
    ($first:ident, $second:ident, $third:ident, $gate:ident, $seen:ident) => {
        static $gate: Gate = Gate::new();
        static $seen: [Mutex<Vec<u64>>; 3] = [const { Mutex::new(Vec::new()) }; 3];
        #[aqueduct::handler(isolation = "thread", queue_size = 32, batch_timeout_ms = 1)]
        fn $first(doc: &mut Doc) {
            if doc.id == 0 {
                $gate.wait();
            }
            $seen[0].lock().unwrap().push(doc.id);
        }
        #[aqueduct::handler(isolation = "thread", queue_size = 32, batch_timeout_ms = 1)]
        fn $second(doc: &mut Doc) {
            $seen[1].lock().unwrap().push(doc.id);
        }
        #[aqueduct::handler(isolation = "thread", queue_size = 32, batch_timeout_ms = 1)]
        fn $third(doc: &mut Doc) {
            $seen[2].lock().unwrap().push(doc.id);
        }
    };
}

/// Sends doc 0 (held at the gate), then `queued` as (id, priority), each once the one
/// before is queued at the first stage; opens the gate and returns the order in which
/// each stage saw the docs.
async fn run(
    flow: &Flow<Doc, Doc>,
    gate: &Gate,
    seen: &[Mutex<Vec<u64>>; 3],
    queued: &[(u64, usize)],
) -> [Vec<u64>; 3] {
    let mut calls = vec![spawn(flow, 0, 0)];
    until(LIMIT, || gate.waiting() == 1).await;
    for &(id, priority) in queued {
        calls.push(spawn(flow, id, priority));
        until(LIMIT, || flow.stats()[0].queued == calls.len() - 1).await;
    }
    gate.open();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    seen.each_ref().map(|stage| stage.lock().unwrap().clone())
}

fn spawn(
    flow: &Flow<Doc, Doc>,
    id: u64,
    priority: usize,
) -> tokio::task::JoinHandle<Result<u64, Error>> {
    let flow = flow.clone();
    tokio::spawn(async move {
        let out = flow
            .submit(Doc { id })
            .priority(priority)
            .timeout(LIMIT)
            .await?;
        Ok(out.id)
    })
}

fn position(order: &[u64], id: u64) -> usize {
    order.iter().position(|&seen| seen == id).unwrap()
}

three_stages!(urgent_a, urgent_b, urgent_c, URGENT_GATE, URGENT_SEEN);

#[tokio::test]
async fn a_high_priority_task_overtakes_queued_normal_ones_at_every_stage() {
    let flow = aqueduct::flow!(urgent_a -> urgent_b -> urgent_c)
        .priorities(2)
        .start()
        .await
        .unwrap();
    let stages = run(&flow, &URGENT_GATE, &URGENT_SEEN, &[(1, 0), (2, 0), (3, 1)]).await;
    assert_eq!(stages[0], [0, 3, 1, 2], "queued together behind doc 0");
    // Later stages receive 0, 3, 1, 2 in that order; doc 3 may also overtake doc 0
    // there if both wait in the same queue, and never falls behind a normal doc.
    for order in &stages[1..] {
        assert!(position(order, 3) < position(order, 1), "{stages:?}");
        assert!(position(order, 1) < position(order, 2), "{stages:?}");
    }
}

three_stages!(plain_a, plain_b, plain_c, PLAIN_GATE, PLAIN_SEEN);

#[tokio::test]
async fn at_equal_priority_tasks_keep_their_order() {
    let flow = aqueduct::flow!(plain_a -> plain_b -> plain_c)
        .priorities(2)
        .start()
        .await
        .unwrap();
    let stages = run(&flow, &PLAIN_GATE, &PLAIN_SEEN, &[(1, 0), (2, 0), (3, 0)]).await;
    assert_eq!(stages, [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]]);
}

three_stages!(fair_a, fair_b, fair_c, FAIR_GATE, FAIR_SEEN);

#[tokio::test]
async fn a_low_priority_task_is_not_starved_by_a_high_priority_backlog() {
    let flow = aqueduct::flow!(fair_a -> fair_b -> fair_c)
        .priorities(2)
        .start()
        .await
        .unwrap();
    // One low task, then 20 high ones behind it.
    let mut queued = vec![(100, 0)];
    queued.extend((1..=20).map(|id| (id, 1)));
    let stages = run(&flow, &FAIR_GATE, &FAIR_SEEN, &queued).await;
    // Doc 0, then 8 batches from the high lane while the low one waited, then it.
    assert_eq!(position(&stages[0], 100), 9, "{stages:?}");
}

#[aqueduct::handler]
fn in_a_process(doc: &mut Doc) {
    doc.id += 1;
}

#[tokio::test]
async fn priorities_work_with_worker_processes_and_are_checked() {
    let flow = aqueduct::flow!(in_a_process)
        .priorities(3)
        .start()
        .await
        .unwrap();
    assert_eq!(flow.priorities(), 3);
    for priority in 0..3 {
        let out = flow.submit(Doc { id: 1 }).priority(priority).await.unwrap();
        assert_eq!(out.id, 2);
    }
    assert_eq!(
        flow.submit(Doc { id: 1 }).priority(3).await.err(),
        Some(Error::InvalidPriority {
            priority: 3,
            lanes: 3
        })
    );
    let single = aqueduct::flow!(in_a_process).start().await.unwrap();
    assert!(matches!(
        single.submit(Doc { id: 1 }).priority(1).await,
        Err(Error::InvalidPriority {
            priority: 1,
            lanes: 1
        })
    ));
}

static GRAPH_GATE: Gate = Gate::new();
static GRAPH_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[aqueduct::handler(isolation = "thread")]
fn graph_stage(doc: &mut Doc) {
    if doc.id == 0 {
        GRAPH_GATE.wait();
    }
    GRAPH_SEEN.lock().unwrap().push(doc.id);
}

#[tokio::test]
async fn a_graph_processor_dispatches_its_highest_priority_input_first() {
    use aqueduct::graph::ProcessorBuilder;
    let processor =
        ProcessorBuilder::new(aqueduct::FlowBuilder::first::<graph_stage>().priorities(2))
            .max_in_flight(1)
            .start()
            .await
            .unwrap();
    processor.feed(Doc { id: 0 }).unwrap();
    until(LIMIT, || GRAPH_GATE.waiting() == 1).await;
    processor.feed(Doc { id: 1 }).unwrap();
    processor.feed(Doc { id: 2 }).unwrap();
    processor.feed_priority(Doc { id: 3 }, 1).unwrap();
    assert!(matches!(
        processor.feed_priority(Doc { id: 4 }, 2),
        Err(Error::InvalidPriority {
            priority: 2,
            lanes: 2
        })
    ));
    GRAPH_GATE.open();
    while processor.next().await.is_some() {}
    assert_eq!(*GRAPH_SEEN.lock().unwrap(), [0, 3, 1, 2]);
}

#[aqueduct::handler(isolation = "thread")]
fn plain(doc: &mut Doc) {
    doc.id += 1;
}

#[tokio::test]
async fn more_priority_lanes_than_a_flow_may_have_is_a_config_error() {
    for lanes in [257, usize::MAX] {
        let started = aqueduct::flow!(plain).priorities(lanes).start().await;
        match started {
            Err(Error::Config(message)) => assert!(message.contains("at most 256"), "{message}"),
            other => panic!("{lanes} lanes: {:?}", other.map(|_| ())),
        }
    }
    let flow = aqueduct::flow!(plain)
        .priorities(256)
        .start()
        .await
        .unwrap();
    let out = flow.submit(Doc { id: 1 }).priority(255).await.unwrap();
    assert_eq!(out.id, 2);
    flow.stop(true).await;
}
