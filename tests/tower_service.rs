//! A flow as a `tower::Service` under tower's own layers: readiness is the first stage's
//! free room (without reserving it), so `load_shed` sheds at once when it is full,
//! `timeout`, `concurrency_limit` and `buffer` compose, and errors stay
//! `aqueduct::Error` when no layer replaces them.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use aqueduct::{Error, Flow, FlowService};
use aqueduct_suite::{until, Gate};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

const LIMIT: Duration = Duration::from_secs(10);

#[aqueduct::task]
struct Job {
    id: u64,
}

macro_rules! gated_stage {
    ($name:ident, $seen:ident, $gate:ident) => {
        static $seen: Mutex<Vec<u64>> = Mutex::new(Vec::new());
        static $gate: Gate = Gate::new();
        /// Job 0 waits at the gate; every job is recorded.
        #[aqueduct::handler(isolation = "thread", queue_size = 2)]
        fn $name(job: &mut Job) {
            if job.id == 0 {
                $gate.wait();
            }
            $seen.lock().unwrap().push(job.id);
        }
    };
}

/// Holds the worker in job 0 and fills the queue (2) with jobs 1 and 2, through the
/// service.
async fn saturate(
    flow: &Flow<Job, Job>,
    gate: &Gate,
) -> Vec<tokio::task::JoinHandle<Result<u64, Error>>> {
    let mut calls = Vec::new();
    for id in 0..3 {
        let mut service = flow.clone().into_service();
        calls.push(tokio::spawn(async move {
            let out = service.ready().await?.call(Job { id }).await?;
            Ok(out.id)
        }));
        if id == 0 {
            until(LIMIT, || gate.waiting() == 1).await;
        }
    }
    until(LIMIT, || flow.stats()[0].queued == 2).await;
    calls
}

/// Polls `future` once, with a waker that records whether it was woken.
fn poll_once<F: Future + ?Sized>(
    future: std::pin::Pin<&mut F>,
    woken: &Arc<Flag>,
) -> Poll<F::Output> {
    let waker = Waker::from(woken.clone());
    future.poll(&mut Context::from_waker(&waker))
}

#[derive(Default)]
struct Flag(std::sync::atomic::AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn flag_set(flag: &Flag) -> bool {
    flag.0.load(std::sync::atomic::Ordering::SeqCst)
}

/// Spawns `service.call(job)` (the service already ready) and maps the output to its id.
fn spawn_call(
    service: &mut FlowService<Job, Job>,
    id: u64,
) -> tokio::task::JoinHandle<Result<u64, Error>> {
    let call = service.call(Job { id });
    tokio::spawn(async move { call.await.map(|out| out.id) })
}

gated_stage!(readiness, READINESS, READINESS_GATE);

#[tokio::test]
async fn ready_reports_room_without_reserving_it_and_wakes_when_room_is_made() {
    let flow = aqueduct::flow!(readiness).start().await.unwrap();
    let mut held = saturate(&flow, &READINESS_GATE).await;
    // The queue is full: not ready, until the worker takes from it.
    let mut first = flow.clone().into_service();
    let mut second = first.clone();
    let woken = Arc::new(Flag::default());
    let mut first_ready = pin!(first.ready());
    assert!(poll_once(first_ready.as_mut(), &woken).is_pending(), "full");
    READINESS_GATE.open();
    until(LIMIT, || flag_set(&woken)).await;
    tokio::time::timeout(LIMIT, first_ready)
        .await
        .unwrap()
        .unwrap();
    for call in held.drain(..) {
        call.await.unwrap().unwrap();
    }
    // Room again, and both clones are ready at once: readiness reserves nothing.
    let other = Arc::new(Flag::default());
    assert!(poll_once(pin!(first.ready()), &other).is_ready());
    assert!(poll_once(pin!(second.ready()), &other).is_ready());
    let calls = [spawn_call(&mut first, 7), spawn_call(&mut second, 8)];
    for (call, id) in calls.into_iter().zip([7, 8]) {
        assert_eq!(call.await.unwrap(), Ok(id));
    }
}

gated_stage!(shed, SHED, SHED_GATE);

#[tokio::test]
async fn load_shed_rejects_at_once_while_the_first_stage_is_full() {
    let flow = aqueduct::flow!(shed).start().await.unwrap();
    let held = saturate(&flow, &SHED_GATE).await;
    let mut service = ServiceBuilder::new()
        .load_shed()
        .service(flow.clone().into_service());
    for id in 10..13 {
        let error = service
            .ready()
            .await
            .unwrap()
            .call(Job { id })
            .await
            .unwrap_err();
        assert!(
            error.is::<tower::load_shed::error::Overloaded>(),
            "job {id}: {error}"
        );
    }
    assert_eq!(SHED_GATE.waiting(), 1, "shed while the worker was held");
    SHED_GATE.open();
    for call in held {
        call.await.unwrap().unwrap();
    }
    let out = service.ready().await.unwrap().call(Job { id: 20 }).await;
    assert_eq!(out.map(|out| out.id).ok(), Some(20));
    assert!(!SHED.lock().unwrap().iter().any(|id| (10..13).contains(id)));
}

gated_stage!(slow, SLOW, SLOW_GATE);

#[tokio::test]
async fn timeout_layer_bounds_a_call() {
    let flow = aqueduct::flow!(slow).start().await.unwrap();
    let mut service = ServiceBuilder::new()
        .timeout(Duration::from_millis(50))
        .service(flow.clone().into_service());
    let error: BoxError = service
        .ready()
        .await
        .unwrap()
        .call(Job { id: 0 })
        .await
        .unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    SLOW_GATE.open();
    let out = service.ready().await.unwrap().call(Job { id: 1 }).await;
    assert_eq!(out.map(|out| out.id).ok(), Some(1));
    assert!(SLOW.lock().unwrap().contains(&0), "the handler ran on");
}

static LIMITED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[aqueduct::handler(isolation = "thread", batch_size = 4, nprocs = 2)]
fn limited(jobs: &mut [Job]) {
    LIMITED.lock().unwrap().extend(jobs.iter().map(|j| j.id));
    for job in jobs {
        job.id += 1000;
    }
}

#[tokio::test]
async fn buffer_and_concurrency_limit_compose() {
    let flow = aqueduct::flow!(limited).start().await.unwrap();
    let service = ServiceBuilder::new()
        .buffer(16)
        .concurrency_limit(3)
        .service(flow.into_service());
    let calls: Vec<_> = (0..64)
        .map(|id| {
            let service = service.clone();
            // Boxed as `dyn Future + Send` here, where its type is concrete: the
            // compiler cannot prove `Send` for the nested tower futures inside an
            // `async` block (a higher-ranked lifetime limitation).
            let call: std::pin::Pin<
                Box<dyn Future<Output = Result<aqueduct::Owned<Job>, BoxError>> + Send>,
            > = Box::pin(service.oneshot(Job { id }));
            tokio::spawn(async move { call.await.map(|out| out.id).map_err(|e| e.to_string()) })
        })
        .collect();
    for (id, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().ok(), Some(id as u64 + 1000));
    }
    assert_eq!(LIMITED.lock().unwrap().len(), 64);
}

static FAILING: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[aqueduct::handler(isolation = "thread")]
fn failing(job: &mut Job) -> Result<(), String> {
    FAILING.lock().unwrap().push(job.id);
    Err(format!("job {} refused", job.id))
}

#[tokio::test]
async fn without_layers_errors_stay_aqueduct_errors() {
    let flow = aqueduct::flow!(failing).start().await.unwrap();
    let mut service = flow.clone().into_service();
    let error: Error = service
        .ready()
        .await
        .unwrap()
        .call(Job { id: 3 })
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::Handler {
            stage: "failing",
            message: "job 3 refused".into()
        }
    );
    flow.stop(true).await;
    assert_eq!(service.ready().await.err(), Some(Error::NotRunning));
}

gated_stage!(dropped, DROPPED, DROPPED_GATE);

#[tokio::test]
async fn dropping_the_response_future_cancels_a_queued_task() {
    let flow = aqueduct::flow!(dropped).start().await.unwrap();
    let mut service = flow.clone().into_service();
    let held = spawn_call(service.ready().await.unwrap(), 0);
    until(LIMIT, || DROPPED_GATE.waiting() == 1).await;
    let mut call = service.ready().await.unwrap().call(Job { id: 42 });
    // One poll puts the task into the (not full) queue; then the caller goes away.
    let woken = Arc::new(Flag::default());
    assert!(poll_once(call.as_mut(), &woken).is_pending());
    until(LIMIT, || flow.stats()[0].queued == 1).await;
    drop(call);
    DROPPED_GATE.open();
    assert_eq!(held.await.unwrap(), Ok(0));
    let after = service.ready().await.unwrap().call(Job { id: 43 }).await;
    assert_eq!(after.map(|out| out.id).ok(), Some(43));
    assert_eq!(*DROPPED.lock().unwrap(), [0, 43], "job 42 never ran");
    assert_eq!(flow.stats()[0].abandoned, 1);
}

static CROWD_GATE: Gate = Gate::new();

/// Job 0 waits at the gate; batches of up to 4, so one take makes room for several.
#[aqueduct::handler(isolation = "thread", queue_size = 4, batch_size = 4)]
fn crowded(jobs: &mut [Job]) {
    if jobs.iter().any(|job| job.id == 0) {
        CROWD_GATE.wait();
    }
}

/// Many clients wait for readiness on a full queue: room wakes one of them, which passes
/// the word on while room lasts, so every one of them is served, including those whose
/// calls go straight to the idle worker without making room.
#[tokio::test]
async fn every_client_waiting_for_room_is_served_as_room_is_made() {
    let flow = aqueduct::flow!(crowded).start().await.unwrap();
    let client = |id| {
        let mut service = flow.clone().into_service();
        tokio::spawn(async move { service.ready().await?.call(Job { id }).await })
    };
    let mut calls = vec![client(0)];
    until(LIMIT, || CROWD_GATE.waiting() == 1).await;
    calls.extend((1..=4).map(client));
    until(LIMIT, || flow.stats()[0].queued == 4).await;
    calls.extend((5..45).map(client));
    CROWD_GATE.open();
    for (id, call) in calls.into_iter().enumerate() {
        let answer = tokio::time::timeout(LIMIT, call).await.expect("served");
        assert_eq!(answer.unwrap().unwrap().id, id as u64);
    }
}

gated_stage!(stopping, STOPPING, STOPPING_GATE);

/// Clients waiting for room when the flow stops gracefully are all told `NotRunning`,
/// however few takes the stop's drain makes.
#[tokio::test]
async fn every_client_waiting_for_room_hears_of_a_graceful_stop() {
    let flow = aqueduct::flow!(stopping).start().await.unwrap();
    let held = saturate(&flow, &STOPPING_GATE).await;
    // Each client waits for room, woken only by the flow, before the stop begins (the
    // test's runtime has one thread: a client counted has polled `ready` once).
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let waiting: Vec<_> = (0..10)
        .map(|_| {
            let ready = flow.clone().into_service().ready_oneshot();
            let started = started.clone();
            tokio::spawn(async move {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ready.await.map(drop)
            })
        })
        .collect();
    until(LIMIT, || {
        started.load(std::sync::atomic::Ordering::SeqCst) == 10
    })
    .await;
    let stopping = tokio::spawn({
        let flow = flow.clone();
        async move { flow.stop(true).await }
    });
    STOPPING_GATE.open();
    for client in waiting {
        let ready = tokio::time::timeout(LIMIT, client).await.expect("told");
        assert_eq!(ready.unwrap(), Err(Error::NotRunning));
    }
    for call in held {
        call.await.unwrap().unwrap();
    }
    stopping.await.unwrap();
}
