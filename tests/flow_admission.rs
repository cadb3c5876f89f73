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

gated_stage!(in_line, IN_LINE, IN_LINE_GATE);

/// More callers than the queue holds: each stands in line (the send happens as the call
/// is made), goes in as room is made without its caller being polled, and runs in the
/// order the calls were made; a caller that gives up leaves the line, and its task
/// never runs.
#[tokio::test]
async fn callers_beyond_the_queue_go_in_as_they_came_and_one_that_gives_up_leaves() {
    let flow = aqueduct::flow!(in_line).start().await.unwrap();
    let admitted = saturate(&flow, &IN_LINE_GATE).await;
    let job = |id| Job { id, work_ms: 0 };
    let mut in_line: Vec<_> = (10..20)
        .map(|id| Some(flow.process_timeout(job(id), LIMIT)))
        .collect();
    // Job 13 gives up while the worker is still held.
    in_line[3] = None;
    IN_LINE_GATE.open();
    // Awaited last to first: the others went in and ran without being polled.
    for (index, call) in in_line.into_iter().enumerate().rev() {
        if let Some(call) = call {
            assert_eq!(call.await.unwrap().id, 10 + index as u64);
        }
    }
    for call in admitted {
        call.await.unwrap().unwrap();
    }
    let ran = IN_LINE.lock().unwrap().clone();
    assert_eq!(ran, [0, 1, 2, 3, 4, 10, 11, 12, 14, 15, 16, 17, 18, 19]);
    assert_eq!(
        flow.stats()[0].abandoned,
        0,
        "job 13 left the line: it never took room in the queue, to be dropped there"
    );
}

gated_stage!(late_entry, LATE_ENTRY, LATE_ENTRY_GATE);

/// A task that went in before the end of its caller's wait for room, and is answered
/// after it, is answered, not turned away: once in, only the call's own deadline counts.
#[tokio::test]
async fn a_task_that_went_in_before_its_wait_ended_is_answered_after_it() {
    let flow = aqueduct::flow!(late_entry)
        .max_queue_wait(Duration::from_millis(30))
        .start()
        .await
        .unwrap();
    let admitted = saturate(&flow, &LATE_ENTRY_GATE).await;
    // In line; once room is made it goes in at once, and its handler then works for
    // longer than the wait for room may last.
    let slow = flow.process_timeout(Job { id: 9, work_ms: 80 }, LIMIT);
    LATE_ENTRY_GATE.open();
    assert_eq!(slow.await.unwrap().id, 9);
    for call in admitted {
        call.await.unwrap().unwrap();
    }
}

gated_stage!(stopped_in_line, STOPPED_IN_LINE, STOPPED_IN_LINE_GATE);

/// A graceful stop finishes the accepted tasks and answers the callers still standing in
/// line for room with `NotRunning` at once, without waiting for the held worker.
#[tokio::test]
async fn a_graceful_stop_turns_away_the_callers_still_in_line() {
    let flow = aqueduct::flow!(stopped_in_line).start().await.unwrap();
    let admitted = saturate(&flow, &STOPPED_IN_LINE_GATE).await;
    let in_line = flow.process_timeout(Job { id: 9, work_ms: 0 }, LIMIT);
    let stopping = tokio::spawn({
        let flow = flow.clone();
        async move { flow.stop(true).await }
    });
    assert_eq!(in_line.await.unwrap_err(), Error::NotRunning);
    assert_eq!(
        STOPPED_IN_LINE_GATE.waiting(),
        1,
        "answered while the worker was held"
    );
    STOPPED_IN_LINE_GATE.open();
    for call in admitted {
        call.await.unwrap().unwrap();
    }
    stopping.await.unwrap();
    let mut ran = STOPPED_IN_LINE.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(ran, [0, 1, 2, 3, 4], "the task in line never ran");
}

static CROWD_RAN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[aqueduct::handler(isolation = "thread", queue_size = 4, nprocs = 2)]
fn crowded(job: &mut Job) {
    std::thread::sleep(Duration::from_micros(job.work_ms));
    CROWD_RAN.lock().unwrap().push(job.id);
}

/// How a crowd's call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Answered,
    /// Refused before its task could run: turned away, or the flow stopped.
    Refused,
    /// Timed out, or its caller gave up: its task may have run, once.
    Dropped,
}

/// Many more callers than room, of both priorities, some with a timeout too short to
/// get in, some giving up while they wait, and then a stop while callers still stand in
/// line: every call ends, its answer is its own, no task runs twice, and no refused task
/// runs at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_callers_that_time_out_give_up_and_meet_a_stop_loses_nothing() {
    let flow = aqueduct::flow!(crowded)
        .priorities(2)
        .start()
        .await
        .unwrap();
    let call = |id: u64| {
        let flow = flow.clone();
        tokio::spawn(async move {
            let job = Job { id, work_ms: 50 };
            let timeout = if id % 7 == 0 {
                Duration::from_millis(2)
            } else {
                LIMIT
            };
            let call = flow
                .submit(job)
                .priority((id % 2) as usize)
                .timeout(timeout);
            let outcome = if id % 5 == 0 {
                match tokio::time::timeout(Duration::from_millis(1), call).await {
                    Ok(outcome) => outcome,
                    Err(_gave_up) => return (id, Ended::Dropped),
                }
            } else {
                call.await
            };
            let ended = match outcome {
                Ok(out) => {
                    assert_eq!(out.id, id, "its own answer");
                    Ended::Answered
                }
                Err(Error::Overloaded { .. } | Error::NotRunning) => Ended::Refused,
                Err(Error::Timeout { .. }) => Ended::Dropped,
                Err(other) => panic!("call {id}: {other:?}"),
            };
            (id, ended)
        })
    };
    let mut ended = Vec::new();
    for call in (0..600).map(call).collect::<Vec<_>>() {
        ended.push(call.await.unwrap());
    }
    // A second crowd, and a graceful stop while it stands in line.
    let second: Vec<_> = (600..900).map(call).collect();
    until(LIMIT, || flow.stats()[0].queued >= 4).await;
    flow.stop(true).await;
    for call in second {
        ended.push(call.await.unwrap());
    }
    let ran = CROWD_RAN.lock().unwrap().clone();
    let runs = |id| ran.iter().filter(|&&ran| ran == id).count();
    for (id, ended) in &ended {
        match ended {
            Ended::Answered => assert_eq!(runs(*id), 1, "call {id}"),
            Ended::Refused => assert_eq!(runs(*id), 0, "call {id} was refused"),
            Ended::Dropped => assert!(runs(*id) <= 1, "call {id}"),
        }
    }
    let answered = ended.iter().filter(|(_, e)| *e == Ended::Answered).count();
    assert!(answered > 0 && ran.len() <= 900);
}
