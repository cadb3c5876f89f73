//! The HTTP service of `examples/http_service.rs`, through the same code
//! (`examples/support/http.rs`, included here): how failures map to statuses, `/readyz`
//! and `/healthz` through a flow's life, and a SIGTERM that lands while requests are in
//! flight: each of them is answered 200, then the process exits 0.
//!
//! The SIGTERM case needs a process to signal, so it re-runs this test binary as the
//! server (the `server_role` test, which does nothing unless `AQUEDUCT_TEST_HTTP_ROLE` is
//! set). Its stage holds every batch until the test lets go: each handler call connects
//! to a Unix socket the test listens on, says how many requests it holds, and waits for
//! the test to close the connection. So the test knows exactly when every request is
//! inside the handler, and releases them only after the server has taken the signal.

// Shared with the example, which uses the parts this test does not.
#[allow(dead_code)]
#[path = "../examples/support/http.rs"]
mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use aqueduct::{Error, FlowState};
use axum::http::{header, StatusCode};
use http::{failure_response, App, Client, Failure};

const ROLE_ENV: &str = "AQUEDUCT_TEST_HTTP_ROLE";
/// The Unix socket the held stage reports to (set for the server role).
const GATE_ENV: &str = "AQUEDUCT_TEST_HTTP_GATE";
/// How long any one step may take before the test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ status mapping

#[tokio::test]
async fn each_failure_maps_to_its_status() {
    let stage = "mlp";
    let cases = [
        (
            Failure::Flow(Error::Overloaded {
                stage,
                waited: Duration::ZERO,
            }),
            503,
            true,
        ),
        (Failure::Flow(Error::NotRunning), 503, false),
        (Failure::Flow(Error::Stopped), 503, false),
        (
            Failure::Flow(Error::Timeout {
                after: Duration::from_secs(2),
            }),
            504,
            false,
        ),
        (
            Failure::Flow(Error::Handler {
                stage,
                message: "bad input".into(),
            }),
            422,
            false,
        ),
        (
            Failure::Flow(Error::WorkerCrashed {
                stage,
                pid: 7,
                signal: Some(9),
            }),
            502,
            false,
        ),
        (
            Failure::Flow(Error::WorkerProtocol {
                stage,
                pid: 7,
                reason: "bad stamp".into(),
            }),
            502,
            false,
        ),
        (Failure::BadBody("3 bytes".into()), 400, false),
        (
            Failure::Flow(Error::ArenaFull {
                requested: 1,
                free: 0,
                capacity: 1,
            }),
            500,
            false,
        ),
        (Failure::Flow(Error::Config("x".into())), 500, false),
        (Failure::Flow(Error::Cancelled), 500, false),
    ];
    for (failure, status, retry_after) in cases {
        let response = failure_response(&failure);
        assert_eq!(response.status().as_u16(), status, "{failure:?}");
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap().to_owned()),
            retry_after.then(|| http::RETRY_AFTER_S.to_string()),
            "{failure:?}"
        );
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "{failure:?}"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            json["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
}

#[test]
fn a_body_must_be_512_finite_little_endian_floats() {
    let good = http::body_of(&http::features(1));
    assert!(http::check_body(&good).is_ok());
    for bad in [
        Vec::new(),
        good[..good.len() - 1].to_vec(),
        [good.as_slice(), &[0; 4]].concat(),
        http::body_of(&[f32::NAN; http::FEATURES]),
        http::body_of(&[f32::INFINITY; http::FEATURES]),
    ] {
        assert!(
            matches!(http::check_body(&bad), Err(Failure::BadBody(_))),
            "{} bytes accepted",
            bad.len()
        );
    }
}

// ------------------------------------------------------------------ readiness, health

async fn status_of(client: &mut Client, path: &str) -> StatusCode {
    client.get(path).await.unwrap().status
}

/// `/healthz` answers while the process serves; `/readyz` only once `start()` returned
/// and while the flow runs; classify requests are refused with 503 outside that window,
/// answered with the model's result inside it, and a bad body is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_flow_and_healthz_the_process() {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::new();
    let (go, gone) = tokio::sync::oneshot::channel::<()>();
    let start = async move {
        let _ = gone.await;
        aqueduct::flow!(http::mlp).timeout(LIMIT).start().await
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, app.clone(), start, async {
        let _ = stopped.await;
    }));
    let mut client = Client::connect(addr).await.unwrap();

    // Serving, but the flow has not started.
    assert_eq!(status_of(&mut client, "/healthz").await, 200);
    assert_eq!(status_of(&mut client, "/readyz").await, 503);
    let refused = client.classify(&http::features(3)).await.unwrap();
    assert_eq!(refused.status, 503, "{:?}", refused.body);

    go.send(()).unwrap();
    tokio::time::timeout(LIMIT, app.started()).await.unwrap();
    assert_eq!(status_of(&mut client, "/readyz").await, 200);
    assert_eq!(status_of(&mut client, "/healthz").await, 200);

    // Computed for real: the same answer as the model run here.
    let model = http::load_model();
    for seed in [3, 4, 5] {
        let answer = client.classify(&http::features(seed)).await.unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let (class, scores) = model.classify_one(&http::features(seed));
        let json = answer.json();
        assert_eq!(json["class"].as_u64(), Some(class), "{json}");
        let served: Vec<f64> = json["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert_eq!(served.len(), http::CLASSES);
        for (served, local) in served.iter().zip(&scores) {
            assert!((served - f64::from(*local)).abs() < 1e-4, "{json}");
        }
    }
    let bad = client
        .send(axum::http::Method::POST, http::CLASSIFY_PATH, vec![1, 2, 3])
        .await
        .unwrap();
    assert_eq!(bad.status, 400, "{:?}", bad.body);

    let stats = client.get("/stats").await.unwrap().json();
    assert_eq!(stats["stages"][0]["name"], "mlp", "{stats}");
    assert_eq!(stats["stages"][0]["tasks"], 3, "{stats}");
    assert_eq!(stats["ready"], true, "{stats}");

    // The flow stops while the server still serves: not ready, requests refused.
    app.flow().unwrap().stop(true).await;
    assert_eq!(status_of(&mut client, "/readyz").await, 503);
    assert_eq!(status_of(&mut client, "/healthz").await, 200);
    let refused = client.classify(&http::features(3)).await.unwrap();
    assert_eq!(refused.status, 503, "{:?}", refused.body);

    stop.send(()).unwrap();
    tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!app.ready());
}

// ------------------------------------------------------------------ overload

static SHED_GATE: aqueduct_suite::Gate = aqueduct_suite::Gate::new();

/// Holds its worker until the test opens `SHED_GATE`.
#[aqueduct::handler(isolation = "thread")]
fn shed(task: &mut http::Features) {
    SHED_GATE.wait();
    task.class = 1;
}

/// With the only worker held and the queue full, a request is answered 503 with
/// `Retry-After` at once (the flow's timeout is a minute), never kept waiting; once the
/// worker is free again the accepted ones are answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_at_once() {
    const SENT: usize = 16;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::new();
    let start = aqueduct::flow!(shed)
        .queue_size(2)
        .timeout(LIMIT)
        .reject_when_full()
        .start();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, app.clone(), start, async {
        let _ = stopped.await;
    }));
    tokio::time::timeout(LIMIT, app.started()).await.unwrap();

    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let send = |seed: u64| {
        let answers = answers.clone();
        tokio::spawn(async move {
            let mut client = Client::connect(addr).await.unwrap();
            let answer = client.classify(&http::features(seed)).await.unwrap();
            answers.send(answer).unwrap();
        });
    };
    send(0);
    aqueduct_suite::until(LIMIT, || SHED_GATE.waiting() == 1).await;
    (1..SENT as u64).for_each(send);
    // The worker is still held, so whatever is answered now was turned away.
    let first = tokio::time::timeout(LIMIT, answered.recv())
        .await
        .expect("a request is turned away while the worker is held")
        .unwrap();
    assert_eq!(first.status, 503, "{:?}", first.body);
    assert_eq!(
        first.headers[header::RETRY_AFTER],
        http::RETRY_AFTER_S.to_string()
    );
    assert_eq!(SHED_GATE.waiting(), 1);

    SHED_GATE.open();
    let mut statuses = vec![first.status.as_u16()];
    for _ in 1..SENT {
        let answer = tokio::time::timeout(LIMIT, answered.recv())
            .await
            .unwrap()
            .unwrap();
        statuses.push(answer.status.as_u16());
    }
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    stop.send(()).unwrap();
    tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

// ------------------------------------------------------------------ SIGTERM drain

/// Tells the test how many requests this call holds, then waits until the test closes
/// the connection. Once the test has removed the socket, the gate is open for good.
fn hold(tasks: usize) -> std::io::Result<()> {
    let path = std::env::var(GATE_ENV).map_err(std::io::Error::other)?;
    let mut gate = match std::os::unix::net::UnixStream::connect(path) {
        Ok(gate) => gate,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    gate.write_all(&(tasks as u32).to_le_bytes())?;
    let mut rest = Vec::new();
    gate.read_to_end(&mut rest)?;
    Ok(())
}

#[aqueduct::handler(init = http::load_model, batch_size = 16, batch_timeout_ms = 2, nprocs = 2)]
fn held(model: &mut http::Model, tasks: &mut [http::Features]) -> Result<(), String> {
    hold(tasks.len()).map_err(|e| format!("gate: {e}"))?;
    http::classify_batch(model, tasks).map_err(|e| e.to_string())
}

/// The server's role; a no-op in a normal test run. It prints `LISTENING addr` once the
/// flow has started, `SIGNALLED` when it takes SIGTERM, and `STOPPED state` once the
/// server has drained and the flow has stopped.
#[test]
fn server_role() {
    if std::env::var_os(ROLE_ENV).is_none() {
        return;
    }
    // Never outlive the test that started this role, whatever happens to it.
    // SAFETY: prctl with an integer option and signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let signal = http::shutdown_signal();
        let shutdown = async {
            signal.await;
            println!("SIGNALLED");
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App::new();
        let start = aqueduct::flow!(held).timeout(LIMIT).start();
        let server = tokio::spawn(http::serve(listener, app.clone(), start, shutdown));
        app.started().await;
        println!("LISTENING {addr}");
        server.await.unwrap().unwrap();
        println!("STOPPED {:?}", app.flow().unwrap().state());
    });
}

/// The server's stdout, line by line.
struct Lines(tokio::sync::mpsc::UnboundedReceiver<String>);

impl Lines {
    fn of(stdout: std::process::ChildStdout) -> Self {
        let (send, receive) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self(receive)
    }

    /// What follows `prefix` on the first line holding it (the first line of the role
    /// also holds libtest's `test server_role ... `).
    async fn until(&mut self, prefix: &str) -> String {
        let wait = async {
            while let Some(line) = self.0.recv().await {
                if let Some(at) = line.find(prefix) {
                    return line[at + prefix.len()..].trim().to_owned();
                }
            }
            panic!("the server's stdout ended before a {prefix:?} line");
        };
        tokio::time::timeout(LIMIT, wait)
            .await
            .unwrap_or_else(|_| panic!("no {prefix:?} line within {LIMIT:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_in_flight_then_exits_0() {
    const IN_FLIGHT: u32 = 6;
    let gate_path = std::env::temp_dir().join(format!(
        "aqueduct-http-gate-{}-{:?}.sock",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let gate = tokio::net::UnixListener::bind(&gate_path).unwrap();
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args(["server_role", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "1")
        .env(GATE_ENV, &gate_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(server.stdout.take().unwrap());
    let addr: SocketAddr = lines.until("LISTENING ").await.parse().unwrap();

    // Requests in flight, each on its own connection.
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|seed| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await?;
                client.classify(&http::features(seed.into())).await
            })
        })
        .collect();
    // Every one of them is inside the handler once the calls holding them add up.
    let mut held = Vec::new();
    let mut holding = 0;
    while holding < IN_FLIGHT {
        let (call, _) = tokio::time::timeout(LIMIT, gate.accept())
            .await
            .expect("the handler holds every request")
            .unwrap();
        // The count is written right after connecting: a short blocking read.
        let mut call = call.into_std().unwrap();
        call.set_nonblocking(false).unwrap();
        call.set_read_timeout(Some(LIMIT)).unwrap();
        let mut count = [0; 4];
        call.read_exact(&mut count).unwrap();
        holding += u32::from_le_bytes(count);
        held.push(call);
    }
    assert_eq!(holding, IN_FLIGHT);
    // And one more request whose body is only half sent: in flight in the server, not
    // yet in the flow. A drain must wait for it too, with the flow still running.
    let mut upload = std::net::TcpStream::connect(addr).unwrap();
    upload.set_read_timeout(Some(LIMIT)).unwrap();
    let body = http::body_of(&http::features(u64::from(IN_FLIGHT)));
    write!(
        upload,
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        http::CLASSIFY_PATH,
        body.len()
    )
    .unwrap();
    upload.write_all(&body[..body.len() / 2]).unwrap();
    let mut probe = Client::connect(addr).await.unwrap();
    assert_eq!(status_of(&mut probe, "/readyz").await, 200);
    let in_flight = IN_FLIGHT + 1;
    let seen = tokio::time::timeout(LIMIT, async {
        loop {
            let stats = probe.get("/stats").await.unwrap().json();
            if stats["in_flight"] == in_flight {
                break stats;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the server sees every request in flight");
    assert_eq!(seen["stages"][0]["tasks"], IN_FLIGHT, "{seen}");
    drop(probe);

    let pid = server.id() as libc::pid_t;
    // SAFETY: kill with a child's pid (not yet waited for, so not reused) and a signal.
    let killed = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(killed, 0, "{}", std::io::Error::last_os_error());
    lines.until("SIGNALLED").await;
    assert!(
        requests.iter().all(|request| !request.is_finished()),
        "a request was answered while its handler was still held"
    );

    // Let the handlers go (and open the gate for good), finish the upload: every
    // request in flight is answered, and correctly.
    drop(held);
    drop(gate);
    std::fs::remove_file(&gate_path).unwrap();
    upload.write_all(&body[body.len() / 2..]).unwrap();
    let mut answer = Vec::new();
    let upload =
        tokio::task::spawn_blocking(move || upload.read_to_end(&mut answer).map(|_| answer));
    let model = http::load_model();
    for (seed, request) in requests.into_iter().enumerate() {
        let answer = tokio::time::timeout(LIMIT, request)
            .await
            .expect("answered")
            .unwrap()
            .unwrap_or_else(|e| panic!("request {seed} got no answer: {e}"));
        assert_eq!(answer.status, 200, "request {seed}: {:?}", answer.body);
        let (class, _) = model.classify_one(&http::features(seed as u64));
        assert_eq!(answer.json()["class"].as_u64(), Some(class));
    }
    let answer = tokio::time::timeout(LIMIT, upload)
        .await
        .expect("the upload is answered")
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "the upload got {answer}"
    );
    let (class, _) = model.classify_one(&http::features(u64::from(IN_FLIGHT)));
    assert!(
        answer.contains(&format!("{{\"class\":{class},")),
        "{answer}"
    );
    assert_eq!(
        lines.until("STOPPED ").await,
        format!("{:?}", FlowState::Stopped)
    );
    let exited = tokio::time::timeout(LIMIT, tokio::task::spawn_blocking(move || server.wait()))
        .await
        .expect("the server exits")
        .unwrap()
        .unwrap();
    assert!(exited.success(), "the server exited with {exited}");
}
