//! The HTTP front of a flow, shared by `examples/http_service.rs` and
//! `tests/http_service.rs` (both include this file with `#[path]`, so the test checks the
//! very functions the example serves with). It needs the root package's dev-dependencies
//! (axum, hyper, serde_json, ndarray), which is why it is not part of `aqueduct_suite`.
//!
//! - [`Features`] and the [`mlp`] stage: the W5 dense network of the workloads bench,
//!   loaded once per worker process in `init`, run on batches.
//! - [`failure_response`]: the one mapping from a failure to an HTTP answer.
//! - [`App`], [`router`] and [`serve`]: the endpoints, readiness, graceful shutdown.
//! - [`Client`] and [`drive`]: a small HTTP/1 client over hyper, for the self-test and
//!   the tests.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aqueduct::{Error, Flow, FlowState, ShmBytes};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Inputs per request: a body is this many little-endian `f32`.
pub const FEATURES: usize = 512;
/// Outputs (scores) per request.
pub const CLASSES: usize = 10;
/// The exact size of a request body.
pub const BODY_BYTES: usize = FEATURES * 4;
/// What an overloaded answer tells the client to wait before trying again, in seconds.
pub const RETRY_AFTER_S: u32 = 1;
/// The inference endpoint.
pub const CLASSIFY_PATH: &str = "/v1/classify";
/// How long the shutdown lets the flow finish what it accepted before it stops without
/// waiting (a handler stuck, with no execution timeout, would hold a graceful stop for
/// ever, and the service would never exit).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// One request as the flow sees it: the body's bytes in shared memory, and the answer.
#[aqueduct::task]
#[derive(Debug)]
pub struct Features {
    /// The request body as received: `FEATURES` little-endian `f32`.
    pub input: ShmBytes,
    /// The class with the highest score.
    pub class: u64,
    /// The network's output.
    pub scores: [f32; CLASSES],
}

/// A 512 -> 512 -> 512 -> 10 dense network with fixed pseudo-random weights (W5 of
/// `aqueduct/benches/workloads.rs`).
#[derive(Debug)]
pub struct Model {
    layers: Vec<ndarray::Array2<f32>>,
}

/// Builds the model (the same weights every time, in every process).
pub fn load_model() -> Model {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 2000) as f32 / 1000.0 - 1.0
    };
    let shapes = [
        (FEATURES, FEATURES),
        (FEATURES, FEATURES),
        (FEATURES, CLASSES),
    ];
    Model {
        layers: shapes
            .iter()
            .map(|&(i, o)| ndarray::Array2::from_shape_fn((i, o), |_| next() / (i as f32).sqrt()))
            .collect(),
    }
}

impl Model {
    /// Scores of each row of `batch` (one row per input, `FEATURES` wide).
    pub fn forward(&self, mut batch: ndarray::Array2<f32>) -> ndarray::Array2<f32> {
        for (i, layer) in self.layers.iter().enumerate() {
            batch = batch.dot(layer);
            if i + 1 < self.layers.len() {
                batch.mapv_inplace(|x| x.max(0.0));
            }
        }
        batch
    }

    /// Class and scores of one input, computed here (the self-test checks the service's
    /// answers against it).
    pub fn classify_one(&self, input: &[f32]) -> (u64, Vec<f32>) {
        let batch = ndarray::Array2::from_shape_vec((1, FEATURES), input.to_vec())
            .expect("FEATURES inputs");
        let scores = self.forward(batch).row(0).to_vec();
        (argmax(&scores), scores)
    }
}

fn argmax(scores: &[f32]) -> u64 {
    scores
        .iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (j, &x)| if x > best.1 { (j, x) } else { best },
        )
        .0 as u64
}

/// Runs the model on a batch of requests, filling in `class` and `scores`.
pub fn classify_batch(model: &Model, tasks: &mut [Features]) -> Result<(), Error> {
    let mut batch = ndarray::Array2::<f32>::zeros((tasks.len(), FEATURES));
    for (mut row, task) in batch.rows_mut().into_iter().zip(tasks.iter()) {
        let bytes = task.input.view()?;
        for (x, word) in row.iter_mut().zip(bytes.chunks_exact(4)) {
            *x = f32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        }
    }
    let scores = model.forward(batch);
    for (task, row) in tasks.iter_mut().zip(scores.rows()) {
        for (out, &score) in task.scores.iter_mut().zip(row.iter()) {
            *out = score;
        }
        task.class = argmax(&task.scores);
    }
    Ok(())
}

/// `init` of [`mlp`], once in each worker process: the model. (Worker processes ignore
/// SIGINT and SIGTERM, so a ctrl-c in a terminal reaches only the server, which drains.)
fn worker_init() -> Model {
    load_model()
}

/// The service's stage: batches of up to 16 requests (waiting at most 2 ms to fill), on
/// 2 worker processes, each with its own copy of the model.
#[aqueduct::handler(init = worker_init, batch_size = 16, batch_timeout_ms = 2, nprocs = 2)]
pub fn mlp(model: &mut Model, tasks: &mut [Features]) -> Result<(), Error> {
    classify_batch(model, tasks)
}

/// Why a request failed.
#[derive(Debug)]
pub enum Failure {
    /// The body is not `FEATURES` finite little-endian `f32`.
    BadBody(String),
    /// The flow (or the shared memory) refused or failed the request.
    Flow(Error),
}

/// The one place a failure becomes an HTTP answer: status, headers and a JSON body
/// `{"error": "..."}`.
///
/// | failure | status |
/// | --- | --- |
/// | `Error::Overloaded` | 503 with `Retry-After` |
/// | `Error::NotRunning`, `Error::Stopped` | 503 |
/// | `Error::Timeout` | 504 |
/// | `Error::Handler` | 422 |
/// | `Error::WorkerCrashed`, `Error::WorkerProtocol` | 502 |
/// | a bad request body | 400 |
/// | anything else | 500 |
pub fn failure_response(failure: &Failure) -> Response {
    let (status, message) = match failure {
        Failure::BadBody(message) => (StatusCode::BAD_REQUEST, message.clone()),
        Failure::Flow(error) => {
            let status = match error {
                Error::Overloaded { .. } | Error::NotRunning | Error::Stopped => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                Error::Handler { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                Error::WorkerCrashed { .. } | Error::WorkerProtocol { .. } => {
                    StatusCode::BAD_GATEWAY
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, error.to_string())
        }
    };
    let mut response = json_response(status, &serde_json::json!({ "error": message }));
    if let Failure::Flow(Error::Overloaded { .. }) = failure {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    }
    response
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Checks that `body` is `FEATURES` finite little-endian `f32`.
pub fn check_body(body: &[u8]) -> Result<(), Failure> {
    if body.len() != BODY_BYTES {
        return Err(Failure::BadBody(format!(
            "the body must be {FEATURES} little-endian f32 ({BODY_BYTES} bytes), not {} bytes",
            body.len()
        )));
    }
    let words = body.chunks_exact(4);
    match words
        .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .position(|x| !x.is_finite())
    {
        Some(at) => Err(Failure::BadBody(format!(
            "feature {at} is not a finite number"
        ))),
        None => Ok(()),
    }
}

/// The service's state, shared by every request.
#[derive(Debug, Default)]
pub struct App {
    flow: OnceLock<Flow<Features, Features>>,
    started: tokio::sync::Notify,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl App {
    /// A service whose flow is not started yet (it answers 503 until then).
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The flow, once started.
    pub fn flow(&self) -> Option<&Flow<Features, Features>> {
        self.flow.get()
    }

    /// Ready: the flow has started, is running, and shutdown has not begun.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::SeqCst)
            && self
                .flow
                .get()
                .is_some_and(|flow| flow.state() == FlowState::Running)
    }

    /// Resolves once the flow has started.
    pub async fn started(&self) {
        let notified = self.started.notified();
        if self.flow.get().is_none() {
            notified.await;
        }
    }

    /// Classify requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn set_flow(&self, flow: Flow<Features, Features>) {
        let _ = self.flow.set(flow);
        self.started.notify_waiters();
    }
}

/// Counts a classify request until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The endpoints: `POST /v1/classify`, `GET /readyz`, `GET /healthz`, `GET /stats`,
/// `GET /metrics`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(CLASSIFY_PATH, post(classify))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// The process's Prometheus recorder for the `metrics` facade, installed at the first
/// call: aqueduct's metrics (`aqueduct::metrics`) with its histogram buckets.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(aqueduct::metrics::BUCKETS)
            .expect("non-empty buckets")
            .install_recorder()
            .expect("no other metrics recorder in this process")
    })
}

/// Every metric, in Prometheus' text format.
async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

/// The value of the sample that starts with `name{labels}` in a Prometheus text page.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn classify(State(app): State<Arc<App>>, body: Body) -> Response {
    // Counted from the headers on, while the body may still be arriving.
    let _in_flight = InFlight::enter(&app.in_flight);
    match infer(&app, body).await {
        Ok(response) => response,
        Err(failure) => failure_response(&failure),
    }
}

async fn infer(app: &App, body: Body) -> Result<Response, Failure> {
    let body = axum::body::to_bytes(body, BODY_BYTES)
        .await
        .map_err(|e| Failure::BadBody(format!("reading the body: {e}")))?;
    let body = &body[..];
    let flow = app.flow().ok_or(Failure::Flow(Error::NotRunning))?;
    check_body(body)?;
    // The one copy: from the received body straight into shared memory, where the
    // workers read it in place.
    let input =
        ShmBytes::with_len(body.len(), |buf| buf.copy_from_slice(body)).map_err(Failure::Flow)?;
    let task = Features {
        input,
        class: 0,
        scores: [0.0; CLASSES],
    };
    let out = flow.process(task).await.map_err(Failure::Flow)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "class": out.class, "scores": out.scores.to_vec() }),
    ))
}

async fn readyz(State(app): State<Arc<App>>) -> StatusCode {
    if app.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn healthz() -> StatusCode {
    StatusCode::OK
}

/// The flow's own figures (`Flow::stats`) and the server's, as JSON.
async fn stats(State(app): State<Arc<App>>) -> Response {
    let stages: Vec<serde_json::Value> = app
        .flow()
        .map(|flow| flow.stats())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "workers": s.workers,
                "queued": s.queued,
                "batches": s.batches,
                "dispatches": s.dispatches,
                "tasks": s.tasks,
                "mean_batch_size": s.mean_batch_size(),
                "failed": s.failed,
                "abandoned": s.abandoned,
                "retried": s.retried,
                "restarts": s.restarts,
                "worker_pids": s.worker_pids,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "ready": app.ready(),
            "in_flight": app.in_flight(),
            "stages": stages,
        }),
    )
}

/// Serves `app` on `listener` while its flow starts (`/healthz` answers at once,
/// `/readyz` once `start` has returned a flow), until `shutdown` resolves. Then it stops
/// accepting connections, lets every request in flight finish and be answered, and only
/// then stops the flow gracefully. Fails if the flow fails to start (after the same
/// shutdown) or if the listener fails.
pub async fn serve<S, D>(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    start: S,
    shutdown: D,
) -> std::io::Result<()>
where
    S: Future<Output = Result<Flow<Features, Features>, Error>>,
    D: Future<Output = ()> + Send + 'static,
{
    let start_failed = Arc::new(tokio::sync::Notify::new());
    let graceful = {
        let (app, start_failed) = (app.clone(), start_failed.clone());
        async move {
            tokio::select! {
                () = shutdown => {}
                () = start_failed.notified() => {}
            }
            app.draining.store(true, Ordering::SeqCst);
            eprintln!(
                "http: shutting down: no new connections, draining {} requests in flight",
                app.in_flight()
            );
        }
    };
    let server = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(graceful)
        .into_future();
    tokio::pin!(server);
    let started = tokio::select! {
        started = start => started,
        served = &mut server => {
            // Shut down (or failed) before the flow was up: stop it when it is.
            served?;
            return Ok(());
        }
    };
    let outcome = match started {
        Ok(flow) => {
            app.set_flow(flow);
            server.await
        }
        Err(error) => {
            start_failed.notify_one();
            server.await?;
            Err(std::io::Error::other(error))
        }
    };
    if let Some(flow) = app.flow() {
        if tokio::time::timeout(STOP_GRACE, flow.stop(true))
            .await
            .is_err()
        {
            eprintln!(
                "http: the flow did not finish within {STOP_GRACE:?}; stopping it without waiting"
            );
            flow.stop(false).await;
        }
        eprintln!("http: flow stopped");
    }
    outcome
}

/// Resolves on SIGTERM or ctrl-c (SIGINT). Both handlers are installed by this call, not
/// when the future is first polled, so a signal sent once it has returned is never lost
/// (nor left to its default action, which would kill the process). Call it inside a
/// tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install a SIGINT handler");
    async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
}

/// A request body: `FEATURES` pseudo-random features in `[-1, 1)` seeded by `seed`.
pub fn features(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..FEATURES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// `features` as a request body.
pub fn body_of(features: &[f32]) -> Vec<u8> {
    features.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One HTTP/1 keep-alive connection (hyper's client connection over a `TcpStream`).
#[derive(Debug)]
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

/// An answer: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

impl Client {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> std::io::Result<Answer> {
        self.sender.ready().await.map_err(std::io::Error::other)?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(body))
            .map_err(std::io::Error::other)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(Body::new(body), usize::MAX)
            .await
            .map_err(std::io::Error::other)?;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> std::io::Result<Answer> {
        self.send(Method::GET, path, Vec::new()).await
    }

    /// `POST /v1/classify` with `features` as the body.
    pub async fn classify(&mut self, features: &[f32]) -> std::io::Result<Answer> {
        self.send(Method::POST, CLASSIFY_PATH, body_of(features))
            .await
    }
}

/// One request of [`drive`]: its seed, its answer (or the transport error) and how long it
/// took.
#[derive(Debug)]
pub struct Outcome {
    /// The seed of its features.
    pub seed: u64,
    /// The answer.
    pub answer: std::io::Result<Answer>,
    /// Send to end of body.
    pub latency: Duration,
}

/// Sends `requests` classify requests to `addr` over `concurrency` keep-alive connections
/// (request `i` carries `features(i)`); returns every outcome and the wall time.
pub async fn drive(
    addr: SocketAddr,
    requests: u64,
    concurrency: usize,
) -> std::io::Result<(Vec<Outcome>, Duration)> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let mut client = Client::connect(addr).await?;
        callers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= requests {
                    break outcomes;
                }
                let input = features(seed);
                let sent = Instant::now();
                let answer = client.classify(&input).await;
                let latency = sent.elapsed();
                let failed = answer.is_err();
                outcomes.push(Outcome {
                    seed,
                    answer,
                    latency,
                });
                if failed {
                    // A broken connection: carry on with a new one.
                    match Client::connect(addr).await {
                        Ok(fresh) => client = fresh,
                        Err(_) => break outcomes,
                    }
                }
            }
        }));
    }
    let mut outcomes = Vec::new();
    for caller in callers {
        outcomes.extend(caller.await.expect("a load caller panicked"));
    }
    Ok((outcomes, started.elapsed()))
}

/// The `p`-quantile (0..=1) of `sorted`, 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
