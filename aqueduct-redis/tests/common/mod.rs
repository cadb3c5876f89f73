//! The task, stage and helpers shared by the Redis tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use aqueduct::ShmBytes;

/// A job: `sum` becomes the sum of `data`'s bytes plus `3 * x`.
#[aqueduct::task]
pub struct Job {
    pub id: u64,
    pub x: u64,
    pub data: ShmBytes,
    pub sum: u64,
    pub mode: u32,
    pub spare: u32,
}

/// Same fields, but another name for one of them: another layout fingerprint.
#[aqueduct::task]
pub struct OtherJob {
    pub id: u64,
    pub x: u64,
    pub data: ShmBytes,
    pub sum: u64,
    pub mode: u32,
    pub flags: u32,
}

/// What [`work`] makes a job's `sum`: the sum of its `data` bytes plus `3 * x`.
pub fn sum_of(data: &[u8], x: u64) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum::<u64>() + 3 * x
}

/// A submitter of [`Job`]s to the deployment under `prefix` on `url`.
pub async fn submitter(url: &str, prefix: &str) -> aqueduct_redis::Submitter<Job, Job> {
    aqueduct_redis::Submitter::connect(url, prefix, "aqueduct")
        .await
        .unwrap()
}

/// `mode`: the worker process aborts.
pub const POISON: u32 = 1;
/// `mode`: the handler returns an error.
pub const BAD: u32 = 2;

#[aqueduct::handler(batch_size = 8, nprocs = 1)]
pub fn work(jobs: &mut [Job]) -> Vec<Result<(), String>> {
    jobs.iter_mut()
        .map(|job| {
            if job.mode == POISON {
                std::process::abort();
            }
            if job.mode == BAD {
                return Err(format!("bad input {}", job.id));
            }
            let data = job.data.view().map_err(|e| e.to_string())?;
            job.sum = sum_of(&data, job.x);
            Ok(())
        })
        .collect()
}

#[aqueduct::handler]
pub fn other_work(job: &mut OtherJob) {
    job.sum = 1;
}

/// Job `i`: 1 to 64 payload bytes.
pub fn job(i: u64, mode: u32) -> Job {
    let len = (i % 64 + 1) as usize;
    Job {
        id: i,
        x: i * 7,
        data: ShmBytes::with_len(len, |buf| {
            for (k, b) in buf.iter_mut().enumerate() {
                *b = ((i as usize + k) % 251) as u8;
            }
        })
        .expect("arena"),
        sum: 0,
        mode,
        spare: 0,
    }
}

/// A unique key prefix per test (and per run, so a shared `REDIS_URL` server is fine).
pub fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server for a test: `REDIS_URL`, or a private one (a clear failure if neither).
pub fn server() -> (Option<aqueduct_redis::LocalServer>, String) {
    aqueduct_redis::server_for_tests().unwrap_or_else(|e| panic!("{e}"))
}
