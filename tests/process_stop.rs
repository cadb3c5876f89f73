//! A stop that does not wait ends the workers, even one stuck in its handler: its
//! callers were answered, so nothing waits for that batch any more. It can cut short a
//! graceful stop that waits on such a worker (the usual shutdown: graceful within a time
//! limit, then not). And a flow dropped without a stop ends such a worker too.

use std::os::fd::OwnedFd;
use std::time::Duration;

use aqueduct::{Error, Flow, FlowState};

mod graph_common;
mod worker_exit;
use graph_common::Gate;
use worker_exit::{exits_within, pidfd};

#[aqueduct::task]
struct Job {
    id: u64,
}

/// Task 0 never finishes (no `exec_timeout_ms`: nothing ends it but the stop).
#[aqueduct::handler]
fn stuck_on_zero(job: &mut Job) {
    if job.id == 0 {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Longer than the close grace the stop gives a worker before it kills it (2 s).
const WORKER_GONE_MS: i32 = 10_000;

/// Starts the flow, gets its one worker stuck on task 0, and returns the flow with that
/// worker's pidfd.
async fn flow_with_a_stuck_worker() -> (Flow<Job, Job>, OwnedFd) {
    let flow = aqueduct::flow!(stuck_on_zero).start().await.unwrap();
    assert_eq!(flow.process(Job { id: 1 }).await.unwrap().id, 1);
    let worker = pidfd(flow.stats()[0].worker_pids[0]);
    let short = Duration::from_millis(200);
    assert!(matches!(
        flow.process_timeout(Job { id: 0 }, short).await,
        Err(Error::Timeout { .. })
    ));
    // The stage's only worker does not answer another task: it is stuck on task 0.
    assert!(matches!(
        flow.process_timeout(Job { id: 2 }, short).await,
        Err(Error::Timeout { .. })
    ));
    assert!(!exits_within(&worker, 0), "the worker is alive");
    (flow, worker)
}

/// Asserts that `worker` exits within [`WORKER_GONE_MS`]; `after` says after what.
fn assert_gone(worker: &OwnedFd, after: &str) {
    assert!(
        exits_within(worker, WORKER_GONE_MS),
        "the stuck worker outlived {after}"
    );
}

/// Starts a graceful stop of `flow`, then, once it is under way, one that does not wait;
/// whether the graceful stop returned within [`WORKER_GONE_MS`].
async fn graceful_stop_cut_short(flow: &Flow<Job, Job>) -> bool {
    let graceful = tokio::spawn({
        let flow = flow.clone();
        async move { flow.stop(true).await }
    });
    while flow.state() == FlowState::Running {
        tokio::task::yield_now().await;
    }
    flow.stop(false).await;
    tokio::time::timeout(Duration::from_millis(WORKER_GONE_MS as u64), graceful)
        .await
        .is_ok_and(|joined| joined.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_does_not_wait_ends_a_worker_stuck_in_its_handler() {
    let (flow, worker) = flow_with_a_stuck_worker().await;
    flow.stop(false).await;
    assert_gone(&worker, "the stop");
    assert!(matches!(
        flow.process(Job { id: 3 }).await,
        Err(Error::NotRunning)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_does_not_wait_cuts_short_a_graceful_one() {
    let (flow, worker) = flow_with_a_stuck_worker().await;
    assert!(
        graceful_stop_cut_short(&flow).await,
        "the graceful stop still waits on the stuck worker"
    );
    assert_eq!(flow.state(), FlowState::Stopped);
    assert_gone(&worker, "the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_dropped_without_a_stop_ends_a_worker_stuck_in_its_handler() {
    let (flow, worker) = flow_with_a_stuck_worker().await;
    drop(flow);
    assert_gone(&worker, "its flow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_does_not_wait_after_a_graceful_one_given_up_stops_the_flow() {
    let (flow, worker) = flow_with_a_stuck_worker().await;
    // Given up on: the stuck worker holds it, and its future is dropped.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), flow.stop(true))
            .await
            .is_err(),
        "the graceful stop waits on the stuck worker"
    );
    assert_eq!(flow.state(), FlowState::Stopping);
    flow.stop(false).await;
    assert_eq!(flow.state(), FlowState::Stopped);
    assert_gone(&worker, "the stop");
}

/// Opened by the test once it has asserted: the thread stage's task 0 waits at it.
static RELEASE: Gate = Gate::new();

/// Task 0 waits until the test releases it: a worker thread stuck in a batch (threads
/// cannot be killed), released only so that the test's runtime can end.
#[aqueduct::handler(isolation = "thread")]
fn thread_stuck_on_zero(job: &mut Job) {
    if job.id == 0 {
        RELEASE.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_does_not_wait_cuts_short_a_graceful_one_held_by_a_worker_thread() {
    let flow = aqueduct::flow!(thread_stuck_on_zero).start().await.unwrap();
    let short = Duration::from_millis(200);
    assert!(matches!(
        flow.process_timeout(Job { id: 0 }, short).await,
        Err(Error::Timeout { .. })
    ));
    let cut_short = graceful_stop_cut_short(&flow).await;
    RELEASE.open();
    assert!(
        cut_short,
        "the graceful stop still waits on the stuck worker thread"
    );
    assert_eq!(flow.state(), FlowState::Stopped);
}
