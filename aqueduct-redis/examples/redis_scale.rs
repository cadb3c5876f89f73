//! The same flow on 1, 2 and 3 consumer processes fed from one Redis stream.
//!
//! ```sh
//! cargo run --release -p aqueduct-redis --example redis_scale                 # 1,2,3 consumers, 3000 tasks
//! cargo run --release -p aqueduct-redis --example redis_scale -- --tasks 20000 --consumers 3
//! ```
//!
//! Starts a private `redis-server` on a unix socket (or uses `REDIS_URL`), submits the
//! tasks, starts the consumers (this same executable, `--consumer NAME`), waits until
//! every task has a result, stops them with SIGTERM, and prints one line per run; the last
//! line is the last run's. Exits 1 on a duplicate or lost result. The time counts from
//! starting the consumer processes to the last result stored.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aqueduct::ShmBytes;
use aqueduct_redis::{RedisSource, SourceConfig, Submitter};

#[aqueduct::task]
struct Doc {
    id: u64,
    text: ShmBytes,
    digest: u64,
}

/// About 1 ms of CPU per document: rounds of FNV over its bytes.
#[aqueduct::handler(batch_size = 16, nprocs = 1)]
fn digest(docs: &mut [Doc]) -> Result<(), aqueduct::Error> {
    for doc in docs {
        let text = doc.text.view()?;
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for _ in 0..10_000 {
            for &b in text.iter() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        doc.digest = h;
    }
    Ok(())
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if let Some(name) = arg("--consumer") {
        let url = arg("--url").expect("--url");
        let prefix = arg("--prefix").expect("--prefix");
        runtime.block_on(consume(&url, &prefix, &name));
        return;
    }
    let tasks: u64 = arg("--tasks").map_or(3000, |n| n.parse().expect("--tasks N"));
    let counts: Vec<usize> = arg("--consumers")
        .unwrap_or_else(|| "1,2,3".into())
        .split(',')
        .map(|n| n.parse().expect("--consumers 1,2,3"))
        .collect();
    let (_server, url) = aqueduct_redis::server_for_tests().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let mut ok = true;
    for consumers in counts {
        ok &= runtime.block_on(run(&url, tasks, consumers));
    }
    if !ok {
        std::process::exit(1);
    }
}

async fn consume(url: &str, prefix: &str, name: &str) {
    let flow = aqueduct::flow!(digest).start().await.expect("flow");
    let config = SourceConfig::new(prefix, name).credits_for::<digest>();
    let mut source = RedisSource::new(url, flow, config).await.expect("source");
    let stop = source.stop_handle();
    tokio::spawn(async move {
        let kind = tokio::signal::unix::SignalKind::terminate();
        tokio::signal::unix::signal(kind)
            .expect("signal")
            .recv()
            .await;
        stop.stop();
    });
    source.run().await;
}

/// Consumer processes, killed if still running when dropped.
struct Consumers(Vec<Child>);

impl Drop for Consumers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn run(url: &str, tasks: u64, consumers: usize) -> bool {
    let prefix = format!("scale-{}-{consumers}", std::process::id());
    let submitter = Submitter::<Doc, Doc>::connect(url, &prefix, "aqueduct")
        .await
        .expect("submitter");
    // Submit from 8 concurrent tasks over the one multiplexed connection.
    let mut submits = tokio::task::JoinSet::new();
    for part in 0..8 {
        let submitter = submitter.clone();
        submits.spawn(async move {
            let mut ids = Vec::new();
            for i in (part..tasks).step_by(8) {
                let text = format!("document {i}: {}", "lorem ipsum ".repeat((i % 16) as usize));
                let doc = aqueduct::Owned::new(Doc {
                    id: i,
                    text: ShmBytes::copy_from_slice(text.as_bytes()).expect("arena"),
                    digest: 0,
                });
                ids.push(submitter.submit(&doc).await.expect("submit"));
            }
            ids
        });
    }
    let mut submitted = HashSet::new();
    while let Some(ids) = submits.join_next().await {
        submitted.extend(ids.expect("submit task"));
    }

    let exe = std::env::current_exe().expect("exe");
    let started = Instant::now();
    let mut children = Consumers(
        (1..=consumers)
            .map(|n| {
                Command::new(&exe)
                    .args([
                        "--consumer",
                        &format!("c{n}"),
                        "--url",
                        url,
                        "--prefix",
                        &prefix,
                    ])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawn consumer")
            })
            .collect(),
    );
    let limit = Instant::now() + Duration::from_secs(300);
    let mut results = submitter.results().await.expect("results");
    while (results.len() as u64) < tasks && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
        results = submitter.results().await.expect("results");
    }
    let elapsed = started.elapsed();
    for child in &children.0 {
        // SAFETY: kill(2) on our own child, not yet waited for.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    for child in &mut children.0 {
        let _ = child.wait();
    }

    let mut per_id: HashMap<&str, usize> = HashMap::new();
    let mut per_consumer: HashMap<&str, usize> = HashMap::new();
    for c in &results {
        *per_id.entry(&c.id).or_default() += 1;
        *per_consumer.entry(&c.consumer).or_default() += 1;
    }
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    let lost = submitted
        .iter()
        .filter(|id| !per_id.contains_key(id.as_str()))
        .count();
    let dead = submitter.dead_letters().await.expect("dead letters").len();
    let mut counts: Vec<_> = per_consumer.into_iter().collect();
    counts.sort();
    let counts: Vec<String> = counts.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    println!(
        "consumers={consumers} per_consumer={} tasks={tasks} results={} duplicates={duplicates} lost={lost} dead_letter={dead} tasks_per_s={:.0}",
        counts.join(","),
        results.len(),
        tasks as f64 / elapsed.as_secs_f64()
    );
    duplicates == 0 && lost == 0
}
