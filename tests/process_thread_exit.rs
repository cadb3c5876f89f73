//! Worker processes outlive the runtime thread that started them.
//!
//! Workers die with their parent through `PR_SET_PDEATHSIG`, which the kernel fires when
//! the *thread* that forked the child exits, not the process. Tokio's threads come and
//! go (a worker thread that calls `block_in_place` hands its core to a new thread and
//! leaves; idle blocking-pool threads exit after `thread_keep_alive`), so a worker forked
//! from one would be killed seconds into a healthy service.
//!
//! The test runs a one-worker-thread runtime with a 10 ms keep-alive, so the supervisor
//! tasks (and, before the fix, the forks) run on that one thread. It records the runtime's
//! threads, starts the flow, then makes every one of those threads leave through
//! `block_in_place` and waits until the kernel has removed them. Then the workers must be
//! the same processes, alive, with no restart counted.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[aqueduct::task]
struct Tick {
    n: u64,
    pid: u64,
}

#[aqueduct::handler(nprocs = 2)]
fn tock(tick: &mut Tick) {
    tick.n += 1;
    tick.pid = std::process::id() as u64;
}

/// Kernel thread ids of every thread the runtime started.
static RUNTIME_THREADS: Mutex<Vec<i64>> = Mutex::new(Vec::new());

fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// Whether thread `tid` of this process is still known to the kernel. A thread leaves
/// `/proc/self/task` only after the kernel has run its exit (including the parent-death
/// signals of the children it forked).
fn thread_exists(tid: i64) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

fn alive(pid: u32) -> bool {
    // A zombie still "exists" for kill(0), so read its state instead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]);
            !matches!(state, Some(b'Z' | b'X'))
        })
        .unwrap_or(false)
}

#[test]
fn workers_survive_the_exit_of_the_thread_that_started_them() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(10))
        .on_thread_start(|| RUNTIME_THREADS.lock().unwrap().push(gettid()))
        .enable_all()
        .build()
        .unwrap();

    let flow = runtime.block_on(aqueduct::flow!(tock).start()).unwrap();
    // A supervisor reports its worker ready just before it records the pid.
    let pids = loop {
        let pids = flow.stats()[0].worker_pids.clone();
        if pids.iter().all(|&pid| pid != 0) {
            break pids;
        }
        std::thread::yield_now();
    };
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&pid| alive(pid)), "workers {pids:?} alive");
    // Every thread the runtime had while the workers were forked.
    let starters = RUNTIME_THREADS.lock().unwrap().clone();
    assert!(!starters.is_empty());

    // Make them all leave: `block_in_place` on the (single) worker thread hands its core
    // to a new thread; the old one joins the blocking pool and exits after the keep-alive.
    // (Blocking-pool threads the runtime started exit the same way.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while starters.iter().any(|&tid| thread_exists(tid)) {
        assert!(
            Instant::now() < deadline,
            "the runtime's first threads did not exit: {:?}",
            starters
                .iter()
                .filter(|&&tid| thread_exists(tid))
                .map(|tid| std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")))
                .collect::<Vec<_>>()
        );
        runtime
            .block_on(runtime.spawn(async {
                tokio::task::block_in_place(|| {
                    // Returns once a task has run elsewhere, that is once the new thread
                    // owns the core; otherwise this thread would take it back.
                    let (ran, has_run) = std::sync::mpsc::channel();
                    tokio::spawn(async move { ran.send(()).unwrap() });
                    has_run.recv().unwrap();
                });
            }))
            .unwrap();
        // Polls a condition the kernel changes; not a synchronisation by delay. Another
        // round only after several keep-alives: an idle thread is reused by the next
        // round's hand-over, so rounds in quick succession would keep it alive.
        for _ in 0..20 {
            if !starters.iter().any(|&tid| thread_exists(tid)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // Once the forking thread is gone, a parent-death signal has already been sent, so a
    // killed worker can run no more tasks: these would fail or run on replacements.
    for n in 0..20 {
        let out = runtime
            .block_on(flow.process(Tick { n, pid: 0 }))
            .unwrap_or_else(|e| panic!("task {n} failed: {e}"));
        assert_eq!(out.n, n + 1);
        assert!(
            pids.contains(&(out.pid as u32)),
            "task {n} ran on {}",
            out.pid
        );
    }
    let stats = &flow.stats()[0];
    assert_eq!(stats.restarts, 0, "no worker was restarted");
    assert_eq!(stats.worker_pids, pids, "the same worker processes");
    assert!(pids.iter().all(|&pid| alive(pid)), "workers {pids:?} alive");
    runtime.block_on(flow.stop(true));
}
