//! A worker process ignores SIGINT and SIGTERM: it shares its parent's process group, so
//! a ctrl-c in a terminal or a service manager's SIGTERM to the group must not kill it
//! while the parent drains. Stopping is the parent's call.

#[aqueduct::task]
struct Ping {
    n: u64,
}

#[aqueduct::handler]
fn pong(ping: &mut Ping) {
    ping.n += 1;
}

/// The signals a process ignores, from `/proc/<pid>/status` (`SigIgn`, a hex mask where
/// bit `n - 1` stands for signal `n`).
fn ignored(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .unwrap();
    u64::from_str_radix(mask.trim(), 16).unwrap()
}

#[tokio::test]
async fn workers_ignore_sigint_and_sigterm_and_serve_on() {
    let flow = aqueduct::flow!(pong).start().await.unwrap();
    let pid = flow.stats()[0].worker_pids[0];
    for signal in [libc::SIGINT, libc::SIGTERM] {
        assert_ne!(ignored(pid) & (1 << (signal - 1)), 0, "signal {signal}");
        // SAFETY: kill with a live child's pid and a signal number.
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    }
    assert_eq!(flow.process(Ping { n: 1 }).await.unwrap().n, 2);
    let stats = flow.stats();
    assert_eq!((stats[0].worker_pids[0], stats[0].restarts), (pid, 0));
    flow.stop(true).await;
}
