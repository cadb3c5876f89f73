//! A fast stage of single-task batches keeps a second dispatch waiting on each worker
//! process, so the worker goes from one request to the next without waiting for the
//! parent. These tests load such stages hard enough that the second seat is in use and
//! check what pipelining could break: blocks a worker made for one answer must survive
//! while it already runs the next request; a worker killed with a dispatch queued
//! behind its current one loses nothing (the queued dispatch runs on the replacement);
//! and one worker still runs tasks in the order they were fed. Large tasks, which the
//! worker answers call by call as the results come, still come back each with its own.

use aqueduct::{Error, ShmBytes};
use aqueduct_suite::call_each;

#[aqueduct::task]
#[derive(Debug)]
struct Stamp {
    id: u64,
    /// Made in the worker: `len_for(id)` bytes, each `byte_for(id, i)`.
    made: ShmBytes,
    pid: u64,
}

fn len_for(id: u64) -> usize {
    1000 + (id % 97) as usize * 40
}

fn byte_for(id: u64, i: usize) -> u8 {
    (id as usize * 31 + i) as u8
}

fn stamp(id: u64) -> Stamp {
    Stamp {
        id,
        made: ShmBytes::default(),
        pid: 0,
    }
}

/// Each task gets a new block made inside the worker (its scratch area).
#[aqueduct::handler]
fn make_block(task: &mut Stamp) -> Result<(), Error> {
    let id = task.id;
    task.made = ShmBytes::with_len(len_for(id), |bytes| {
        bytes
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = byte_for(id, i))
    })?;
    task.pid = std::process::id() as u64;
    Ok(())
}

/// Runs `ids` through `flow` with many in flight; the outcome of each, in order.
async fn run_all(
    flow: &aqueduct::Flow<Stamp, Stamp>,
    ids: std::ops::Range<u64>,
) -> Vec<Result<aqueduct::Owned<Stamp>, Error>> {
    call_each(flow, ids, stamp)
        .await
        .into_iter()
        .map(|(_, outcome)| outcome)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_made_for_one_answer_survive_while_the_worker_runs_the_next() {
    let flow = aqueduct::flow!(make_block).start().await.unwrap();
    // Once the stage is measured as fast, every worker has two dispatches in flight.
    for round in 0..4u64 {
        let ids = round * 2000..(round + 1) * 2000;
        for (id, outcome) in ids.zip(run_all(&flow, round * 2000..(round + 1) * 2000).await) {
            let out = outcome.unwrap_or_else(|e| panic!("task {id} failed: {e}"));
            assert_eq!(out.id, id);
            assert_ne!(out.pid, std::process::id() as u64, "ran in a worker");
            let bytes = out.made.view().unwrap();
            assert_eq!(bytes.len(), len_for(id), "task {id}: length");
            if let Some(i) = (0..bytes.len()).find(|&i| bytes[i] != byte_for(id, i)) {
                panic!(
                    "task {id}: byte {i} is {} instead of {}: its block was overwritten",
                    bytes[i],
                    byte_for(id, i)
                );
            }
        }
    }
    let stats = &flow.stats()[0];
    assert_eq!((stats.tasks, stats.failed, stats.restarts), (8000, 0, 0));
    flow.stop(true).await;
}

#[aqueduct::task]
#[derive(Debug)]
struct Shot {
    id: u64,
    /// Non-zero: the worker aborts (dies by SIGABRT) on this task.
    fatal: u64,
    doubled: u64,
}

/// Without `crash_retry`, so that a lost run fails as a whole and the test can tell it
/// from the dispatch queued behind it.
#[aqueduct::handler(crash_retry = false)]
fn double_or_die(task: &mut Shot) {
    if task.fatal != 0 {
        std::process::abort();
    }
    task.doubled = task.id * 2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_a_dispatch_queued_behind_loses_nothing() {
    let flow = aqueduct::flow!(double_or_die).start().await.unwrap();
    // Measure the stage as fast first, so that its second seat is in use.
    for id in 0..200 {
        flow.process(Shot {
            id,
            fatal: 0,
            doubled: 0,
        })
        .await
        .unwrap();
    }
    // Waves of 1000 calls in flight, one fatal task in each: the order in which the
    // runtime first polls spawned calls is not their spawn order (a call spawned early
    // was seen entering the queue 1600 calls late), so fatal tasks spawned close
    // enough together could share a run and one dead worker.
    const WAVE: u64 = 1000;
    const TASKS: u64 = 6 * WAVE;
    let fatal = |id: u64| id % WAVE == WAVE / 2;
    let mut ok = 0;
    // Per dead worker (by pid): the tasks that failed with it.
    let mut crashes: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
    for wave in (0..TASKS).step_by(WAVE as usize) {
        let ids = wave..wave + WAVE;
        let calls: Vec<_> = ids
            .clone()
            .map(|id| {
                let flow = flow.clone();
                tokio::spawn(async move {
                    let shot = Shot {
                        id,
                        fatal: fatal(id) as u64,
                        doubled: 0,
                    };
                    flow.process(shot).await
                })
            })
            .collect();
        for (id, call) in ids.zip(calls) {
            match call.await.unwrap() {
                Ok(out) => {
                    assert!(!fatal(id), "task {id} should have killed its worker");
                    assert_eq!(out.doubled, id * 2);
                    ok += 1;
                }
                Err(Error::WorkerCrashed { pid, .. }) => crashes.entry(pid).or_default().push(id),
                Err(other) => panic!("task {id}: unexpected error {other}"),
            }
        }
    }
    let crashed: usize = crashes.values().map(Vec::len).sum();
    assert_eq!(ok + crashed, TASKS as usize, "every task answered once");
    let fatal_tasks = (0..TASKS).filter(|&id| fatal(id)).count();
    assert_eq!(
        crashes.len(),
        fatal_tasks,
        "one dead worker per fatal task: {crashes:?}"
    );
    for (pid, ids) in &crashes {
        // Only the run the worker was executing fails (at most 64 tasks, one of them
        // fatal); a dispatch queued behind it ran on the replacement.
        let fatal_in_run = ids.iter().filter(|&&id| fatal(id)).count();
        assert_eq!(fatal_in_run, 1, "worker {pid} failed {ids:?}");
        assert!(ids.len() <= 64, "worker {pid} failed {} tasks", ids.len());
    }
    assert_eq!(flow.stats()[0].restarts as usize, fatal_tasks);
    flow.stop(true).await;
}

#[aqueduct::task]
#[derive(Debug)]
struct Order {
    id: u64,
    /// How many handler calls this worker process had made, this one included.
    call: u64,
    pid: u64,
}

/// Counts its calls in the worker process and works about 50 us, so that the stage is
/// measured slow enough to be pipelined.
#[aqueduct::handler]
fn count_calls(task: &mut Order) {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_micros(50) {
        std::hint::spin_loop();
    }
    task.call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    task.pid = std::process::id() as u64;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_runs_pipelined_tasks_in_the_order_they_were_fed() {
    let processor = aqueduct::graph::Processor::of::<count_calls>()
        .start()
        .await
        .unwrap();
    // Inputs enter the flow in feed order; with two runs in flight per worker, the
    // worker must still receive them in that order.
    let fed = (0..4000).map(|id| Order {
        id,
        call: 0,
        pid: 0,
    });
    let results = processor.run(fed).await.unwrap();
    let mut last_call = 0;
    for (id, done) in (0..).zip(&results) {
        let out = done
            .output()
            .unwrap_or_else(|| panic!("input {id}: {:?}", done.error()));
        assert_eq!(out.id, id);
        assert!(
            out.call > last_call,
            "input {id} was handled as call {} of its worker, before input {} (call {last_call})",
            out.call,
            id - 1
        );
        last_call = out.call;
    }
    processor.stop(true).await;
}

/// 8 KiB held inline: a request of these is larger than the allocator's fresh-pages
/// threshold, so the worker runs it call by call, writing each result as it comes.
#[aqueduct::task]
#[derive(Debug)]
struct Wide {
    id: u64,
    /// The worker's request that ran the task (see `fill`).
    request: u64,
    values: [u64; 1022],
}

/// Fills every value from the task's id, and records which request of the worker ran
/// it; a task whose id is a multiple of 7 fails, alone.
fn fill(mut task: Wide) -> Result<Wide, String> {
    if task.id % 7 == 0 {
        return Err(format!("refused {}", task.id));
    }
    task.request = aqueduct::__private::running_request();
    for (i, value) in task.values.iter_mut().enumerate() {
        *value = task.id * 10_000 + i as u64;
    }
    Ok(task)
}

/// Single-task calls: a request carries a run of them.
#[aqueduct::handler]
fn fill_each(task: Wide) -> Result<Wide, String> {
    fill(task)
}

/// Three tasks a call.
#[aqueduct::handler(batch_size = 3)]
fn fill_by_three(tasks: Vec<Wide>) -> Vec<Result<Wide, String>> {
    tasks.into_iter().map(fill).collect()
}

/// Runs 400 wide tasks through `flow`, all in flight, and checks each result is its
/// own; how many tasks the busiest worker request ran.
async fn wide_round_trips(flow: &aqueduct::Flow<Wide, Wide>) -> usize {
    let wide = |id| Wide {
        id,
        request: 0,
        values: [0; 1022],
    };
    let mut per_request = std::collections::HashMap::new();
    for (id, result) in call_each(flow, 1..=400, wide).await {
        match result {
            Ok(out) => {
                assert_ne!(id % 7, 0, "task {id} must have failed");
                assert_eq!(out.id, id);
                for (i, value) in out.values.iter().enumerate() {
                    assert_eq!(*value, id * 10_000 + i as u64, "task {id}, value {i}");
                }
                *per_request.entry(out.request).or_insert(0) += 1;
            }
            Err(Error::Handler { message, .. }) => {
                assert_eq!(id % 7, 0, "task {id} failed: {message}");
                assert_eq!(message, format!("refused {id}"));
            }
            Err(other) => panic!("task {id}: {other}"),
        }
    }
    per_request.into_values().max().unwrap_or(0)
}

/// Rounds of [`wide_round_trips`] within which at least one request must carry a run.
const ROUNDS_FOR_A_RUN: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tasks_in_runs_of_calls_come_back_whole_each_with_its_own_result() {
    let each = aqueduct::flow!(fill_each).start().await.unwrap();
    // How many of these tasks a request carries depends on the stage's measured pace
    // (a run must fit the run budget), which a slow moment of the machine inflates: 2-3
    // on the 2-core VM, now and then 1. Every round checks every result; more rounds
    // only make sure a run of calls was among them.
    let mut largest_run = 0;
    for _ in 0..ROUNDS_FOR_A_RUN {
        largest_run = largest_run.max(wide_round_trips(&each).await);
        if largest_run > 1 {
            break;
        }
    }
    assert!(
        largest_run > 1,
        "every request ran one task in {ROUNDS_FOR_A_RUN} rounds: no run of calls was exercised"
    );
    each.stop(true).await;
    let by_three = aqueduct::flow!(fill_by_three).start().await.unwrap();
    wide_round_trips(&by_three).await;
    assert!(by_three.stats()[0].mean_batch_size() > 1.0);
    by_three.stop(true).await;
}
