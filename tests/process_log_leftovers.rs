//! A process that a worker starts inherits the worker's stderr, the pipe whose lines the
//! parent forwards, and may outlive the worker: the parent's reading of that pipe (a
//! thread and a descriptor per worker) ends a short grace after the worker is gone all
//! the same, on a restart as on a stop. (Its own binary: it counts the process's
//! threads.)

use std::time::{Duration, Instant};

#[aqueduct::task]
struct Job {
    id: u64,
}

/// Where the handler writes the pids of the processes it leaves behind, for the test to
/// end them: named by the test process's pid, which is the worker's parent.
fn leftovers_file(test_pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("aqueduct-log-leftovers-{test_pid}"))
}

/// Starts a process that holds the worker's stderr and writes to it now and then, for
/// longer than the test waits; then the worker exits (a crash, to the parent) for odd
/// ids, and answers for even ones.
#[aqueduct::handler(crash_retry = false)]
#[allow(clippy::zombie_processes)] // left on purpose; the test ends it
fn leave_a_process(job: &mut Job) {
    use std::io::Write as _;
    let child = std::process::Command::new("sh")
        .args([
            "-c",
            "while :; do echo leftover still here >&2; sleep 0.2; done",
        ])
        .spawn()
        .expect("sh starts");
    let mut pids = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(leftovers_file(std::os::unix::process::parent_id()))
        .expect("the pid file opens");
    writeln!(pids, "{}", child.id()).expect("the pid is written");
    if job.id % 2 == 1 {
        std::process::exit(0);
    }
}

/// Threads of this process whose name says they forward worker logs.
fn log_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc is mounted")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("aqueduct-log"))
        .count()
}

/// Waits, bounded, until at most `most` log threads are left; how many are.
fn log_threads_down_to(most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = log_threads();
        if left <= most || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_left_holding_a_workers_stderr_keeps_no_thread_of_the_parent() {
    let pids_at = leftovers_file(std::process::id());
    let _ = std::fs::remove_file(&pids_at);
    let flow = aqueduct::flow!(leave_a_process).start().await.unwrap();
    for id in [1, 3, 5] {
        let lost = flow.process(Job { id }).await;
        assert!(
            matches!(lost, Err(aqueduct::Error::WorkerCrashed { .. })),
            "{lost:?}"
        );
    }
    flow.process(Job { id: 2 }).await.unwrap();
    // Three workers exited, each leaving a process on its stderr; the fourth runs. Only
    // the running worker's logs are still read once the grace is over.
    let while_running = log_threads_down_to(1);
    flow.stop(true).await;
    drop(flow);
    let after_stop = log_threads_down_to(0);

    let leftovers = std::fs::read_to_string(&pids_at).unwrap_or_default();
    let _ = std::fs::remove_file(&pids_at);
    for pid in leftovers.lines() {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    assert_eq!(leftovers.lines().count(), 4, "every handler call left one");
    assert_eq!(
        while_running, 1,
        "threads still forwarding exited workers' logs"
    );
    assert_eq!(
        after_stop, 0,
        "threads still forwarding after the flow stopped"
    );
}
