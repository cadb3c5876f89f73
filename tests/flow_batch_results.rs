//! Batch handlers that report a result per task: a failure fails only its task, in
//! worker threads and processes; a result count that is not the batch's fails the batch
//! with a typed error, never a panic.

use std::time::Duration;

use aqueduct::Error;

#[aqueduct::task]
struct Item {
    id: u64,
    doubled: u64,
}

#[aqueduct::task]
struct Scored {
    id: u64,
    score: u64,
}

fn item(id: u64) -> Item {
    Item { id, doubled: 0 }
}

/// Odd ids are bad input.
fn check(item: &Item) -> Result<(), String> {
    if item.id % 2 == 1 {
        Err(format!("item {} is odd", item.id))
    } else {
        Ok(())
    }
}

macro_rules! in_place_stage {
    ($name:ident, $($arg:tt)*) => {
        #[aqueduct::handler(batch_size = 8, batch_timeout_ms = 50, $($arg)*)]
        fn $name(items: &mut [Item]) -> Vec<Result<(), String>> {
            items
                .iter_mut()
                .map(|item| {
                    check(item)?;
                    item.doubled = item.id * 2;
                    Ok(())
                })
                .collect()
        }
    };
}

in_place_stage!(in_place_threads, isolation = "thread");
in_place_stage!(in_place_processes, nprocs = 1);

/// An error type of the handler's own, shown through `Display`.
#[derive(Debug)]
struct Unscorable(u64);

impl std::fmt::Display for Unscorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot score item {}", self.0)
    }
}

#[aqueduct::handler(batch_size = 8, batch_timeout_ms = 50)]
fn score(items: Vec<Item>) -> Vec<Result<Scored, Unscorable>> {
    items
        .into_iter()
        .map(|item| match check(&item) {
            Ok(()) => Ok(Scored {
                id: item.id,
                score: item.id * 10,
            }),
            Err(_) => Err(Unscorable(item.id)),
        })
        .collect()
}

/// Returns one result too few.
#[aqueduct::handler(isolation = "thread", batch_size = 4, batch_timeout_ms = 50)]
fn miscounting(items: &mut [Item]) -> Vec<Result<(), String>> {
    items.iter().skip(1).map(|_| Ok(())).collect()
}

/// Runs ids 0..8 at once (one batch) and returns each outcome, mapped by `f`.
async fn run_batch<Out: aqueduct::Task>(
    flow: &aqueduct::Flow<Item, Out>,
    f: impl Fn(&Out) -> u64,
) -> Vec<Result<u64, Error>> {
    let calls: Vec<_> = (0..8)
        .map(|id| {
            let flow = flow.clone();
            tokio::spawn(async move {
                flow.process_timeout(item(id), Duration::from_secs(10))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap().map(|out| f(&out)));
    }
    outcomes
}

fn assert_only_odd_failed(
    outcomes: &[Result<u64, Error>],
    stage: &str,
    ok: impl Fn(u64) -> u64,
    message: impl Fn(u64) -> String,
) {
    for (id, outcome) in outcomes.iter().enumerate() {
        let id = id as u64;
        if id % 2 == 1 {
            assert_eq!(
                outcome.as_ref().err(),
                Some(&Error::Handler {
                    stage: stage.to_string().leak(),
                    message: message(id)
                }),
                "item {id}"
            );
        } else {
            assert_eq!(outcome.as_ref().ok(), Some(&ok(id)), "item {id}");
        }
    }
}

#[tokio::test]
async fn in_place_per_task_failures_fail_only_their_task() {
    for flow in [
        aqueduct::flow!(in_place_threads).start().await.unwrap(),
        aqueduct::flow!(in_place_processes).start().await.unwrap(),
    ] {
        let stage = flow.stats()[0].name;
        let outcomes = run_batch(&flow, |out| out.doubled).await;
        assert_only_odd_failed(
            &outcomes,
            stage,
            |id| id * 2,
            |id| format!("item {id} is odd"),
        );
        assert!(flow.stats()[0].mean_batch_size() > 1.0, "ran as batches");
    }
}

#[tokio::test]
async fn transforming_per_task_failures_fail_only_their_task() {
    let flow = aqueduct::flow!(score).start().await.unwrap();
    let outcomes = run_batch(&flow, |out| out.score).await;
    assert_only_odd_failed(
        &outcomes,
        "score",
        |id| id * 10,
        |id| format!("cannot score item {id}"),
    );
}

#[tokio::test]
async fn a_result_count_that_is_not_the_batchs_fails_the_batch() {
    let flow = aqueduct::flow!(miscounting).start().await.unwrap();
    let outcome = flow.process(item(1)).await;
    assert_eq!(
        outcome.err(),
        Some(Error::Handler {
            stage: "miscounting",
            message: "returned 0 results for a batch of 1 tasks".into()
        })
    );
}
