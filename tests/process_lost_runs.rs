//! A worker process lost in the middle of a hand-off of many tasks (a run of single-task
//! calls, which the runner sends a busy worker at once) costs only the task it was
//! running: the tasks it finished before are delivered, those it never began run on its
//! replacement, and none runs twice, with `crash_retry` off or on. Likewise a worker
//! killed for one invalid result in its answer costs only that task (and the one task it
//! was running meanwhile in the other request it held, if any: it was killed in it).
//! Every handler run is recorded in a file, one line per task id, to count them.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use aqueduct::{Error, Flow, ShmBytes};

#[aqueduct::task]
#[derive(Debug)]
struct Job {
    id: u64,
    /// 1: the worker dies running this task; 2: its output holds a forged handle.
    poison: u64,
    out: u64,
    data: ShmBytes,
}

/// The file that records handler runs for the stage `stage` of the test process.
fn runs_file(stage: &str, test_pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("aqueduct-lost-runs-{stage}-{test_pid}"))
}

/// Records that `stage`'s handler runs task `job` (in a worker, whose parent is the
/// test process), then dies if the task is the poison.
fn run(stage: &str, job: &mut Job) {
    let mut runs = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(runs_file(stage, std::os::unix::process::parent_id()))
        .expect("the runs file opens");
    writeln!(runs, "{}", job.id).expect("the run is recorded");
    match job.poison {
        1 => std::process::abort(),
        // SAFETY: `ShmBytes` is a plain-data handle of three `u64`s (offset, length,
        // generation), every bit pattern a valid value: the runtime validates handles
        // wherever they are used. This forges one, as a buggy worker could.
        2 => job.data = unsafe { std::mem::transmute::<[u64; 3], ShmBytes>([1 << 45, 64, 7]) },
        _ => {}
    }
    job.out = job.id * 3 + 1;
}

#[aqueduct::handler(crash_retry = false)]
fn each_once(job: &mut Job) {
    run("each_once", job);
}

#[aqueduct::handler]
fn each_retried(job: &mut Job) {
    run("each_retried", job);
}

#[aqueduct::handler(crash_retry = false)]
fn each_forged(job: &mut Job) {
    run("each_forged", job);
}

#[aqueduct::handler(crash_retry = false)]
fn batch_of_one(jobs: &mut [Job]) {
    for job in jobs {
        run("batch_of_one", job);
    }
}

const POISON: u64 = 300;

/// A started flow of `stage` alone, whose calls may wait behind a whole burst.
macro_rules! started {
    ($stage:ident) => {
        aqueduct::flow!($stage)
            .timeout(Duration::from_secs(60))
            .start()
            .await
            .unwrap()
    };
}

fn job(id: u64, poison: u64) -> Job {
    Job {
        id,
        poison,
        out: 0,
        data: ShmBytes::default(),
    }
}

/// Warms `flow` up with lone calls (so that its stage's pace is measured and a busy
/// worker gets runs), then sends `count` tasks at once, one of them the poison; the
/// outcome per task id, and how many times each id ran.
async fn run_with_a_poison(
    flow: &Flow<Job, Job>,
    stage: &str,
    count: u64,
    poison: u64,
) -> (HashMap<u64, Result<u64, Error>>, HashMap<u64, usize>) {
    let runs_at = runs_file(stage, std::process::id());
    let _ = std::fs::remove_file(&runs_at);
    let warm = 10_000..10_064;
    for id in warm.clone() {
        assert_eq!(flow.process(job(id, 0)).await.unwrap().out, id * 3 + 1);
    }
    let calls: Vec<_> = (0..count)
        .map(|id| {
            let flow = flow.clone();
            let poison = if id == POISON { poison } else { 0 };
            tokio::spawn(async move {
                let outcome = flow.process(job(id, poison)).await;
                (id, outcome.map(|job| job.out))
            })
        })
        .collect();
    let mut outcomes = HashMap::new();
    for call in calls {
        let (id, outcome) = call.await.unwrap();
        outcomes.insert(id, outcome);
    }
    let recorded = std::fs::read_to_string(&runs_at).unwrap();
    let _ = std::fs::remove_file(&runs_at);
    let mut runs = HashMap::new();
    for id in recorded.lines().map(|line| line.parse::<u64>().unwrap()) {
        *runs.entry(id).or_insert(0) += 1;
    }
    for id in warm {
        runs.remove(&id);
    }
    (outcomes, runs)
}

/// Only the poison fails; every other task is answered right, and ran once.
fn check(
    outcomes: &HashMap<u64, Result<u64, Error>>,
    runs: &HashMap<u64, usize>,
    poison_runs: usize,
) {
    let crashed = |error: &Error| matches!(error, Error::WorkerCrashed { .. });
    check_failing(outcomes, runs, poison_runs, crashed, 0);
}

/// [`check`], with the poison's error as `expected` says, and up to `killed_too` other
/// tasks failed by a kill of the poison's worker (the task it was running, in the
/// other request it held, when it was killed for the poison's answer). None runs twice.
fn check_failing(
    outcomes: &HashMap<u64, Result<u64, Error>>,
    runs: &HashMap<u64, usize>,
    poison_runs: usize,
    expected: impl Fn(&Error) -> bool,
    killed_too: usize,
) {
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|&(&id, outcome)| outcome.is_err() && id != POISON)
        .map(|(id, outcome)| format!("{id}: {outcome:?}"))
        .collect();
    assert!(
        outcomes[&POISON].as_ref().is_err_and(&expected),
        "{:?}",
        outcomes[&POISON]
    );
    assert!(
        failed.len() <= killed_too,
        "only the poison fails: {failed:?}"
    );
    let ran = |id: &u64| runs.get(id).copied().unwrap_or(0);
    for (id, outcome) in outcomes {
        match outcome {
            Ok(out) => {
                assert_eq!(*out, id * 3 + 1, "task {id}");
                assert_eq!(ran(id), 1, "runs of task {id}");
            }
            // Killed, perhaps before its handler began: at most once.
            Err(Error::WorkerCrashed {
                signal: Some(9), ..
            }) if *id != POISON => {
                assert!(ran(id) <= 1, "runs of task {id}")
            }
            Err(error) => assert_eq!(*id, POISON, "task {id}: {error:?}"),
        }
    }
    assert_eq!(ran(&POISON), poison_runs, "runs of the poison");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_lost_run_fails_only_the_task_that_killed_its_worker() {
    let flow = started!(each_once);
    let (outcomes, runs) = run_with_a_poison(&flow, "each_once", 600, 1).await;
    check(&outcomes, &runs, 1);
    assert_eq!(flow.stats()[0].restarts, 1);
    flow.stop(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retries_only_the_task_that_killed_its_worker_runs_again() {
    let flow = started!(each_retried);
    let (outcomes, runs) = run_with_a_poison(&flow, "each_retried", 600, 1).await;
    // Retried on its own, it kills its worker again, and fails.
    check(&outcomes, &runs, 2);
    assert_eq!(flow.stats()[0].restarts, 2);
    flow.stop(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handler_in_batches_of_one_loses_only_the_running_call() {
    let flow = started!(batch_of_one);
    let (outcomes, runs) = run_with_a_poison(&flow, "batch_of_one", 600, 1).await;
    check(&outcomes, &runs, 1);
    flow.stop(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_result_in_a_run_fails_only_its_task() {
    let flow = started!(each_forged);
    let (outcomes, runs) = run_with_a_poison(&flow, "each_forged", 600, 2).await;
    let forged = |error: &Error| matches!(error, Error::WorkerProtocol { reason, .. } if reason.contains("names no block"));
    check_failing(&outcomes, &runs, 1, forged, 1);
    assert_eq!(flow.stats()[0].restarts, 1);
    flow.stop(true).await;
}
