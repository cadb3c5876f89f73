//! Restarts: a stage keeps serving at the speed of its live workers while one restarts,
//! and `start()` returns with every worker's real pid.

use std::time::Duration;

#[aqueduct::task]
#[derive(Debug)]
struct Num {
    n: u64,
    pid: u64,
}

/// `init` of a *restarted* worker (one started after the gate file appeared) blocks
/// until the test writes into the gate FIFO, so the restart stays unfinished for as long
/// as the test needs.
fn gated_init() -> Result<(), String> {
    let gate = gate_path(std::os::unix::process::parent_id());
    if gate.exists() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::open(&gate).unwrap(), &mut text).unwrap();
    }
    Ok(())
}

fn gate_path(parent: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("aqueduct-restart-gate-{parent}"))
}

#[aqueduct::handler(nprocs = 2, init = gated_init)]
fn whoami(_state: &mut (), num: &mut Num) {
    num.pid = std::process::id() as u64;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_serves_on_its_live_worker_while_the_other_restarts() {
    let gate = gate_path(std::process::id());
    let _ = std::fs::remove_file(&gate);
    let flow = aqueduct::flow!(whoami).start().await.unwrap();
    let pids = flow.stats()[0].worker_pids.clone();
    assert!(
        pids.iter().all(|&pid| pid != 0),
        "real pids once started: {pids:?}"
    );

    // From now on a restarted worker hangs in `init` until the gate is written.
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap();
    assert!(made.success());
    let killed = std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    while flow.stats()[0].worker_pids[0] == pids[0] {
        tokio::task::yield_now().await;
    }
    // Worker 0 is down (its replacement waits at the gate): every task must be served
    // by worker 1, none may wait for worker 0.
    for n in 0..50 {
        let out = flow
            .process_timeout(Num { n, pid: 0 }, Duration::from_secs(3))
            .await
            .unwrap_or_else(|e| panic!("task {n} waited for the restarting worker: {e}"));
        assert_eq!(out.pid, pids[1] as u64);
    }
    assert_eq!(flow.stats()[0].worker_pids[0], 0, "still restarting");
    // Open the gate: the replacement starts and serves too.
    std::fs::write(&gate, b"go").unwrap();
    let _ = std::fs::remove_file(&gate);
    while flow.stats()[0].worker_pids[0] == 0 {
        tokio::task::yield_now().await;
    }
    flow.stop(true).await;
}
