//! Typed multi-stage flows: data moves through stages of different types, callers run
//! concurrently, flows coexist, and the blocking front works from plain threads.

use std::time::Duration;

use aqueduct::Error;

#[aqueduct::task]
struct Request {
    id: u64,
    width: u32,
    height: u32,
}

#[aqueduct::task]
struct Frame {
    id: u64,
    pixels: u64,
}

#[aqueduct::task]
struct Detections {
    id: u64,
    cats: u64,
    score: f64,
}

#[aqueduct::handler]
fn decode(request: Request) -> Frame {
    Frame {
        id: request.id,
        pixels: u64::from(request.width) * u64::from(request.height),
    }
}

#[aqueduct::handler(batch_size = 8, nprocs = 2)]
fn detect(frames: Vec<Frame>) -> Vec<Detections> {
    frames
        .into_iter()
        .map(|f| Detections {
            id: f.id,
            cats: f.pixels % 7,
            score: 0.0,
        })
        .collect()
}

#[aqueduct::handler(batch_size = 4)]
fn annotate(detections: &mut [Detections]) {
    for d in detections {
        d.score = d.cats as f64 / 7.0;
    }
}

fn expected(id: u64) -> Detections {
    let pixels = (id % 100 + 1) * 10;
    Detections {
        id,
        cats: pixels % 7,
        score: (pixels % 7) as f64 / 7.0,
    }
}

fn request(id: u64) -> Request {
    Request {
        id,
        width: (id % 100 + 1) as u32,
        height: 10,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_typed_stages_return_every_result_once_and_correct() {
    let flow = aqueduct::flow!(decode -> detect -> annotate)
        .start()
        .await
        .unwrap();
    let mut callers = tokio::task::JoinSet::new();
    for id in 0..2000u64 {
        let flow = flow.clone();
        callers.spawn(async move { (id, flow.process(request(id)).await) });
    }
    let mut seen = vec![false; 2000];
    while let Some(joined) = callers.join_next().await {
        let (id, result) = joined.unwrap();
        let out = result.unwrap();
        let want = expected(id);
        assert_eq!(
            (out.id, out.cats, out.score),
            (want.id, want.cats, want.score)
        );
        assert!(
            !std::mem::replace(&mut seen[id as usize], true),
            "result {id} delivered twice"
        );
    }
    assert!(seen.iter().all(|s| *s));
    let stats = flow.stats();
    assert_eq!(
        stats.iter().map(|s| s.name).collect::<Vec<_>>(),
        ["decode", "detect", "annotate"]
    );
    assert!(
        stats.iter().all(|s| s.tasks == 2000 && s.failed == 0),
        "{stats:?}"
    );
    flow.stop(true).await;
}

#[tokio::test]
async fn angle_bracket_spelling_and_several_flows_in_one_process() {
    let first = aqueduct::flow!(<decode -> detect>).start().await.unwrap();
    let second = aqueduct::flow!(decode).start().await.unwrap();
    let (a, b) = tokio::join!(first.process(request(3)), second.process(request(3)));
    assert_eq!(a.unwrap().cats, expected(3).cats);
    assert_eq!(b.unwrap().pixels, 40);
    first.stop(true).await;
    assert_eq!(first.state(), aqueduct::FlowState::Stopped);
    assert!(
        second.process(request(4)).await.is_ok(),
        "stopping one flow leaves the other running"
    );
}

#[test]
fn blocking_front_from_plain_threads() {
    let flow = aqueduct::flow!(decode -> detect -> annotate)
        .start_blocking()
        .unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let flow = &flow;
            scope.spawn(move || {
                for id in (t * 50)..(t * 50 + 50) {
                    let out = flow.process_blocking(request(id)).unwrap();
                    assert_eq!(out.cats, expected(id).cats);
                }
            });
        }
    });
    flow.stop_blocking(true).unwrap();
    assert!(matches!(
        flow.process_blocking(request(1)),
        Err(Error::NotRunning)
    ));
}

/// Runs `future` to completion on the calling thread, parking between polls: another
/// executor, with no tokio context. At most 30 s.
fn block_on_outside_tokio<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let limit = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        assert!(
            std::time::Instant::now() < limit,
            "the future never finished"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn a_flow_started_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    match block_on_outside_tokio(aqueduct::flow!(decode).start()) {
        Err(Error::Config(message)) => {
            assert!(message.contains("tokio runtime"), "{message}");
            assert!(message.contains("start_blocking"), "{message}");
        }
        other => panic!("expected a configuration error, got {:?}", other.err()),
    }
}

/// A flow runs on the runtime it started on; its callers may be polled by any executor
/// (a quiet flow otherwise runs a lone call's job in the caller's task, with tokio's
/// timers, which panicked without a tokio context).
#[test]
fn calls_polled_by_another_executor_are_answered() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let flow = runtime
        .block_on(aqueduct::flow!(decode -> detect -> annotate).start())
        .unwrap();
    for id in 0..20 {
        let out = block_on_outside_tokio(flow.process(request(id))).unwrap();
        let want = expected(id);
        assert_eq!(
            (out.id, out.cats, out.score),
            (want.id, want.cats, want.score)
        );
    }
    runtime.block_on(flow.stop(true));
}

#[tokio::test]
async fn blocking_calls_inside_async_code_are_refused_not_deadlocked() {
    let flow = aqueduct::flow!(decode).start().await.unwrap();
    assert!(matches!(
        flow.process_blocking(request(1)),
        Err(Error::BlockingInAsync)
    ));
    assert!(matches!(
        aqueduct::flow!(decode).start_blocking(),
        Err(Error::BlockingInAsync)
    ));
    assert_eq!(
        flow.process_timeout(request(1), Duration::from_secs(1))
            .await
            .unwrap()
            .pixels,
        20
    );
}
