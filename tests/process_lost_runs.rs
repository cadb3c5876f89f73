//! A worker process lost in the middle of a hand-off of many tasks (a run of single-task
//! calls, which the runner sends a busy worker at once) costs only the task it was
//! running: the tasks it finished before are delivered, those it never began run on its
//! replacement, and none runs twice, with `crash_retry` off or on. Every handler run is
//! recorded in a file, one line per task id, to count them.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use aqueduct::{Error, Flow};

#[aqueduct::task]
#[derive(Debug)]
struct Job {
    id: u64,
    /// Non-zero: the worker dies running this task.
    poison: u64,
    out: u64,
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
    if job.poison != 0 {
        std::process::abort();
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
fn batch_of_one(jobs: &mut [Job]) {
    for job in jobs {
        run("batch_of_one", job);
    }
}

const POISON: u64 = 300;

/// Warms `flow` up with lone calls (so that its stage's pace is measured and a busy
/// worker gets runs), then sends `count` tasks at once, one of them the poison; the
/// outcome per task id, and how many times each id ran.
async fn run_with_a_poison(
    flow: &Flow<Job, Job>,
    stage: &str,
    count: u64,
) -> (HashMap<u64, Result<u64, Error>>, HashMap<u64, usize>) {
    let runs_at = runs_file(stage, std::process::id());
    let _ = std::fs::remove_file(&runs_at);
    let warm = 10_000..10_064;
    for id in warm.clone() {
        let job = Job {
            id,
            poison: 0,
            out: 0,
        };
        assert_eq!(flow.process(job).await.unwrap().out, id * 3 + 1);
    }
    let calls: Vec<_> = (0..count)
        .map(|id| {
            let flow = flow.clone();
            let poison = u64::from(id == POISON);
            tokio::spawn(async move {
                let outcome = flow.process(Job { id, poison, out: 0 }).await;
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
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .map(|(id, outcome)| format!("{id}: {outcome:?}"))
        .collect();
    assert_eq!(failed.len(), 1, "only the poison fails: {failed:?}");
    assert!(
        matches!(outcomes[&POISON], Err(Error::WorkerCrashed { .. })),
        "{:?}",
        outcomes[&POISON]
    );
    for (id, outcome) in outcomes {
        if *id != POISON {
            assert_eq!(outcome.as_ref().ok(), Some(&(id * 3 + 1)), "task {id}");
        }
    }
    let twice: Vec<_> = runs
        .iter()
        .filter(|&(&id, &n)| n != 1 && id != POISON)
        .collect();
    assert!(twice.is_empty(), "tasks run other than once: {twice:?}");
    assert_eq!(runs.len(), outcomes.len(), "every task ran");
    assert_eq!(runs[&POISON], poison_runs, "runs of the poison");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_lost_run_fails_only_the_task_that_killed_its_worker() {
    let flow = aqueduct::flow!(each_once)
        .timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let (outcomes, runs) = run_with_a_poison(&flow, "each_once", 600).await;
    check(&outcomes, &runs, 1);
    assert_eq!(flow.stats()[0].restarts, 1);
    flow.stop(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retries_only_the_task_that_killed_its_worker_runs_again() {
    let flow = aqueduct::flow!(each_retried)
        .timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let (outcomes, runs) = run_with_a_poison(&flow, "each_retried", 600).await;
    // Retried on its own, it kills its worker again, and fails.
    check(&outcomes, &runs, 2);
    assert_eq!(flow.stats()[0].restarts, 2);
    flow.stop(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_handler_in_batches_of_one_loses_only_the_running_call() {
    let flow = aqueduct::flow!(batch_of_one)
        .timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let (outcomes, runs) = run_with_a_poison(&flow, "batch_of_one", 600).await;
    check(&outcomes, &runs, 1);
    flow.stop(true).await;
}
