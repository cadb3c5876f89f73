//! A call to an idle flow dispatches its own task on the first stage's worker (no queue,
//! no runner in between). The caller then holds the stage's only seat while its task
//! runs, so a caller that stops waiting must not take the seat with it: its job goes on
//! without it, the answer is taken, and the stage serves the next call and stops.

use std::sync::Mutex;
use std::time::Duration;

use aqueduct::{Error, Flow};
use aqueduct_suite::{until, Gate};

const LIMIT: Duration = Duration::from_secs(10);

#[aqueduct::task]
struct Job {
    id: u64,
}

/// Records the ids it ran; job 0 waits at the stage's gate first.
macro_rules! gated_stage {
    ($name:ident, $seen:ident, $gate:ident) => {
        static $seen: Mutex<Vec<u64>> = Mutex::new(Vec::new());
        static $gate: Gate = Gate::new();
        #[aqueduct::handler(isolation = "thread")]
        fn $name(job: &mut Job) {
            if job.id == 0 {
                $gate.wait();
            }
            $seen.lock().unwrap().push(job.id);
            job.id += 100;
        }
    };
}

/// The stage serves another call, ran `0` once and that call once, and stops.
async fn still_serving(flow: Flow<Job, Job>, seen: &Mutex<Vec<u64>>) {
    let next = flow.process_timeout(Job { id: 7 }, LIMIT).await;
    assert_eq!(next.map(|out| out.id), Ok(107));
    until(LIMIT, || seen.lock().unwrap().len() == 2).await;
    assert_eq!(*seen.lock().unwrap(), [0, 7], "each task ran once");
    tokio::time::timeout(LIMIT, flow.stop(true))
        .await
        .expect("a graceful stop finishes");
}

/// A `process` call for job `id` on a task of its own; the output's id.
fn spawn_call(flow: &Flow<Job, Job>, id: u64) -> tokio::task::JoinHandle<Result<u64, Error>> {
    let flow = flow.clone();
    tokio::spawn(async move {
        flow.process_timeout(Job { id }, LIMIT)
            .await
            .map(|out| out.id)
    })
}

gated_stage!(dropped_elsewhere, DROPPED_SEEN, DROPPED_GATE);

#[tokio::test]
async fn a_call_dropped_on_another_thread_while_its_task_runs_leaves_the_stage_serving() {
    let flow = aqueduct::flow!(dropped_elsewhere).start().await.unwrap();
    let caller = flow.clone();
    let mut call = Box::pin(async move { caller.process(Job { id: 0 }).await });
    // One poll: the task is dispatched and the handler holds it at the gate.
    tokio::select! {
        biased;
        _ = &mut call => panic!("the handler is held"),
        () = std::future::ready(()) => {}
    }
    until(LIMIT, || DROPPED_GATE.waiting() == 1).await;
    // Dropped where no runtime runs (as a graph processor's `cancel_all` does).
    std::thread::spawn(move || drop(call)).join().unwrap();
    DROPPED_GATE.open();
    still_serving(flow, &DROPPED_SEEN).await;
}

gated_stage!(timed_out, TIMED_OUT_SEEN, TIMED_OUT_GATE);

#[tokio::test]
async fn a_call_whose_deadline_passes_while_its_task_runs_leaves_the_stage_serving() {
    let flow = aqueduct::flow!(timed_out).start().await.unwrap();
    let late = flow
        .process_timeout(Job { id: 0 }, Duration::from_millis(50))
        .await;
    assert_eq!(
        late.err(),
        Some(Error::Timeout {
            after: Duration::from_millis(50)
        })
    );
    assert_eq!(TIMED_OUT_GATE.waiting(), 1, "still in the handler");
    TIMED_OUT_GATE.open();
    still_serving(flow, &TIMED_OUT_SEEN).await;
}

static FIRST_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static SECOND_GATE: Gate = Gate::new();

#[aqueduct::handler(isolation = "thread")]
fn quick_first(job: &mut Job) {
    FIRST_SEEN.lock().unwrap().push(job.id);
}

/// Fast, but job 0 waits at the gate.
#[aqueduct::handler(isolation = "thread")]
fn held_second(job: &mut Job) {
    if job.id == 0 {
        SECOND_GATE.wait();
    }
    job.id += 100;
}

#[tokio::test]
async fn a_lone_task_gone_straight_on_to_the_next_stage_does_not_hold_the_stage_before() {
    let flow = aqueduct::flow!(quick_first -> held_second)
        .start()
        .await
        .unwrap();
    // Both stages measured fast, and idle: a lone task goes through in its caller's
    // task, straight from stage to stage.
    for id in 1..=20 {
        assert_eq!(
            flow.process(Job { id }).await.map(|out| out.id),
            Ok(id + 100)
        );
    }
    let held = spawn_call(&flow, 0);
    until(LIMIT, || SECOND_GATE.waiting() == 1).await;
    // Job 0 is in the second stage's handler; the first stage serves the next task.
    let next = spawn_call(&flow, 21);
    until(LIMIT, || FIRST_SEEN.lock().unwrap().contains(&21)).await;
    assert_eq!(SECOND_GATE.waiting(), 1, "job 0 still held");
    SECOND_GATE.open();
    assert_eq!(held.await.unwrap(), Ok(100));
    assert_eq!(next.await.unwrap(), Ok(121));
    flow.stop(true).await;
}

/// Slow enough that calls time out, or are dropped, while their job is in flight.
#[aqueduct::handler(isolation = "thread")]
fn add_one(job: &mut Job) {
    std::thread::sleep(Duration::from_micros(200));
    job.id += 1;
}

#[aqueduct::handler(isolation = "process")]
fn add_ten(job: &mut Job) {
    job.id += 10;
}

/// Waves of 1 to 7 concurrent calls, so stages are often idle between them and tasks
/// take the direct way as often as the queue; some calls time out at once, some are
/// dropped mid-way. Every answered call has its own result, and at the end every seat
/// is home: a lone call goes through, and a graceful stop finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_time_out_or_are_dropped_amid_direct_dispatch_lose_no_seat() {
    let flow = aqueduct::flow!(add_one -> add_ten -> add_one)
        .start()
        .await
        .unwrap();
    let (mut answered, mut refused) = (0, 0);
    for wave in 0..150u64 {
        let mut calls = tokio::task::JoinSet::new();
        for k in 0..(wave % 7 + 1) {
            let flow = flow.clone();
            let id = wave * 100 + k;
            calls.spawn(async move {
                let timeout = match id % 5 {
                    0 => Duration::from_micros(20),
                    _ => LIMIT,
                };
                let call = flow.process_timeout(Job { id }, timeout);
                if id % 5 == 1 {
                    // Dropped if it takes longer than this.
                    tokio::time::timeout(Duration::from_micros(30), call)
                        .await
                        .ok()
                        .map(|outcome| (id, outcome))
                } else {
                    Some((id, call.await))
                }
            });
        }
        while let Some(call) = calls.join_next().await {
            match call.unwrap() {
                Some((id, Ok(out))) => {
                    assert_eq!(out.id, id + 12);
                    answered += 1;
                }
                Some((_, Err(Error::Timeout { .. } | Error::Overloaded { .. }))) | None => {
                    refused += 1
                }
                Some((id, Err(error))) => panic!("job {id}: {error}"),
            }
        }
    }
    assert!(
        answered > 0 && refused > 0,
        "{answered} answered, {refused} not"
    );
    assert_eq!(flow.process(Job { id: 1 }).await.map(|out| out.id), Ok(13));
    tokio::time::timeout(LIMIT, flow.stop(true))
        .await
        .expect("a graceful stop finishes");
}

/// Two stages with the given isolation: the first fails every third job (the second
/// then gets no task from that call) and adds 1, the second adds 10. One job in twenty
/// takes the first stage a millisecond: longer than the second stage's worker polls for
/// a task it was told to expect.
macro_rules! failing_pipeline {
    ($isolation:literal: $first:ident -> $second:ident) => {
        #[aqueduct::handler(isolation = $isolation)]
        fn $first(job: &mut Job) -> Result<(), String> {
            if job.id % 20 == 7 {
                std::thread::sleep(Duration::from_millis(1));
            }
            if job.id % 3 == 0 {
                return Err("every third job fails".to_string());
            }
            job.id += 1;
            Ok(())
        }

        #[aqueduct::handler(isolation = $isolation)]
        fn $second(job: &mut Job) {
            job.id += 10;
        }
    };
}

failing_pipeline!("process": fails_some -> then_tens);
failing_pipeline!("thread": thread_fails_some -> thread_then_tens);

/// Lone calls, one after another, some paced far apart (each stage's worker asleep when
/// the next one comes) and some back to back, each crossing the idle stages straight
/// (see `flow::direct`): every answer is right, no worker is lost and no task runs twice.
/// The back-to-back calls come first and are more than the flow measures before it
/// tries telling the second stage ahead (see `flow::expecting`), so some run that way,
/// with its expectations met, met late (a slow first stage) and not at all (a first
/// stage that fails sends nothing on).
async fn lone_calls_through(flow: Flow<Job, Job>) {
    for id in 1..=1800u64 {
        answered_right(id, flow.process_timeout(Job { id }, LIMIT).await);
    }
    for id in 1..=60u64 {
        answered_right(id, flow.process_timeout(Job { id }, LIMIT).await);
        if id % 2 == 0 {
            // Past every poll: the workers are asleep when the next call comes.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for stage in flow.stats() {
        assert_eq!(stage.restarts, 0, "{}: no worker was lost", stage.name);
        assert_eq!(stage.retried, 0, "{}: no task ran twice", stage.name);
    }
    tokio::time::timeout(LIMIT, flow.stop(true))
        .await
        .expect("a graceful stop finishes");
}

/// Job `id`'s answer through a failing pipeline: the first stage's error for every third
/// job, both stages' work on the others.
fn answered_right(id: u64, out: Result<aqueduct::Owned<Job>, Error>) {
    if id % 3 == 0 {
        assert!(
            matches!(out, Err(Error::Handler { .. })),
            "job {id}: {out:?}"
        );
    } else {
        assert_eq!(out.map(|out| out.id), Ok(id + 11), "job {id}");
    }
}

#[tokio::test]
async fn lone_tasks_through_quiet_process_stages_some_failing_are_answered_right() {
    let flow = aqueduct::flow!(fails_some -> then_tens)
        .start()
        .await
        .unwrap();
    lone_calls_through(flow).await;
}

#[tokio::test]
async fn lone_tasks_through_quiet_thread_stages_some_failing_are_answered_right() {
    let flow = aqueduct::flow!(thread_fails_some -> thread_then_tens)
        .start()
        .await
        .unwrap();
    lone_calls_through(flow).await;
}

static PASSER_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static NARROW_GATE: Gate = Gate::new();

/// Batches of two (a lone task runs alone): one dispatch per worker, never a second
/// queued behind it, as a stage of single tasks measured at 20 us-1 ms a task would.
#[aqueduct::handler(isolation = "thread", batch_size = 2)]
fn passer(job: &mut Job) {
    PASSER_SEEN.lock().unwrap().push(job.id);
}

/// A queue of one task; job 0 waits at the gate.
#[aqueduct::handler(isolation = "thread", queue_size = 1)]
fn narrow(job: &mut Job) {
    if job.id == 0 {
        NARROW_GATE.wait();
    }
    job.id += 100;
}

#[tokio::test]
async fn a_task_meeting_a_full_next_queue_waits_for_room_and_holds_its_stage() {
    let flow = aqueduct::flow!(passer -> narrow).start().await.unwrap();
    let passed = |id| PASSER_SEEN.lock().unwrap().contains(&id);
    // Job 0 runs in the second stage, held; job 1 fills its queue of one.
    let held = spawn_call(&flow, 0);
    until(LIMIT, || NARROW_GATE.waiting() == 1).await;
    let first_queued = spawn_call(&flow, 1);
    until(LIMIT, || passed(1) && flow.stats()[1].queued == 1).await;
    // Job 2 passes the first stage and finds the next queue full: its job waits for
    // room, holding the first stage's worker, so job 3 waits in the first queue. (Job 2
    // goes on alone, or with a run if job 3 is queued first: both wait the same way; the
    // lone way's wait is also tested on its own, in `flow::downstream`.)
    let waiting = spawn_call(&flow, 2);
    until(LIMIT, || passed(2)).await;
    let behind = spawn_call(&flow, 3);
    until(LIMIT, || flow.stats()[0].queued == 1).await;
    assert!(
        !passed(3),
        "the first stage's worker is held by job 2's delivery"
    );
    NARROW_GATE.open();
    for (call, id) in [(held, 0), (first_queued, 1), (waiting, 2), (behind, 3)] {
        assert_eq!(call.await.unwrap(), Ok(id + 100), "job {id}");
    }
    assert_eq!(
        *PASSER_SEEN.lock().unwrap(),
        [0, 1, 2, 3],
        "each ran once, in order"
    );
    flow.stop(true).await;
}
