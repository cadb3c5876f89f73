//! Three consumer processes of this test binary on one stream; one is SIGKILLed mid-run,
//! one stops gracefully (SIGTERM). Every task ends with exactly one stored result, equal
//! to what the same flow computes in a single process. 3 000 tasks (not the issue's
//! 20 000) to keep the suite's Redis tests under a minute on 2 cores.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aqueduct_redis::{Outcome, RedisSource, SourceConfig};
use common::{job, wait_until};

const N: u64 = 3000;

/// The consumer process: does nothing unless started by the test below.
#[test]
fn consumer_process() {
    let (Ok(url), Ok(prefix), Ok(name)) = (
        std::env::var("AQR_URL"),
        std::env::var("AQR_PREFIX"),
        std::env::var("AQR_CONSUMER"),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stats = runtime.block_on(async {
        let flow = aqueduct::flow!(common::work).start().await.unwrap();
        let mut config = SourceConfig::new(prefix, name).credits_for::<common::work>();
        config.run_timeout = Duration::from_secs(2);
        config.commit_retry = Duration::from_secs(1);
        config.claim_idle = Duration::from_secs(4);
        config.claim_interval = Duration::from_millis(250);
        let mut source = RedisSource::new(&url, flow, config).await.unwrap();
        let stop = source.stop_handle();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
            stop.stop();
        });
        source.run().await
    });
    eprintln!("consumer stats: {stats:?}");
}

/// Consumer processes, SIGKILLed on drop (a failing test leaves none behind).
struct Consumers(Vec<Child>);

impl Drop for Consumers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_consumer(url: &str, prefix: &str, name: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "consumer_process",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("AQR_URL", url)
        .env("AQR_PREFIX", prefix)
        .env("AQR_CONSUMER", name)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

/// Pending entries of `consumer` in the group.
async fn pending_of(url: &str, prefix: &str, consumer: &str) -> usize {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = aqueduct_redis::wire::Keys::new(prefix);
    let entries: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(keys.tasks())
        .arg("aqueduct")
        .arg("-")
        .arg("+")
        .arg(100_000)
        .arg(consumer)
        .query_async(&mut conn)
        .await
        .unwrap();
    entries.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_one_killed_every_task_gets_exactly_one_result() {
    let (_server, url) = common::server();
    let prefix = common::prefix("scale");
    let submitter = common::submitter(&url, &prefix).await;
    let mut ids = HashMap::new();
    for i in 0..N {
        ids.insert(submitter.submit(&job(i, 0)).await.unwrap(), i);
    }
    let mut consumers = Consumers(
        ["c1", "c2", "c3"]
            .iter()
            .map(|name| spawn_consumer(&url, &prefix, name))
            .collect(),
    );
    let children = &mut consumers.0;
    let by = |results: &[aqueduct_redis::Completion], name: &str| {
        results.iter().filter(|c| c.consumer == name).count()
    };

    wait_until(
        "c1 to store 200 results",
        Duration::from_secs(30),
        || async { by(&submitter.results().await.unwrap(), "c1") >= 200 },
    )
    .await;
    children[0].kill().unwrap(); // SIGKILL: its pending entries must be claimed by others
    children[0].wait().unwrap();

    wait_until("half the results", Duration::from_secs(30), || async {
        submitter.results().await.unwrap().len() as u64 >= N / 2
    })
    .await;
    sigterm(&children[1]);
    let status = children[1].wait().unwrap();
    assert!(status.success(), "c2 stops gracefully on SIGTERM: {status}");
    assert_eq!(
        pending_of(&url, &prefix, "c2").await,
        0,
        "c2 drained and stored everything it had taken"
    );

    wait_until("every result", Duration::from_secs(45), || async {
        submitter.results().await.unwrap().len() as u64 >= N
    })
    .await;
    sigterm(&children[2]);
    assert!(children[2].wait().unwrap().success());

    let results = submitter.results().await.unwrap();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for c in &results {
        *per_id.entry(&c.id).or_default() += 1;
    }
    let duplicates: Vec<_> = per_id.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "ids with more than one result: {duplicates:?}"
    );
    let stored: HashSet<&str> = per_id.keys().copied().collect();
    let submitted: HashSet<&str> = ids.keys().map(String::as_str).collect();
    assert_eq!(stored, submitted, "no task lost, none invented");
    assert!(by(&results, "c3") > 0);

    // The same flow in this process gives the same results.
    let local = aqueduct::flow!(common::work).start().await.unwrap();
    for (id, &i) in &ids {
        let expected = local.process(job(i, 0)).await.unwrap();
        let Some(Outcome::Ok(remote)) = submitter.result(id).await.unwrap() else {
            panic!("task {i} has no output");
        };
        assert_eq!(
            (remote.id, remote.sum),
            (expected.id, expected.sum),
            "task {i}"
        );
        assert_eq!(
            remote.data.to_vec().unwrap(),
            expected.data.to_vec().unwrap()
        );
    }
    local.stop(true).await;
}
