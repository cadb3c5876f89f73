//! The first seed's Fibonacci example: six slow Fibonacci numbers computed in parallel on
//! six workers, while the async runtime keeps printing that it is not blocked.
//!
//! Run: `cargo run --release --example fib`
//!
//! The last line prints the key figures: how many numbers were computed, the wall time,
//! and how many "not blocked" ticks (every 100 ms) the runtime printed meanwhile; ticks
//! keep coming because the heavy work runs on the stage's workers, not on the runtime.
//! (The seed used n = 30..35; compiled Rust does those in milliseconds, so this uses
//! n = 36..41 to keep the work long enough to watch.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aqueduct_suite::fib;

/// One Fibonacci request: `n` in, `value` out.
#[aqueduct::task]
#[derive(Debug)]
struct Fib {
    n: u64,
    value: u64,
}

#[aqueduct::handler(nprocs = 6)]
fn compute(task: &mut Fib) {
    task.value = fib(task.n);
}

#[tokio::main]
async fn main() -> Result<(), aqueduct::Error> {
    let flow = aqueduct::flow!(compute)
        .timeout(Duration::from_secs(120))
        .start()
        .await?;

    let ticks = Arc::new(AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            interval.tick().await;
            loop {
                interval.tick().await;
                println!("event loop is not blocked");
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    let started = Instant::now();
    let requests: Vec<_> = (36..42)
        .map(|n| {
            tokio::spawn({
                let flow = flow.clone();
                async move { flow.process(Fib { n, value: 0 }).await }
            })
        })
        .collect();
    let mut computed = 0;
    for request in requests {
        let task = request.await.expect("request task panicked")?;
        assert_eq!(task.value, fib(task.n), "wrong Fibonacci number");
        println!("{{{}: {}}}", task.n, task.value);
        computed += 1;
    }
    let elapsed = started.elapsed();
    ticker.abort();
    flow.stop(true).await;
    println!(
        "computed={computed} elapsed_ms={} ticks_while_computing={}",
        elapsed.as_millis(),
        ticks.load(Ordering::Relaxed)
    );
    Ok(())
}
