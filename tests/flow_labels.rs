//! Errors say what happened: a task whose deadline passes while it waits in a stage's
//! queue is answered `Error::Timeout`, never `Error::Stopped` (which only a stop gives).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use aqueduct::Error;

#[aqueduct::task]
#[derive(Debug)]
struct Item {
    id: u64,
}

static GATE: Mutex<bool> = Mutex::new(false);
static OPENED: Condvar = Condvar::new();

/// Holds the only worker until the gate opens.
#[aqueduct::handler(isolation = "thread")]
fn held(_item: &mut Item) {
    let mut open = GATE.lock().unwrap();
    while !*open {
        open = OPENED.wait(open).unwrap();
    }
}

fn open_gate() {
    *GATE.lock().unwrap() = true;
    OPENED.notify_all();
}

#[tokio::test]
async fn a_task_that_expires_in_the_queue_is_a_timeout_not_a_stop() {
    let flow = aqueduct::flow!(held).start().await.unwrap();
    let blocker = tokio::spawn({
        let flow = flow.clone();
        async move { flow.process(Item { id: 0 }).await }
    });
    while flow.stats()[0].tasks == 0 {
        tokio::task::yield_now().await;
    }
    // Queued behind the held worker; polled once (to enqueue it), then left alone until
    // the stage has dropped it, so the answer it finds is the stage's, not its own timer's.
    let mut queued = Box::pin(flow.process_timeout(Item { id: 1 }, Duration::from_millis(20)));
    tokio::select! {
        biased;
        _ = &mut queued => panic!("it cannot be done yet"),
        () = std::future::ready(()) => {}
    }
    assert_eq!(flow.stats()[0].queued, 1);
    tokio::time::sleep(Duration::from_millis(40)).await; // past its deadline
    open_gate();
    blocker.await.unwrap().unwrap();
    while flow.stats()[0].abandoned == 0 {
        tokio::task::yield_now().await;
    }
    match queued.await {
        Err(Error::Timeout { after }) => assert_eq!(after, Duration::from_millis(20)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    flow.stop(true).await;
}
