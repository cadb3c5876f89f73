//! SIGKILL of the parent leaves no worker process and no shared-memory file behind.
//!
//! The test re-runs its own binary as the parent (the `parent_role` test, which does
//! nothing unless `AQUEDUCT_TEST_PARENT_ROLE` is set): it starts a flow with two worker
//! processes, prints their pids and waits to be killed. The test kills it with SIGKILL
//! and waits on pidfds for the workers to be gone.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

mod worker_exit;
use worker_exit::{exits_within, pidfd};

const ROLE_ENV: &str = "AQUEDUCT_TEST_PARENT_ROLE";

#[aqueduct::task]
struct Ping {
    n: u64,
}

#[aqueduct::handler(nprocs = 2)]
fn pong(ping: &mut Ping) {
    ping.n += 1;
}

/// The parent's role; a no-op in a normal test run.
#[test]
fn parent_role() {
    if std::env::var_os(ROLE_ENV).is_none() {
        return;
    }
    // Never outlive the test that started this role, whatever happens to it.
    // SAFETY: prctl with an integer option and signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let flow = runtime.block_on(aqueduct::flow!(pong).start()).unwrap();
    assert_eq!(runtime.block_on(flow.process(Ping { n: 1 })).unwrap().n, 2);
    let pids = flow.stats()[0].worker_pids.clone();
    println!(
        "WORKERS {}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    loop {
        std::thread::park();
    }
}

fn shm_files() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains("aqueduct"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn killing_the_parent_leaves_no_worker_and_no_shm_file() {
    let shm_before = shm_files();
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args(["parent_role", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(parent.stdout.take().unwrap()).lines();
    let pids: Vec<u32> = loop {
        let line = lines
            .next()
            .expect("the parent printed its workers")
            .unwrap();
        // libtest may print "test parent_role ... " on the same line first.
        if let Some((_, list)) = line.split_once("WORKERS ") {
            break list.split(' ').map(|p| p.parse().unwrap()).collect();
        }
    };
    assert_eq!(pids.len(), 2);
    let fds: Vec<OwnedFd> = pids.iter().map(|&pid| pidfd(pid)).collect();
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.starts_with(b"aqueduct-worker:pong:"),
            "{pid} is a worker of the parent"
        );
    }
    assert!(
        !exits_within(&fds[0], 0),
        "workers are alive while the parent is"
    );

    parent.kill().unwrap(); // SIGKILL
    parent.wait().unwrap();

    for (fd, pid) in fds.iter().zip(&pids) {
        assert!(exits_within(fd, 10_000), "worker {pid} outlived its parent");
    }
    assert_eq!(shm_files(), shm_before, "no shared-memory file left behind");
}
