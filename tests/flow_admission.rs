//! Admission control: a full first stage either rejects at once or lets a caller wait a
//! bounded time, and a task the queued work would make expire is turned away rather than
//! admitted to expire.
//!
//! A worker thread is held inside its handler with a `Gate`, so the queue holds exactly
//! the tasks the test put there (Triton-style: saturate, send k more, count rejections).

use std::sync::Mutex;
use std::time::Duration;

use aqueduct::{Error, Flow};
use aqueduct_suite::{until, Gate};

const LIMIT: Duration = Duration::from_secs(10);
const QUEUE: usize = 4;

#[aqueduct::task]
struct Job {
    id: u64,
    /// Milliseconds the handler works on this job.
    work_ms: u64,
}

/// Records the ids it ran; job 0 waits at the stage's gate first.
fn run(seen: &Mutex<Vec<u64>>, gate: &Gate, job: &Job) {
    if job.id == 0 {
        gate.wait();
    }
    std::thread::sleep(Duration::from_millis(job.work_ms));
    seen.lock().unwrap().push(job.id);
}

macro_rules! gated_stage {
    ($name:ident, $seen:ident, $gate:ident) => {
        static $seen: Mutex<Vec<u64>> = Mutex::new(Vec::new());
        static $gate: Gate = Gate::new();
        #[aqueduct::handler(isolation = "thread", queue_size = 4)]
        fn $name(job: &mut Job) {
            run(&$seen, &$gate, job);
        }
    };
}

/// Spawns one `process` call per job, each from its own task.
fn submit(
    flow: &Flow<Job, Job>,
    jobs: impl IntoIterator<Item = (u64, Duration)>,
) -> Vec<tokio::task::JoinHandle<Result<u64, Error>>> {
    jobs.into_iter()
        .map(|(id, timeout)| {
            let flow = flow.clone();
            tokio::spawn(async move {
                let job = Job { id, work_ms: 0 };
                flow.process_timeout(job, timeout).await.map(|out| out.id)
            })
        })
        .collect()
}

/// Holds the worker in job 0 and fills the queue with jobs 1..=QUEUE.
async fn saturate(
    flow: &Flow<Job, Job>,
    gate: &Gate,
) -> Vec<tokio::task::JoinHandle<Result<u64, Error>>> {
    let mut calls = submit(flow, [(0, LIMIT)]);
    until(LIMIT, || gate.waiting() == 1).await;
    calls.extend(submit(flow, (1..=QUEUE as u64).map(|id| (id, LIMIT))));
    until(LIMIT, || flow.stats()[0].queued == QUEUE).await;
    calls
}

gated_stage!(shedding, SHEDDING, SHEDDING_GATE);

#[tokio::test]
async fn a_flow_that_rejects_when_full_turns_away_exactly_the_overflow_at_once() {
    let flow = aqueduct::flow!(shedding)
        .reject_when_full()
        .start()
        .await
        .unwrap();
    let admitted = saturate(&flow, &SHEDDING_GATE).await;
    // Three more, with the worker still held: each is answered while the gate is
    // closed, so none waited for room.
    for id in 10..13 {
        let refused = flow.process_timeout(Job { id, work_ms: 0 }, LIMIT).await;
        assert_eq!(
            refused.err(),
            Some(Error::Overloaded {
                stage: "shedding",
                waited: Duration::ZERO
            }),
            "job {id}"
        );
    }
    assert_eq!(SHEDDING_GATE.waiting(), 1, "the worker was held throughout");
    SHEDDING_GATE.open();
    for (id, call) in admitted.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), Ok(id as u64));
    }
    let mut seen = SHEDDING.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4], "the refused jobs never ran");
}

gated_stage!(bounded_wait, BOUNDED_WAIT, BOUNDED_WAIT_GATE);

#[tokio::test]
async fn max_queue_wait_bounds_the_wait_for_room_under_a_long_timeout() {
    let flow = aqueduct::flow!(bounded_wait)
        .max_queue_wait(Duration::from_millis(30))
        .start()
        .await
        .unwrap();
    let admitted = saturate(&flow, &BOUNDED_WAIT_GATE).await;
    let refused = flow.process_timeout(Job { id: 9, work_ms: 0 }, LIMIT).await;
    assert_eq!(
        refused.err(),
        Some(Error::Overloaded {
            stage: "bounded_wait",
            waited: Duration::from_millis(30)
        })
    );
    BOUNDED_WAIT_GATE.open();
    for call in admitted {
        call.await.unwrap().unwrap();
    }
}

gated_stage!(measured, MEASURED, MEASURED_GATE);

#[tokio::test]
async fn a_task_the_queued_work_would_make_expire_is_turned_away_not_admitted() {
    let flow = aqueduct::flow!(measured).start().await.unwrap();
    // Teach the flow the stage's pace: at least 20 ms a task.
    for id in 100..103 {
        let job = Job { id, work_ms: 20 };
        flow.process_timeout(job, LIMIT).await.unwrap();
    }
    let mut calls = submit(&flow, [(0, LIMIT)]);
    until(LIMIT, || MEASURED_GATE.waiting() == 1).await;
    calls.extend(submit(&flow, [(1, LIMIT), (2, LIMIT)]));
    until(LIMIT, || flow.stats()[0].queued == 2).await;
    // Two tasks queued ahead at >= 20 ms each: 50 ms cannot be enough, and the queue
    // has room, so only the estimate can refuse it.
    let short = flow
        .process_timeout(Job { id: 7, work_ms: 0 }, Duration::from_millis(50))
        .await;
    assert!(
        matches!(short, Err(Error::Overloaded { waited, .. }) if waited.is_zero()),
        "{short:?}"
    );
    // With time enough it is admitted.
    calls.extend(submit(&flow, [(8, LIMIT)]));
    until(LIMIT, || flow.stats()[0].queued == 3).await;
    MEASURED_GATE.open();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert!(
        !MEASURED.lock().unwrap().contains(&7),
        "the refused job never ran"
    );
}

gated_stage!(idle_slow, IDLE_SLOW, IDLE_SLOW_GATE);

#[tokio::test]
async fn an_idle_flow_still_answers_a_too_short_timeout_with_timeout() {
    let flow = aqueduct::flow!(idle_slow).start().await.unwrap();
    for round in 1..=3u64 {
        let slow = Job { id: 5, work_ms: 30 };
        let outcome = flow.process_timeout(slow, Duration::from_millis(5)).await;
        assert!(
            matches!(outcome, Err(Error::Timeout { .. })),
            "{outcome:?}: nothing was queued ahead, so nothing was turned away"
        );
        // The handler finishes the job anyway, unless the job's 5 ms passed before it
        // was dispatched (a busy machine), when it is dropped unrun; either way the next
        // round starts on an idle flow, whose pace (30 ms a task) is known once a job
        // ran.
        until(LIMIT, || {
            let ran = IDLE_SLOW.lock().unwrap().len() as u64;
            ran + flow.stats()[0].abandoned == round
        })
        .await;
    }
    assert_eq!(IDLE_SLOW_GATE.waiting(), 0);
}

gated_stage!(unbounded_wait, UNBOUNDED_WAIT, UNBOUNDED_WAIT_GATE);

/// `Duration::MAX` as the longest wait for room and as the call's timeout: no limit,
/// not a panic. The call waits for room until the worker is let go, then runs.
#[tokio::test]
async fn a_wait_for_room_with_no_limit_waits_until_there_is_room() {
    let flow = aqueduct::flow!(unbounded_wait)
        .max_queue_wait(Duration::MAX)
        .start()
        .await
        .unwrap();
    let admitted = saturate(&flow, &UNBOUNDED_WAIT_GATE).await;
    // The queue is full: the call, as it is made, sets out to wait for room.
    let waiting = flow.process_timeout(Job { id: 9, work_ms: 0 }, Duration::MAX);
    UNBOUNDED_WAIT_GATE.open();
    assert_eq!(waiting.await.unwrap().id, 9);
    for call in admitted {
        call.await.unwrap().unwrap();
    }
    let mut seen = UNBOUNDED_WAIT.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4, 9]);
}
