//! Callers' deadlines are kept by the flow (one ticker per flow wakes the callers of each
//! millisecond as it passes, instead of a tokio timer per call): a deadline further
//! ahead than the ticker's round of slots fires at its time and not before, a flow that
//! sat idle (its ticker asleep) still times calls out, and callers with different
//! deadlines each get their own.

use std::time::{Duration, Instant};

use aqueduct::Error;
use aqueduct_suite::Gate;

/// Longer than any deadline here: a call not answered by then never would be.
const LIMIT: Duration = Duration::from_secs(10);

#[aqueduct::task]
struct Job {
    id: u64,
}

/// A stage whose handler waits at its own gate, so its tasks' callers can only time out.
macro_rules! held_stage {
    ($name:ident, $gate:ident) => {
        static $gate: Gate = Gate::new();
        #[aqueduct::handler(isolation = "thread")]
        fn $name(job: &mut Job) {
            $gate.wait();
            job.id += 1;
        }
    };
}

/// Makes the call with `call` and awaits it; it must time out after `timeout`: not
/// before, and not never. (The clock starts before the call is made: a call's deadline
/// counts from the `process` call, not from its first poll.)
async fn times_out<F>(call: impl FnOnce() -> F, timeout: Duration)
where
    F: std::future::Future<Output = Result<aqueduct::Owned<Job>, Error>>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(LIMIT, call())
        .await
        .expect("the call was never timed out");
    let took = started.elapsed();
    assert_eq!(outcome.err(), Some(Error::Timeout { after: timeout }));
    assert!(
        took >= timeout,
        "timed out after {took:?}, before its {timeout:?}"
    );
}

held_stage!(held_far, FAR_GATE);

#[tokio::test]
async fn a_deadline_further_than_the_tickers_round_fires_at_its_time() {
    let flow = aqueduct::flow!(held_far).start().await.unwrap();
    // 700 ms: its slot comes round twice before its own tick.
    let timeout = Duration::from_millis(700);
    times_out(|| flow.process_timeout(Job { id: 0 }, timeout), timeout).await;
    FAR_GATE.open();
    assert_eq!(
        flow.process_timeout(Job { id: 1 }, LIMIT)
            .await
            .map(|out| out.id),
        Ok(2)
    );
}

held_stage!(held_idle, IDLE_GATE);

#[tokio::test]
async fn a_flow_that_sat_idle_still_times_calls_out() {
    let flow = aqueduct::flow!(held_idle).start().await.unwrap();
    // The scenario itself, not a wait for something: a flow with no call for this long
    // has put its ticker to sleep, and the next call must wake it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let timeout = Duration::from_millis(30);
    times_out(|| flow.process_timeout(Job { id: 0 }, timeout), timeout).await;
    IDLE_GATE.open();
}

held_stage!(held_many, MANY_GATE);

#[tokio::test]
async fn callers_with_different_deadlines_each_get_their_own() {
    let flow = aqueduct::flow!(held_many).start().await.unwrap();
    let calls: Vec<_> = (0..12u64)
        .map(|i| {
            let flow = flow.clone();
            // Out of order, some sharing a millisecond, some a slot a round apart.
            let timeout = Duration::from_millis([40, 10, 300, 10, 75, 266][i as usize % 6] + i);
            tokio::spawn(async move {
                times_out(|| flow.process_timeout(Job { id: i }, timeout), timeout).await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    MANY_GATE.open();
}

#[aqueduct::handler(isolation = "thread")]
fn plus_one(job: &mut Job) {
    job.id += 1;
}

/// Every setting that is a time limit, as long as it can be written.
#[aqueduct::handler(
    batch_size = 2,
    batch_timeout_ms = 18446744073709551615,
    start_timeout_ms = 18446744073709551615,
    exec_timeout_ms = 18446744073709551615,
    take_timeout_ms = 18446744073709551615
)]
fn plus_two(jobs: &mut [Job]) {
    jobs.iter_mut().for_each(|job| job.id += 2);
}

/// `Duration::MAX` (or any duration too long for the clock) as a caller's timeout or a
/// setting means no limit, not a panic.
#[tokio::test]
async fn a_timeout_too_long_to_reach_means_no_limit() {
    let flow = aqueduct::flow!(plus_one).start().await.unwrap();
    for timeout in [Duration::MAX, Duration::from_millis(u64::MAX)] {
        let out = flow.process_timeout(Job { id: 1 }, timeout).await.unwrap();
        assert_eq!(out.id, 2);
        let out = flow.submit(Job { id: 5 }).timeout(timeout).await.unwrap();
        assert_eq!(out.id, 6);
    }
    flow.stop(true).await;

    let flow = aqueduct::flow!(plus_one -> plus_two)
        .timeout(Duration::MAX)
        .start_timeout(Duration::MAX)
        .exec_timeout(Duration::MAX)
        .start()
        .await
        .unwrap();
    // Two calls fill plus_two's batch of 2, whose timeout never comes.
    let (a, b) = tokio::join!(flow.process(Job { id: 10 }), flow.process(Job { id: 20 }));
    assert_eq!((a.unwrap().id, b.unwrap().id), (13, 23));
    flow.stop(true).await;
}

#[aqueduct::handler(isolation = "thread", batch_size = 4, batch_timeout_ms = 10)]
fn in_timed_batches(jobs: &mut [Job]) {
    jobs.iter_mut().for_each(|job| job.id += 1);
}

/// A flow whose runtime's clock is paused once it started (as in an application's tests)
/// keeps to that clock: its batch timeouts and callers' deadlines pass by it, never by
/// the real clock running ahead of it, and the flow leaves the runtime idle between them,
/// so that the paused clock still advances on its own. (A flow cannot start on a paused
/// clock: the clock jumps to the start timeout while the workers run `init`.)
#[test]
fn a_flow_on_tokios_paused_clock_keeps_to_that_clock() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let flow = aqueduct::flow!(in_timed_batches).start().await.unwrap();
            tokio::time::pause();
            for id in 0..3 {
                // The real clock runs ahead of the paused one.
                std::thread::sleep(Duration::from_millis(30));
                let started = tokio::time::Instant::now();
                let out = flow.process(Job { id }).await.unwrap();
                assert_eq!(out.id, id + 1);
                // A lone task waits out its batch's timeout, on the paused clock.
                assert!(started.elapsed() >= Duration::from_millis(10));
            }
            // The flow's ticker runs while calls are under way; the clock must still
            // advance through a long sleep at once.
            let call = flow.process(Job { id: 7 });
            let (out, ()) = tokio::join!(call, tokio::time::sleep(Duration::from_secs(3600)));
            assert_eq!(out.unwrap().id, 8);
            flow.stop(true).await;
        });
        let _ = done.send(());
    });
    finished
        .recv_timeout(LIMIT)
        .expect("the flow wedged on the paused clock (or a check failed: see its panic)");
}
