//! Crash recovery: a stage whose handler crashes its worker process on some inputs
//! (an abort, as a segfault in a C library or an OOM kill would), while the flow keeps
//! serving everything else.
//!
//! Run: `cargo run --release --example crash_recovery`
//!
//! Every 50th task is poison: the handler calls `std::process::abort()`. The tasks of
//! the batch that worker was executing run again, each on its own, on fresh workers
//! (`crash_retry`, on by default), so only the poison tasks fail with
//! `Error::WorkerCrashed`; tasks still queued are sent to the restarted worker; nothing
//! is lost. The last line prints
//! `submitted=N poison=N ok=N failed_crashed=N lost=0 restarts=N retried=N`: every task
//! is accounted for (`ok + failed_crashed = submitted`), only the poison fails
//! (`failed_crashed = poison`), and `restarts` counts the worker processes replaced (two
//! per poison task: in its batch, then alone). The program exits 1 otherwise.

use std::time::Duration;

use aqueduct::Error;

#[aqueduct::task]
#[derive(Debug)]
struct Job {
    id: u64,
    square: u64,
}

const SUBMITTED: u64 = 2_000;
const POISON_EVERY: u64 = 50;

#[aqueduct::handler(nprocs = 2, batch_size = 8)]
fn square(job: &mut Job) {
    if job.id % POISON_EVERY == POISON_EVERY - 1 {
        // Stands in for a crash the handler cannot catch: the whole process goes.
        std::process::abort();
    }
    job.square = job.id * job.id;
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let flow = aqueduct::flow!(square)
        .timeout(Duration::from_secs(60))
        .start()
        .await?;
    let requests: Vec<_> = (0..SUBMITTED)
        .map(|id| {
            let flow = flow.clone();
            tokio::spawn(async move { (id, flow.process(Job { id, square: 0 }).await) })
        })
        .collect();
    let (mut ok, mut crashed, mut other) = (0u64, 0u64, 0u64);
    for request in requests {
        let (id, outcome) = request.await.expect("request task panicked");
        match outcome {
            Ok(job) => {
                assert_eq!(job.square, id * id, "wrong result for {id}");
                ok += 1;
            }
            Err(Error::WorkerCrashed { .. }) => crashed += 1,
            Err(error) => {
                eprintln!("task {id}: unexpected error: {error}");
                other += 1;
            }
        }
    }
    let stats = flow.stats();
    let (restarts, retried) = (stats[0].restarts, stats[0].retried);
    flow.stop(true).await;
    let lost = SUBMITTED - ok - crashed;
    let poison = (0..SUBMITTED)
        .filter(|id| id % POISON_EVERY == POISON_EVERY - 1)
        .count() as u64;
    println!(
        "submitted={SUBMITTED} poison={poison} ok={ok} failed_crashed={crashed} lost={lost} restarts={restarts} retried={retried}"
    );
    if lost != 0 || other != 0 || crashed != poison {
        std::process::exit(1);
    }
    Ok(())
}
