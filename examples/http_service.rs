//! An HTTP inference service: axum in front of a flow whose stage runs a small dense
//! network (the W5 model of the workloads bench) on batches, in 2 worker processes.
//!
//! Run: `cargo run --release --example http_service` (serves on 127.0.0.1:8080, or
//! `--addr HOST:PORT`), then
//! `curl -s --data-binary @body.bin localhost:8080/v1/classify` with a body of 512
//! little-endian f32 (2048 bytes). It answers `{"class": k, "scores": [...]}`.
//!
//! When the stage's queue (48 requests) is full, a request is answered 503 with
//! `Retry-After` at once (`FlowBuilder::reject_when_full`) rather than kept waiting.
//!
//! Endpoints: `POST /v1/classify`, `GET /readyz` (200 once the flow has started and
//! while it runs, else 503), `GET /healthz` (200 while the process serves), `GET /stats`
//! (the flow's `StageStats` as JSON). Failures map to statuses in one function,
//! `failure_response` in `examples/support/http.rs`: overloaded 503 with `Retry-After`,
//! not running or stopped 503, timeout 504, handler error 422, worker crashed or
//! protocol violation 502, bad body 400, anything else 500.
//!
//! SIGTERM or ctrl-c: the server stops accepting connections, answers every request in
//! flight, then stops the flow gracefully and exits 0.
//!
//! `--self-test N`: serves on an ephemeral loopback port, sends N requests over 32
//! keep-alive connections with hyper's client, checks a sample of the answers against
//! the model computed here, shuts down as on SIGTERM, and prints as its last line
//! `requests=N ok=N status_503=N status_504=N p50_ms=X p99_ms=Y rps=Z`. It exits 1 if
//! any answer was neither 200 nor 503/504, if a checked answer was wrong, or if none
//! was 200.

// Shared with tests/http_service.rs, which uses parts this example does not.
#[allow(dead_code)]
#[path = "support/http.rs"]
mod http;

use std::net::SocketAddr;
use std::time::Duration;

use http::{App, Features};

/// How long a request may take in the flow.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const SELF_TEST_CONCURRENCY: usize = 32;
/// The self-test checks every this many answers against the model run here.
const CHECK_EVERY: u64 = 25;

async fn start_flow() -> Result<aqueduct::Flow<Features, Features>, aqueduct::Error> {
    aqueduct::flow!(http::mlp)
        .timeout(REQUEST_TIMEOUT)
        // A full first stage answers 503 at once: shed load, never queue a client up.
        .reject_when_full()
        .start()
        .await
}

enum Mode {
    Serve(SocketAddr),
    SelfTest(u64),
}

fn parse_args() -> Result<Mode, String> {
    let mut args = std::env::args().skip(1);
    let mut mode = Mode::Serve(SocketAddr::from(([127, 0, 0, 1], 8080)));
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--addr" => {
                let addr = value()?;
                mode = Mode::Serve(addr.parse().map_err(|e| format!("--addr {addr}: {e}"))?);
            }
            "--self-test" => {
                let n = value()?;
                mode = Mode::SelfTest(n.parse().map_err(|e| format!("--self-test {n}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(mode)
}

#[tokio::main]
async fn main() {
    // The flow's metrics (`aqueduct`'s `metrics` feature) go to this recorder, served
    // at `/metrics`.
    http::prometheus();
    let code = match parse_args() {
        Ok(Mode::Serve(addr)) => serve(addr).await,
        Ok(Mode::SelfTest(requests)) => self_test(requests).await,
        Err(message) => {
            eprintln!("{message}\nusage: http_service [--addr HOST:PORT | --self-test N]");
            2
        }
    };
    std::process::exit(code);
}

async fn serve(addr: SocketAddr) -> i32 {
    // Installed before anything else, so that no SIGTERM finds the default action.
    let shutdown = http::shutdown_signal();
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("bind {addr}: {error}");
            return 1;
        }
    };
    eprintln!("http: listening on http://{addr}");
    let app = App::new();
    tokio::spawn({
        let app = app.clone();
        async move {
            app.started().await;
            eprintln!("http: flow started, ready");
        }
    });
    match http::serve(listener, app, start_flow(), shutdown).await {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("http: {error}");
            1
        }
    }
}

/// `GET /metrics` from the service at `addr`.
async fn scrape(addr: SocketAddr) -> String {
    let mut client = http::Client::connect(addr)
        .await
        .expect("connect for /metrics");
    let answer = client.get("/metrics").await.expect("GET /metrics");
    String::from_utf8_lossy(&answer.body).into_owned()
}

async fn self_test(requests: u64) -> i32 {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind an ephemeral loopback port");
    let addr = listener.local_addr().expect("local address");
    let app = App::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, app.clone(), start_flow(), async {
        let _ = stopped.await;
    }));
    app.started().await;

    let model = http::load_model();
    let (outcomes, elapsed) = http::drive(addr, requests, SELF_TEST_CONCURRENCY)
        .await
        .expect("connect to the service");
    let scraped = scrape(addr).await;
    let _ = stop.send(());
    let served = server.await.expect("server task");

    let (mut ok, mut status_503, mut status_504, mut unexpected, mut wrong) = (0, 0, 0, 0, 0);
    let mut latencies = Vec::with_capacity(outcomes.len());
    for outcome in &outcomes {
        latencies.push(outcome.latency.as_secs_f64() * 1000.0);
        match &outcome.answer {
            Ok(answer) if answer.status == 200 => {
                ok += 1;
                if outcome.seed % CHECK_EVERY == 0 {
                    let (class, _) = model.classify_one(&http::features(outcome.seed));
                    if answer.json()["class"].as_u64() != Some(class) {
                        eprintln!("request {}: wrong answer {:?}", outcome.seed, answer.body);
                        wrong += 1;
                    }
                }
            }
            Ok(answer) if answer.status == 503 => status_503 += 1,
            Ok(answer) if answer.status == 504 => status_504 += 1,
            Ok(answer) => {
                eprintln!(
                    "request {}: unexpected {} {:?}",
                    outcome.seed, answer.status, answer.body
                );
                unexpected += 1;
            }
            Err(error) => {
                eprintln!("request {}: {error}", outcome.seed);
                unexpected += 1;
            }
        }
    }
    if let Err(error) = &served {
        eprintln!("server: {error}");
    }
    latencies.sort_by(f64::total_cmp);
    // The flow's own count of successes, scraped from `/metrics`, must be the client's.
    let metric = |series: &str| http::sample(&scraped, series).unwrap_or(f64::NAN);
    let counted_ok = metric(r#"aqueduct_requests_total{flow="mlp",outcome="success"}"#);
    let (batches, batched) = (
        metric(r#"aqueduct_stage_batch_size_count{stage="mlp"}"#),
        metric(r#"aqueduct_stage_batch_size_sum{stage="mlp"}"#),
    );
    println!(
        "requests={} ok={ok} status_503={status_503} status_504={status_504} p50_ms={:.2} p99_ms={:.2} rps={:.0} batch_size_count={batches} batch_size_sum={batched}",
        outcomes.len(),
        http::percentile(&latencies, 0.50),
        http::percentile(&latencies, 0.99),
        outcomes.len() as f64 / elapsed.as_secs_f64(),
    );
    let complete = outcomes.len() as u64 == requests;
    let counted = counted_ok == ok as f64 && batched == ok as f64;
    if !counted {
        eprintln!(
            "/metrics counted {counted_ok} successes and {batched} batched tasks for {ok} answers"
        );
    }
    if ok == 0 || unexpected > 0 || wrong > 0 || !complete || served.is_err() || !counted {
        1
    } else {
        0
    }
}
