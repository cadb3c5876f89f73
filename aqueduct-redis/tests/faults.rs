//! One consumer in this process against a real `redis-server`: poison entries, handler
//! errors, foreign layouts, idempotent submits, a server restart mid-run.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use aqueduct_redis::{LocalServer, Outcome, RedisSource, SourceConfig, Submitted};
use common::{job, wait_until, OtherJob, BAD, POISON};

/// Short bounds so retries happen within the test.
fn quick(prefix: &str, consumer: &str) -> SourceConfig {
    let mut config = SourceConfig::new(prefix, consumer).credits_for::<common::work>();
    config.run_timeout = Duration::from_millis(2000);
    config.commit_retry = Duration::from_millis(500);
    config.claim_idle = Duration::from_millis(3000);
    config.claim_interval = Duration::from_millis(200);
    config.max_deliveries = 2;
    config
}

async fn start_source<In: aqueduct::Task, Out: aqueduct::Task>(
    url: &str,
    flow: aqueduct::Flow<In, Out>,
    config: SourceConfig,
) -> (
    aqueduct_redis::StopHandle,
    tokio::task::JoinHandle<aqueduct_redis::SourceStats>,
) {
    let mut source = RedisSource::new(url, flow, config).await.expect("source");
    let stop = source.stop_handle();
    (stop, tokio::spawn(async move { source.run().await }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_entry_ends_in_the_dead_letter_stream_and_handler_errors_are_stored() {
    let (_server, url) = common::server();
    let prefix = common::prefix("poison");
    let submitter = common::submitter(&url, &prefix).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let mode = match i {
            13 => POISON,
            21 => BAD,
            _ => 0,
        };
        ids.push(submitter.submit(&job(i, mode)).await.unwrap());
    }
    let flow = aqueduct::flow!(common::work).start().await.unwrap();
    let (stop, running) = start_source(&url, flow, quick(&prefix, "solo")).await;

    wait_until(
        "39 results and 1 dead letter",
        Duration::from_secs(40),
        || async {
            submitter.results().await.unwrap().len() == 39
                && submitter.dead_letters().await.unwrap().len() == 1
        },
    )
    .await;
    let dead = submitter.dead_letters().await.unwrap();
    assert_eq!(dead[0].id, ids[13]);
    assert_eq!(
        dead[0].deliveries, 3,
        "delivered max_deliveries + 1 times: {dead:?}"
    );
    assert!(
        dead[0].error.contains("died"),
        "the last error says the worker died: {dead:?}"
    );
    assert!(submitter.result(&ids[13]).await.unwrap().is_none());
    match submitter.result(&ids[21]).await.unwrap() {
        Some(Outcome::Failed(message)) => assert!(message.contains("bad input 21"), "{message}"),
        other => panic!("the handler error is stored as the result, got {other:?}"),
    }
    match submitter.result(&ids[5]).await.unwrap() {
        Some(Outcome::Ok(out)) => {
            let data = out.data.to_vec().unwrap();
            assert_eq!(data, job(5, 0).data.to_vec().unwrap());
            assert_eq!(out.sum, common::sum_of(&data, 35));
        }
        other => panic!("expected an output, got {other:?}"),
    }
    stop.stop();
    let stats = running.await.unwrap();
    assert_eq!(
        (stats.ok, stats.failed, stats.dead_lettered),
        (38, 1, 1),
        "{stats:?}"
    );
    assert!(
        stats.left_pending >= 2,
        "the poison was left pending twice: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_with_another_task_layout_refuses_entries_and_a_matching_one_serves_them() {
    let (_server, url) = common::server();
    let prefix = common::prefix("layout");
    let submitter = common::submitter(&url, &prefix).await;
    for i in 0..10 {
        submitter.submit(&job(i, 0)).await.unwrap();
    }
    let foreign = aqueduct::flow!(common::other_work).start().await.unwrap();
    let mut config = quick(&prefix, "foreign");
    config.max_deliveries = 5;
    let mut source = RedisSource::<OtherJob, OtherJob>::new(&url, foreign, config)
        .await
        .unwrap();
    let stop = source.stop_handle();
    let (stats, ()) = tokio::join!(source.run(), async {
        // Every entry read once and refused.
        wait_until("10 refusals", Duration::from_secs(20), || async {
            source_refused(&url, &prefix).await >= 10
        })
        .await;
        stop.stop();
    });
    assert_eq!(stats.refused, 10, "{stats:?}");
    assert_eq!(stats.ok + stats.failed, 0);
    let refusal = stats.last_refusal.unwrap();
    for needle in ["`Job`", "`OtherJob`", "fingerprint", "left pending"] {
        assert!(refusal.contains(needle), "{needle} in {refusal}");
    }
    assert!(submitter.results().await.unwrap().is_empty());

    let flow = aqueduct::flow!(common::work).start().await.unwrap();
    let (stop, running) = start_source(&url, flow, quick(&prefix, "matching")).await;
    wait_until("10 results", Duration::from_secs(30), || async {
        submitter.results().await.unwrap().len() == 10
    })
    .await;
    stop.stop();
    let stats = running.await.unwrap();
    assert_eq!((stats.ok, stats.claimed), (10, 10), "{stats:?}");
}

/// Entries with a refusal recorded (the errors hash), read through Redis.
async fn source_refused(url: &str, prefix: &str) -> usize {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = aqueduct_redis::wire::Keys::new(prefix);
    redis::cmd("HLEN")
        .arg(keys.errors())
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_submit_with_the_same_id_adds_no_second_entry() {
    let (_server, url) = common::server();
    let prefix = common::prefix("idempotent");
    let submitter = common::submitter(&url, &prefix).await;
    let task = job(1, 0);
    let first = submitter
        .submit_with_id("order-1", &task, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(first, Submitted::New(_)));
    let again = submitter
        .submit_with_id("order-1", &task, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again, Submitted::Duplicate);
    // An already-expired task is stored as expired, not run.
    submitter
        .submit_with_id("late", &job(2, 0), Duration::ZERO)
        .await
        .unwrap();
    let flow = aqueduct::flow!(common::work).start().await.unwrap();
    let (stop, running) = start_source(&url, flow, quick(&prefix, "solo")).await;
    wait_until("2 results", Duration::from_secs(20), || async {
        submitter.results().await.unwrap().len() == 2
    })
    .await;
    assert!(matches!(
        submitter.result("late").await.unwrap(),
        Some(Outcome::Expired)
    ));
    stop.stop();
    let stats = running.await.unwrap();
    assert_eq!(
        (stats.read, stats.ok, stats.expired),
        (2, 1, 1),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_is_survived() {
    // Always a private server: this test kills and restarts it (append-only file,
    // fsync on every write, so the restart keeps the data).
    let mut server = LocalServer::start_persistent().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let prefix = common::prefix("restart");
    let submitter = common::submitter(&url, &prefix).await;
    const N: u64 = 1000;
    let mut ids = HashSet::new();
    for i in 0..N {
        ids.insert(submitter.submit(&job(i, 0)).await.unwrap());
    }
    let mut config = quick(&prefix, "survivor");
    config.commit_retry = Duration::from_secs(3);
    config.claim_idle = Duration::from_secs(6);
    config.max_deliveries = 10;
    let flow = aqueduct::flow!(common::work).start().await.unwrap();
    let (stop, running) = start_source(&url, flow, config).await;
    wait_until("200 results", Duration::from_secs(30), || async {
        submitter.results().await.unwrap().len() >= 200
    })
    .await;
    tokio::task::block_in_place(|| server.restart()).unwrap();
    wait_until(
        "every result after the restart",
        Duration::from_secs(45),
        || async { matches!(submitter.results().await, Ok(r) if r.len() as u64 >= N) },
    )
    .await;
    let results = submitter.results().await.unwrap();
    assert_eq!(results.len() as u64, N, "no duplicate results");
    let stored: HashSet<_> = results.iter().map(|c| c.id.clone()).collect();
    assert_eq!(stored, ids, "every id has exactly one result");
    stop.stop();
    let stats = running.await.unwrap();
    assert!(stats.redis_errors > 0, "the restart was noticed: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_entries_for_one_id_run_both_but_store_one_result() {
    let (_server, url) = common::server();
    let prefix = common::prefix("twice");
    let submitter = common::submitter(&url, &prefix).await;
    let id = submitter.submit(&job(3, 0)).await.unwrap();
    // A producer that bypasses the submit marker (or a replayed stream) adds the same
    // task again: both entries are read in one batch, neither has a result yet, so both
    // run; the first outcome stored wins and the second is discarded.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = aqueduct_redis::wire::Keys::new(&prefix);
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(keys.tasks())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut xadd = redis::cmd("XADD");
    xadd.arg(keys.tasks()).arg("*");
    for (k, v) in &entries.ids[0].map {
        xadd.arg(k)
            .arg(redis::from_redis_value::<Vec<u8>>(v).unwrap());
    }
    xadd.exec_async(&mut conn).await.unwrap();

    let flow = aqueduct::flow!(common::work).start().await.unwrap();
    let (stop, running) = start_source(&url, flow, quick(&prefix, "solo")).await;
    // Both entries are read by the same XREADGROUP, so once neither is pending both
    // have been through the commit.
    wait_until("both entries acked", Duration::from_secs(20), || async {
        let summary: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(keys.tasks())
            .arg("aqueduct")
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        redis::from_redis_value::<u64>(&summary[0]).unwrap() == 0
            && submitter.results().await.unwrap().len() == 1
    })
    .await;
    stop.stop();
    let stats = running.await.unwrap();
    assert_eq!(
        (stats.read, stats.ok, stats.discarded),
        (2, 2, 1),
        "{stats:?}"
    );
    let results = submitter.results().await.unwrap();
    assert_eq!(results.len(), 1, "one visible result: {results:?}");
    assert_eq!(results[0].id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_submitted_with_no_limit_is_stored_and_run() {
    let (_server, url) = common::server();
    let prefix = common::prefix("no-limit");
    // Every payload as a blob: its expiry is set from the timeout too.
    let submitter = common::submitter(&url, &prefix).await.inline_limit(0);
    let task = job(3, 0);
    let expected = common::sum_of(&task.data.view().unwrap(), task.x);
    for (id, timeout) in [
        ("max", Duration::MAX),
        ("millis", Duration::from_millis(u64::MAX)),
    ] {
        let submitted = submitter.submit_with_id(id, &task, timeout).await.unwrap();
        assert!(
            matches!(submitted, Submitted::New(_)),
            "{id}: {submitted:?}"
        );
    }
    let flow = aqueduct::flow!(common::work).start().await.unwrap();
    let (stop, running) = start_source(&url, flow, quick(&prefix, "solo")).await;
    wait_until("2 results", Duration::from_secs(20), || async {
        submitter.results().await.unwrap().len() == 2
    })
    .await;
    for id in ["max", "millis"] {
        match submitter.result(id).await.unwrap() {
            Some(Outcome::Ok(out)) => assert_eq!(out.sum, expected, "{id}"),
            other => panic!("{id}: {:?}", other.map(|_| ())),
        }
    }
    stop.stop();
    let stats = running.await.unwrap();
    assert_eq!(
        (stats.read, stats.ok, stats.expired),
        (2, 2, 0),
        "{stats:?}"
    );
}
