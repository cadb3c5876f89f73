//! Poison isolation: when a worker process dies while running a batch, its tasks run
//! again one by one on fresh workers, so only the task that kills its worker fails
//! (`crash_retry`, on by default); a task lost twice is reported, never retried again.
//!
//! Executions are counted per task id (`execution_log`), so a task run more often than
//! the retry policy allows is caught.

use std::time::Duration;

use aqueduct::{Error, ShmStr};

mod execution_log;

#[aqueduct::task]
#[derive(Debug)]
struct Shot {
    id: u64,
    /// Non-zero: the worker aborts on this task, as a segfault in a C library would.
    poison: u64,
    squared: u64,
    /// File that records every execution (task id per line).
    log: ShmStr,
}

/// Both stages' work: record each execution, die on a poison task, square the rest.
fn square_all(shots: &mut [Shot]) {
    for shot in shots.iter_mut() {
        execution_log::record(&shot.log.view().unwrap(), shot.id);
        if shot.poison != 0 {
            std::process::abort();
        }
        shot.squared = shot.id * shot.id;
    }
}

#[aqueduct::handler(batch_size = 8, batch_timeout_ms = 20, nprocs = 2)]
fn square(shots: &mut [Shot]) {
    square_all(shots);
}

/// Tasks each test sends, and which of them are poison.
const TASKS: u64 = 400;

fn poison(id: u64) -> bool {
    id % 40 == 17
}

type Call = tokio::task::JoinHandle<Result<aqueduct::Owned<Shot>, Error>>;

/// Sends tasks `0..count` concurrently, those for which `poison` holds poisoned.
fn submit(
    flow: &aqueduct::Flow<Shot, Shot>,
    log: &std::path::Path,
    count: u64,
    poison: fn(u64) -> bool,
) -> Vec<Call> {
    (0..count)
        .map(|id| {
            let flow = flow.clone();
            let log = ShmStr::new(log.to_str().unwrap()).unwrap();
            tokio::spawn(async move {
                let shot = Shot {
                    id,
                    poison: poison(id) as u64,
                    squared: 0,
                    log,
                };
                flow.process(shot).await
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_poison_task_fails_and_no_task_runs_more_than_twice() {
    let log = execution_log::fresh("poison");
    let flow = aqueduct::flow!(square)
        .timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let calls = submit(&flow, &log, TASKS, poison);
    for (id, call) in (0..TASKS).zip(calls) {
        match call.await.unwrap() {
            Ok(out) => {
                assert!(!poison(id), "poison task {id} came back as a success");
                assert_eq!(out.squared, id * id);
            }
            Err(Error::WorkerCrashed {
                stage: "square", ..
            }) => {
                assert!(poison(id), "task {id} failed with its poison batch-mate")
            }
            Err(other) => panic!("task {id}: unexpected error {other}"),
        }
    }
    let stats = flow.stats();
    flow.stop(true).await;
    let poisoned = (0..TASKS).filter(|&id| poison(id)).count();
    // Each poison task kills a worker alone, and in its batch unless another poison
    // task shared that batch.
    let restarts = stats[0].restarts as usize;
    assert!(
        (poisoned..=2 * poisoned).contains(&restarts),
        "{restarts} restarts"
    );
    let counts = execution_log::counts(&log);
    for id in 0..TASKS {
        let runs = counts.get(&id).copied().unwrap_or(0);
        assert!(
            (1..=2).contains(&runs),
            "task {id} ran {runs} times; at most twice (once more after its worker was lost)"
        );
        // A poison task runs once in its batch (unless another poison task before it in
        // the same batch killed the worker first) and once alone.
        if poison(id) {
            assert!(runs >= 1, "poison task {id} failed without running");
        }
    }
    let _ = std::fs::remove_file(&log);
}

#[aqueduct::handler(batch_size = 8, batch_timeout_ms = 20, nprocs = 2, crash_retry = false)]
fn square_once(shots: &mut [Shot]) {
    square_all(shots);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_crash_retry_no_task_ever_runs_twice() {
    let log = execution_log::fresh("once");
    let flow = aqueduct::flow!(square_once)
        .timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let calls = submit(&flow, &log, TASKS, poison);
    let mut crashed = 0;
    for (id, call) in (0..TASKS).zip(calls) {
        match call.await.unwrap() {
            Ok(out) => assert_eq!(out.squared, id * id),
            Err(Error::WorkerCrashed { .. }) => crashed += 1,
            Err(other) => panic!("task {id}: unexpected error {other}"),
        }
    }
    flow.stop(true).await;
    assert!(
        crashed >= 10,
        "every poison task fails, with its batch-mates"
    );
    for (id, runs) in execution_log::counts(&log) {
        assert_eq!(runs, 1, "task {id} ran {runs} times");
    }
    let _ = std::fs::remove_file(&log);
}
