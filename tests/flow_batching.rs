//! Batching and admission: when batches flush, and which tasks never reach the handler.
//! Workers are held inside their handler with a `Gate`, so queue contents are exact.
//! (The batch timer itself is also unit-tested with tokio's paused clock in
//! `aqueduct/src/flow/batcher.rs`.)
//!
//! These stages run on worker threads (`isolation = "thread"`) so the test can watch the
//! handler through statics and gates; batching and admission happen in the runner, above
//! the executor, and are the same for worker processes.

use std::sync::Mutex;
use std::time::Duration;

use aqueduct::Error;
use aqueduct_suite::{until, Gate};

const LIMIT: Duration = Duration::from_secs(10);

#[aqueduct::task]
struct Job {
    id: u64,
}

/// Records each batch's ids; a job with id 0 waits at the test's gate first.
fn record(batches: &Mutex<Vec<Vec<u64>>>, gate: &Gate, jobs: &[Job]) {
    if jobs.iter().any(|j| j.id == 0) {
        gate.wait();
    }
    batches
        .lock()
        .unwrap()
        .push(jobs.iter().map(|j| j.id).collect());
}

macro_rules! recording_stage {
    ($name:ident, $batches:ident, $gate:ident, $($arg:tt)*) => {
        static $batches: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());
        static $gate: Gate = Gate::new();
        #[aqueduct::handler(isolation = "thread", $($arg)*)]
        fn $name(jobs: &mut [Job]) {
            record(&$batches, &$gate, jobs);
        }
    };
}

recording_stage!(
    full_batches,
    FULL,
    FULL_GATE,
    batch_size = 4,
    batch_timeout_ms = 60000
);

#[tokio::test]
async fn a_full_batch_flushes_at_once_without_waiting_for_its_timeout() {
    // The batch timeout (60 s) is far beyond the task timeout (5 s): only flushing when
    // full lets these tasks finish.
    let flow = aqueduct::flow!(full_batches).start().await.unwrap();
    for call in submit(&flow, 1..=8) {
        call.await.unwrap().unwrap();
    }
    let mut batches = FULL.lock().unwrap().clone();
    batches.iter_mut().for_each(|b| b.sort());
    assert_eq!(batches, vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
}

recording_stage!(
    timed_batches,
    TIMED,
    TIMED_GATE,
    batch_size = 100,
    batch_timeout_ms = 30
);

#[tokio::test]
async fn a_partial_batch_flushes_when_its_timeout_passes() {
    let flow = aqueduct::flow!(timed_batches).start().await.unwrap();
    for call in submit(&flow, 1..=3) {
        call.await.unwrap().unwrap();
    }
    let batches = TIMED.lock().unwrap().clone();
    assert_eq!(
        batches.len(),
        1,
        "one batch of everything that arrived within 30 ms: {batches:?}"
    );
    assert_eq!(batches[0].len(), 3);
}

recording_stage!(dynamic_batches, DYNAMIC, DYNAMIC_GATE, batch_size = 4);

#[tokio::test]
async fn zero_timeout_takes_what_is_queued_when_a_worker_frees_up() {
    let flow = aqueduct::flow!(dynamic_batches).start().await.unwrap();
    let blocker = submit(&flow, [0]).remove(0);
    until(LIMIT, || DYNAMIC_GATE.waiting() == 1).await;
    let queued = submit(&flow, 1..=6);
    until(LIMIT, || flow.stats()[0].queued == 6).await;
    DYNAMIC_GATE.open();
    blocker.await.unwrap().unwrap();
    for call in queued {
        call.await.unwrap().unwrap();
    }
    let sizes: Vec<usize> = DYNAMIC.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        vec![1, 4, 2],
        "a lone task runs at once; then full batches of what queued"
    );
}

recording_stage!(expiring, EXPIRED, EXPIRED_GATE, batch_size = 1);

#[tokio::test]
async fn expired_tasks_never_reach_the_handler() {
    let flow = aqueduct::flow!(expiring).start().await.unwrap();
    let blocker = submit(&flow, [0]).remove(0);
    until(LIMIT, || EXPIRED_GATE.waiting() == 1).await;
    let late = flow
        .process_timeout(Job { id: 7 }, Duration::from_millis(30))
        .await;
    assert_eq!(
        late.err(),
        Some(Error::Timeout {
            after: Duration::from_millis(30)
        })
    );
    EXPIRED_GATE.open();
    blocker.await.unwrap().unwrap();
    flow.process(Job { id: 8 }).await.unwrap();
    assert_eq!(
        *EXPIRED.lock().unwrap(),
        vec![vec![0], vec![8]],
        "task 7 expired in the queue and was skipped"
    );
    assert_eq!(flow.stats()[0].abandoned, 1);
}

recording_stage!(cancelling, CANCELLED, CANCELLED_GATE, batch_size = 1);

#[tokio::test]
async fn tasks_whose_caller_went_away_never_reach_the_handler() {
    let flow = aqueduct::flow!(cancelling).start().await.unwrap();
    let blocker = submit(&flow, [0]).remove(0);
    until(LIMIT, || CANCELLED_GATE.waiting() == 1).await;
    let abandoned = submit(&flow, [9]).remove(0);
    until(LIMIT, || flow.stats()[0].queued == 1).await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    CANCELLED_GATE.open();
    blocker.await.unwrap().unwrap();
    flow.process(Job { id: 10 }).await.unwrap();
    assert_eq!(*CANCELLED.lock().unwrap(), vec![vec![0], vec![10]]);
}

recording_stage!(
    bounded,
    BOUNDED,
    BOUNDED_GATE,
    batch_size = 1,
    queue_size = 2
);

#[tokio::test]
async fn a_full_queue_makes_process_wait_then_report_overload() {
    let flow = aqueduct::flow!(bounded).start().await.unwrap();
    let blocker = submit(&flow, [0]).remove(0);
    until(LIMIT, || BOUNDED_GATE.waiting() == 1).await;
    let waiting = submit(&flow, 1..=2);
    until(LIMIT, || flow.stats()[0].queued == 2).await;
    let refused = flow
        .process_timeout(Job { id: 3 }, Duration::from_millis(20))
        .await;
    assert_eq!(
        refused.err(),
        Some(Error::Overloaded {
            stage: "bounded",
            waited: Duration::from_millis(20)
        })
    );
    BOUNDED_GATE.open();
    blocker.await.unwrap().unwrap();
    for call in waiting {
        call.await.unwrap().unwrap();
    }
    let seen: Vec<u64> = BOUNDED.lock().unwrap().iter().flatten().copied().collect();
    assert!(!seen.contains(&3), "the refused task never ran");
}

/// Submits one job per id, each from its own task, so they are all in flight at once.
fn submit(
    flow: &aqueduct::Flow<Job, Job>,
    ids: impl IntoIterator<Item = u64>,
) -> Vec<tokio::task::JoinHandle<Result<(), Error>>> {
    ids.into_iter()
        .map(|id| {
            let flow = flow.clone();
            tokio::spawn(async move { flow.process(Job { id }).await.map(|_| ()) })
        })
        .collect()
}
