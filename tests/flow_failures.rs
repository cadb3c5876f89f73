//! Failure isolation and lifecycle: a handler error or panic fails only its own tasks,
//! `init` failures and slow starts are reported with the stage's name, and `stop` keeps
//! its promises for accepted tasks.
//!
//! Stages that the test observes through gates or statics run on worker threads
//! (`isolation = "thread"`); the others use the default, worker processes.

use std::fmt;
use std::time::Duration;

use aqueduct::{Error, FlowState};
use aqueduct_suite::{until, Gate};

const LIMIT: Duration = Duration::from_secs(10);

#[aqueduct::task]
struct Job {
    id: u64,
    out: u64,
}

fn job(id: u64) -> Job {
    Job { id, out: 0 }
}

#[derive(Debug)]
struct OddInput(u64);

impl fmt::Display for OddInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "odd input {}", self.0)
    }
}

#[aqueduct::handler(batch_size = 16)]
fn halve(job: Job) -> Result<Job, OddInput> {
    if job.id % 2 == 1 {
        return Err(OddInput(job.id));
    }
    Ok(Job {
        id: job.id,
        out: job.id / 2,
    })
}

#[tokio::test]
async fn a_handler_error_fails_only_its_own_task() {
    let flow = aqueduct::flow!(halve).start().await.unwrap();
    let calls: Vec<_> = (0..40)
        .map(|id| {
            tokio::spawn({
                let flow = flow.clone();
                async move { flow.process(job(id)).await.map(|j| j.out) }
            })
        })
        .collect();
    for (id, call) in calls.into_iter().enumerate() {
        let id = id as u64;
        match call.await.unwrap() {
            Ok(out) => assert_eq!((id % 2, out), (0, id / 2)),
            Err(error) => assert_eq!(
                error,
                Error::Handler {
                    stage: "halve",
                    message: format!("odd input {id}")
                }
            ),
        }
    }
    assert_eq!(flow.stats()[0].failed, 20);
}

#[aqueduct::handler(batch_size = 8, batch_timeout_ms = 20)]
fn explode_on_13(jobs: &mut [Job]) {
    if jobs.iter().any(|j| j.id == 13) {
        panic!("cannot handle 13");
    }
    jobs.iter_mut().for_each(|j| j.out = j.id + 1);
}

#[tokio::test]
async fn a_panic_fails_its_batch_and_the_worker_carries_on() {
    let flow = aqueduct::flow!(explode_on_13).start().await.unwrap();
    let failed = flow.process(job(13)).await.unwrap_err();
    assert_eq!(
        failed,
        Error::Handler {
            stage: "explode_on_13",
            message: "panicked: cannot handle 13".into()
        }
    );
    for id in 0..20 {
        if id != 13 {
            assert_eq!(
                flow.process(job(id)).await.unwrap().out,
                id + 1,
                "worker still serving after the panic"
            );
        }
    }
}

#[aqueduct::handler]
fn explode_alone_on_13(job: &mut Job) {
    assert_ne!(job.id, 13, "cannot handle 13");
    job.out = job.id + 1;
}

#[aqueduct::handler(isolation = "thread")]
fn explode_alone_on_13_in_a_thread(job: &mut Job) {
    assert_ne!(job.id, 13, "cannot handle 13");
    job.out = job.id + 1;
}

#[test]
fn a_handler_of_one_task_is_called_with_runs_of_tasks_and_a_batch_handler_is_not() {
    use aqueduct::Stage;
    let each_on_its_own = [
        <explode_alone_on_13 as Stage>::EACH_ON_ITS_OWN,
        <halve as Stage>::EACH_ON_ITS_OWN,
        <explode_on_13 as Stage>::EACH_ON_ITS_OWN,
    ];
    assert_eq!(each_on_its_own, [true, true, false]);
}

/// A handler that takes one task gets runs of them in one call of the stage (several
/// callers at once: the runner hands a worker runs); a panic still fails only its task.
#[tokio::test]
async fn a_panic_in_a_handler_of_one_task_fails_only_that_task() {
    let flows = [
        aqueduct::flow!(explode_alone_on_13).start().await.unwrap(),
        aqueduct::flow!(explode_alone_on_13_in_a_thread)
            .start()
            .await
            .unwrap(),
    ];
    for flow in flows {
        let calls: Vec<_> = (0..64)
            .map(|id| {
                let flow = flow.clone();
                tokio::spawn(async move { flow.process(job(id)).await.map(|j| j.out) })
            })
            .collect();
        for (id, call) in calls.into_iter().enumerate() {
            let id = id as u64;
            match call.await.unwrap() {
                Ok(out) => assert_eq!(out, id + 1),
                Err(Error::Handler { message, .. }) => {
                    assert_eq!(id, 13, "only task 13 fails");
                    assert!(message.contains("cannot handle 13"), "{message}");
                }
                Err(other) => panic!("task {id}: {other}"),
            }
        }
        assert_eq!(flow.stats()[0].failed, 1);
        flow.stop(true).await;
    }
}

fn refuse_to_start() -> Result<u64, String> {
    Err("model file missing".into())
}

#[aqueduct::handler(init = refuse_to_start)]
fn never_runs(state: &mut u64, job: &mut Job) {
    job.out = *state;
}

#[tokio::test]
async fn an_init_error_fails_start_naming_the_stage() {
    let error = aqueduct::flow!(never_runs).start().await.unwrap_err();
    assert_eq!(
        error,
        Error::Init {
            stage: "never_runs",
            message: "model file missing".into()
        }
    );
}

fn panicking_init() -> u64 {
    panic!("GPU not found")
}

#[aqueduct::handler(init = panicking_init, nprocs = 2)]
fn never_runs_either(state: &mut u64, job: &mut Job) {
    job.out = *state;
}

#[tokio::test]
async fn a_panicking_init_fails_start_naming_the_stage() {
    let error = aqueduct::flow!(never_runs_either)
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::Init {
            stage: "never_runs_either",
            message: "panicked: GPU not found".into()
        }
    );
}

#[aqueduct::handler]
fn doubles(job: &mut Job) {
    job.out = job.id * 2;
}

#[aqueduct::handler(isolation = "thread", batch_size = 4, batch_timeout_ms = 5)]
fn doubles_in_timed_batches(jobs: &mut [Job]) {
    jobs.iter_mut().for_each(|job| job.out = job.id * 2);
}

/// A runtime built without its IO driver: process stages cannot watch their workers'
/// wake-ups, and fail `start` saying so; a thread stage's batch timeout, which watches a
/// timerfd where it can, falls back to tokio's timer.
#[test]
fn a_runtime_without_an_io_driver_fails_process_stages_and_keeps_batch_timeouts() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        match aqueduct::flow!(doubles).start().await {
            Err(Error::Init { stage, message }) => {
                assert_eq!(stage, "doubles");
                assert!(message.contains("IO enabled"), "{message}");
            }
            Err(other) => panic!("expected Error::Init, got {other}"),
            Ok(_) => panic!("a process stage started without an IO driver"),
        }
        let flow = aqueduct::flow!(doubles_in_timed_batches)
            .start()
            .await
            .unwrap();
        // A lone task: its batch can only be flushed by the timeout.
        let out = tokio::time::timeout(LIMIT, flow.process(job(21)))
            .await
            .expect("the batch timeout never fired")
            .unwrap();
        assert_eq!(out.out, 42);
        flow.stop(true).await;
    });
}

static SLOW_START: Gate = Gate::new();

fn slow_init() -> u64 {
    SLOW_START.wait();
    7
}

#[aqueduct::handler(isolation = "thread", init = slow_init, start_timeout_ms = 50)]
fn slow_to_start(state: &mut u64, job: &mut Job) {
    job.out = *state;
}

#[tokio::test]
async fn a_stage_that_does_not_start_in_time_is_named() {
    let error = aqueduct::flow!(slow_to_start).start().await.unwrap_err();
    SLOW_START.open();
    assert_eq!(
        error,
        Error::StartTimeout {
            stage: "slow_to_start",
            after: Duration::from_millis(50)
        }
    );
}

fn load_offset() -> u64 {
    1000
}

#[aqueduct::handler(init = load_offset, nprocs = 2)]
fn add_offset(offset: &mut u64, job: &mut Job) {
    job.out = job.id + *offset;
}

#[tokio::test]
async fn init_state_reaches_the_handler() {
    let flow = aqueduct::flow!(add_offset).start().await.unwrap();
    assert_eq!(flow.process(job(5)).await.unwrap().out, 1005);
}

static GRACEFUL: Gate = Gate::new();

#[aqueduct::handler(isolation = "thread")]
fn wait_at_graceful_gate(job: &mut Job) {
    GRACEFUL.wait();
    job.out = job.id * 10;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_every_accepted_task() {
    let flow = aqueduct::flow!(wait_at_graceful_gate)
        .start()
        .await
        .unwrap();
    let calls: Vec<_> = (1..=5)
        .map(|id| {
            tokio::spawn({
                let flow = flow.clone();
                async move { flow.process(job(id)).await.map(|j| j.out) }
            })
        })
        .collect();
    until(LIMIT, || {
        GRACEFUL.waiting() == 1 && flow.stats()[0].queued == 4
    })
    .await;
    let stopping = tokio::spawn({
        let flow = flow.clone();
        async move { flow.stop(true).await }
    });
    until(LIMIT, || flow.state() == FlowState::Stopping).await;
    assert_eq!(flow.process(job(99)).await.unwrap_err(), Error::NotRunning);
    GRACEFUL.open();
    for (id, call) in (1..=5).zip(calls) {
        assert_eq!(call.await.unwrap().unwrap(), id * 10);
    }
    stopping.await.unwrap();
    assert_eq!(flow.state(), FlowState::Stopped);
}

static HALT: Gate = Gate::new();

#[aqueduct::handler(isolation = "thread")]
fn wait_at_halt_gate(job: &mut Job) {
    HALT.wait();
    job.out = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_stop_answers_waiting_callers_with_stopped() {
    let flow = aqueduct::flow!(wait_at_halt_gate).start().await.unwrap();
    let calls: Vec<_> = (1..=3)
        .map(|id| {
            tokio::spawn({
                let flow = flow.clone();
                async move { flow.process(job(id)).await.map(|j| j.out) }
            })
        })
        .collect();
    until(LIMIT, || HALT.waiting() == 1 && flow.stats()[0].queued == 2).await;
    // The handler is still blocked: stop must not wait for it.
    flow.stop(false).await;
    for call in calls {
        assert_eq!(call.await.unwrap(), Err(Error::Stopped));
    }
    assert_eq!(flow.state(), FlowState::Stopped);
    assert_eq!(flow.process(job(4)).await.unwrap_err(), Error::NotRunning);
    HALT.open();
}

static SLOW: Gate = Gate::new();

#[aqueduct::handler(isolation = "thread")]
fn wait_at_slow_gate(job: &mut Job) {
    SLOW.wait();
    job.out = 1;
}

#[tokio::test]
async fn the_flow_default_timeout_applies() {
    let flow = aqueduct::flow!(wait_at_slow_gate)
        .timeout(Duration::from_millis(40))
        .start()
        .await
        .unwrap();
    assert_eq!(
        flow.process(job(1)).await.unwrap_err(),
        Error::Timeout {
            after: Duration::from_millis(40)
        }
    );
    SLOW.open();
}
