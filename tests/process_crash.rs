//! Worker processes that die mid-batch, in stages with `crash_retry = false`: the batch
//! call they were executing fails with `Error::WorkerCrashed`, tasks queued behind it run on
//! the restarted worker, later tasks succeed, and the restart is counted. A worker past
//! the execution timeout is killed the same way. (With `crash_retry` on, the default,
//! see `process_poison.rs`.)
//!
//! Synchronisation is by a named pipe: the hanging handler writes its pid into it, so the
//! test knows exactly when the worker is inside the batch before it kills it.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use aqueduct::{Error, ShmStr};

#[aqueduct::task]
#[derive(Debug)]
struct Job {
    n: u64,
    /// Non-zero: report the pid through the pipe named by `pipe`, then hang.
    hang: u64,
    doubled: u64,
    pipe: ShmStr,
}

fn hang_if_asked(job: &Job) -> Result<(), aqueduct::Error> {
    if job.hang != 0 {
        if !job.pipe.is_empty() {
            let path = job.pipe.view()?.to_string();
            let mut pipe = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            std::io::Write::write_all(&mut pipe, std::process::id().to_string().as_bytes())
                .unwrap();
        }
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

/// A batch handler: one call for the whole batch, which a lost worker loses whole. (A
/// per-task handler loses only the task it was running: see `process_lost_runs.rs`.)
#[aqueduct::handler(batch_size = 4, batch_timeout_ms = 60000, crash_retry = false)]
fn double(jobs: &mut [Job]) -> Result<(), aqueduct::Error> {
    for job in jobs {
        hang_if_asked(job)?;
        job.doubled = job.n * 2;
    }
    Ok(())
}

#[aqueduct::handler(exec_timeout_ms = 300, crash_retry = false)]
fn slow(job: &mut Job) -> Result<(), aqueduct::Error> {
    hang_if_asked(job)?;
    job.doubled = job.n * 2;
    Ok(())
}

fn job(n: u64) -> Job {
    Job {
        n,
        hang: 0,
        doubled: 0,
        pipe: ShmStr::default(),
    }
}

fn make_fifo(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("aqueduct-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo failed");
    path
}

#[tokio::test]
async fn sigkill_mid_batch_fails_exactly_that_batch_and_the_flow_recovers() {
    let flow = aqueduct::flow!(double)
        .timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let fifo = make_fifo("crash");

    // One full batch of four; the third task hangs inside the handler.
    let batch: Vec<_> = (0..4u64)
        .map(|n| {
            let flow = flow.clone();
            let mut task = job(n);
            if n == 2 {
                task.hang = 1;
                task.pipe = ShmStr::new(fifo.to_str().unwrap()).unwrap();
            }
            tokio::spawn(async move { flow.process(task).await })
        })
        .collect();
    let reader = fifo.clone();
    let pid: u32 = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::fs::File::open(reader)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text.trim().parse().unwrap()
    })
    .await
    .unwrap();
    assert_ne!(pid, std::process::id());
    assert_eq!(flow.stats()[0].worker_pids, vec![pid]);

    // Queued behind the hung batch (a full batch of four): not yet started, so they
    // must survive the crash.
    let queued: Vec<_> = (10..14u64)
        .map(|n| {
            let flow = flow.clone();
            tokio::spawn(async move { flow.process(job(n)).await })
        })
        .collect();
    while flow.stats()[0].queued < 4 {
        tokio::task::yield_now().await;
    }

    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    for result in batch {
        match result.await.unwrap() {
            Err(Error::WorkerCrashed {
                stage: "double",
                pid: dead,
                signal: Some(9),
            }) => assert_eq!(dead, pid),
            other => panic!("expected WorkerCrashed for the in-flight batch, got {other:?}"),
        }
    }
    for (result, n) in queued.into_iter().zip(10..) {
        let out = result
            .await
            .unwrap()
            .expect("queued task runs on the new worker");
        assert_eq!(out.doubled, n * 2);
    }
    // Later tasks (again a full batch) succeed.
    let later: Vec<_> = (20..24u64)
        .map(|n| {
            let flow = flow.clone();
            tokio::spawn(async move { flow.process(job(n)).await })
        })
        .collect();
    for (result, n) in later.into_iter().zip(20..) {
        assert_eq!(result.await.unwrap().unwrap().doubled, n * 2);
    }
    let stats = flow.stats();
    assert_eq!(stats[0].restarts, 1, "one restart counted");
    assert_ne!(stats[0].worker_pids, vec![pid], "a new worker process");
    flow.stop(true).await;
    let _ = std::fs::remove_file(fifo);
}

#[tokio::test]
async fn a_worker_past_the_execution_timeout_is_killed_and_replaced() {
    let flow = aqueduct::flow!(slow).start().await.unwrap();
    let first_pid = flow.stats()[0].worker_pids[0];
    let mut stuck = job(1);
    stuck.hang = 1;
    match flow.process(stuck).await {
        Err(Error::WorkerCrashed {
            stage: "slow",
            pid,
            signal: Some(9),
        }) => assert_eq!(pid, first_pid),
        other => panic!("expected WorkerCrashed after the timeout, got {other:?}"),
    }
    assert_eq!(flow.process(job(5)).await.unwrap().doubled, 10);
    assert_eq!(flow.stats()[0].restarts, 1);
    flow.stop(true).await;
}
