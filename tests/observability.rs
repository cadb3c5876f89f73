//! What a flow tells observers: a `process` span per call with the runner's events about
//! the task under it, one ERROR event per handler failure (for error-reporting layers),
//! and the `metrics` facade's counters and histograms, scraped through the Prometheus
//! recorder.
//!
//! One test binary, one global subscriber and one global recorder; the tests use stages
//! of their own and look only at what those stages produced.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Every field of a span or event, as text.
#[derive(Debug, Clone, Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            format!("{value:?}").trim_matches('"').to_string(),
        );
    }
}

#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    /// The span the event belongs to (its explicit parent, or the current one).
    span: Option<u64>,
    fields: Fields,
}

/// A span: its name, fields and parent (explicit, or the span current where it began).
#[derive(Debug, Clone)]
struct SpanSeen {
    name: String,
    fields: Fields,
    parent: Option<u64>,
}

#[derive(Default)]
struct Collected {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, SpanSeen>>,
    events: Mutex<Vec<Seen>>,
    /// Notified at every event, for tests that wait for one from another thread.
    arrived: Condvar,
}

thread_local! {
    /// The spans this thread entered, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

fn current_span() -> Option<u64> {
    ENTERED.with(|entered| entered.borrow().last().copied())
}

/// The subscriber: installed globally, sharing what it collects with the tests.
#[derive(Clone, Default)]
struct Collect(Arc<Collected>);

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let name = attributes.metadata().name().to_string();
        let parent = match attributes.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if attributes.is_contextual() => current_span(),
            None => None,
        };
        let seen = SpanSeen {
            name,
            fields,
            parent,
        };
        self.0.spans.lock().unwrap().insert(id, seen);
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = match event.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if event.is_contextual() => current_span(),
            None => None,
        };
        self.0.events.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            span,
            fields,
        });
        self.0.arrived.notify_all();
    }
    fn enter(&self, id: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, _: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().pop());
    }
}

struct Observers {
    subscriber: Collect,
    metrics: PrometheusHandle,
}

fn observers() -> &'static Observers {
    static OBSERVERS: OnceLock<Observers> = OnceLock::new();
    OBSERVERS.get_or_init(|| {
        let subscriber = Collect::default();
        tracing::subscriber::set_global_default(subscriber.clone()).unwrap();
        let metrics = PrometheusBuilder::new()
            .set_buckets(aqueduct::metrics::BUCKETS)
            .unwrap()
            .install_recorder()
            .unwrap();
        Observers {
            subscriber,
            metrics,
        }
    })
}

/// Waits (on a blocking thread) until an event's message contains `text`, and returns
/// it. (A worker process's event arrives as a message with its fields written out.)
async fn wait_for_event(text: String) -> Seen {
    tokio::task::spawn_blocking(move || {
        let collected = &observers().subscriber.0;
        let events = collected.events.lock().unwrap();
        let matches = |seen: &Seen| {
            seen.fields
                .0
                .get("message")
                .is_some_and(|m| m.contains(&text))
        };
        let (events, _) = collected
            .arrived
            .wait_timeout_while(events, Duration::from_secs(30), |events| {
                !events.iter().any(matches)
            })
            .unwrap();
        events
            .iter()
            .find(|seen| matches(seen))
            .cloned()
            .unwrap_or_else(|| panic!("no event saying `{text}`"))
    })
    .await
    .unwrap()
}

/// The span `id` and its ancestors, innermost first.
fn ancestry(mut id: Option<u64>) -> Vec<SpanSeen> {
    let spans = observers().subscriber.0.spans.lock().unwrap();
    let mut chain = Vec::new();
    while let Some(span) = id.and_then(|id| spans.get(&id)) {
        chain.push(span.clone());
        id = span.parent;
    }
    chain
}

fn events_where(field: &str, value: &str) -> Vec<Seen> {
    observers()
        .subscriber
        .0
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|seen| seen.fields.0.get(field).map(String::as_str) == Some(value))
        .cloned()
        .collect()
}

#[aqueduct::task]
struct Job {
    id: u64,
}

#[aqueduct::handler(isolation = "thread")]
fn traced(job: &mut Job) {
    job.id += 1;
}

#[tokio::test]
async fn each_call_has_a_span_with_the_runners_events_under_it() {
    observers();
    let flow = aqueduct::flow!(traced).start().await.unwrap();
    flow.process(Job { id: 1 }).await.unwrap();
    let spans = observers().subscriber.0.spans.lock().unwrap().clone();
    let (span, _) = spans
        .iter()
        .find(|(_, seen)| {
            seen.name == "process"
                && seen.fields.0.get("flow").map(String::as_str) == Some("traced")
        })
        .expect("a process span for the flow");
    let dispatched = events_where("stage", "traced")
        .into_iter()
        .find(|seen| seen.fields.0.get("message").map(String::as_str) == Some("dispatched"))
        .expect("a dispatched event");
    assert_eq!(dispatched.span, Some(*span), "under the call's span");
    assert_eq!(
        dispatched.fields.0["flush"], "full",
        "a batch of one is full"
    );
    assert_eq!(dispatched.fields.0["batch"], "1");
    let finished = events_where("outcome", "success");
    assert!(finished.iter().any(|seen| seen.span == Some(*span)));
}

#[aqueduct::handler(isolation = "thread", batch_size = 3, batch_timeout_ms = 1000)]
fn refusing(jobs: &mut [Job]) -> Result<(), String> {
    Err(format!("refused a batch of {}", jobs.len()))
}

#[tokio::test]
async fn a_failed_handler_call_is_one_error_event_however_many_tasks_it_fails() {
    observers();
    let flow = aqueduct::flow!(refusing).start().await.unwrap();
    let calls: Vec<_> = (0..3)
        .map(|id| {
            let flow = flow.clone();
            tokio::spawn(async move { flow.process(Job { id }).await.map(|_| ()) })
        })
        .collect();
    for call in calls {
        assert!(matches!(
            call.await.unwrap(),
            Err(aqueduct::Error::Handler { .. })
        ));
    }
    let errors: Vec<Seen> = events_where("stage", "refusing")
        .into_iter()
        .filter(|seen| seen.level == Level::ERROR)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].fields.0["message"].contains("refused a batch of 3"));
    assert_eq!(errors[0].fields.0["pid"], "0", "a worker thread");
}

#[aqueduct::handler(batch_size = 4, batch_timeout_ms = 20)]
fn counted(job: &mut Job) {
    job.id *= 2;
}

#[tokio::test]
async fn metrics_count_every_request_and_batch() {
    observers();
    let flow = aqueduct::flow!(counted).start().await.unwrap();
    const SENT: u64 = 40;
    let calls: Vec<_> = (0..SENT)
        .map(|id| {
            let flow = flow.clone();
            tokio::spawn(async move { flow.process(Job { id }).await.map(|out| out.id) })
        })
        .collect();
    for (id, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), Ok(id as u64 * 2));
    }
    let stats = flow.stats()[0].clone();
    assert!(
        stats.per_task_ns > 0,
        "the stage's pace is in its statistics"
    );
    let scraped = observers().metrics.render();
    let value = |line_start: &str| -> f64 {
        scraped
            .lines()
            .find(|line| line.starts_with(line_start))
            .unwrap_or_else(|| panic!("no `{line_start}` in:\n{scraped}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(r#"aqueduct_requests_total{flow="counted",outcome="success"}"#),
        SENT as f64
    );
    assert_eq!(
        value(r#"aqueduct_request_duration_seconds_count{flow="counted"}"#),
        SENT as f64
    );
    assert_eq!(
        value(r#"aqueduct_stage_batch_size_count{stage="counted"}"#),
        stats.batches as f64
    );
    assert_eq!(
        value(r#"aqueduct_stage_batch_size_sum{stage="counted"}"#),
        SENT as f64
    );
    assert_eq!(
        value(r#"aqueduct_stage_queue_duration_seconds_count{stage="counted"}"#),
        SENT as f64
    );
    let dispatches = value(r#"aqueduct_stage_transfer_duration_seconds_count{stage="counted"}"#);
    assert_eq!(
        value(r#"aqueduct_stage_compute_duration_seconds_count{stage="counted"}"#),
        dispatches
    );
    assert!(scraped.contains(r#"aqueduct_stage_batch_size_bucket{stage="counted",le="0.00005"}"#));
    assert_eq!(
        value(r#"aqueduct_stage_workers{stage="counted",state="up"}"#),
        1.0
    );
    assert_eq!(
        value(r#"aqueduct_stage_workers{stage="counted",state="down"}"#),
        0.0
    );
    // Each dispatch's round trip, split into the handler's time (measured in the
    // worker) and the rest; the statistics hold the same sums.
    assert!(dispatches >= 1.0 && dispatches <= stats.batches as f64);
    assert_eq!(
        stats.dispatches as f64, dispatches,
        "every dispatch was answered"
    );
    assert!(stats.compute_ns > 0 && stats.transfer_ns > 0, "{stats:?}");
    let close = |seconds: f64, nanos: u64| (seconds - nanos as f64 / 1e9).abs() < 1e-6;
    assert!(close(
        value(r#"aqueduct_stage_transfer_duration_seconds_sum{stage="counted"}"#),
        stats.transfer_ns
    ));
    assert!(close(
        value(r#"aqueduct_stage_compute_duration_seconds_sum{stage="counted"}"#),
        stats.compute_ns
    ));
    // Batches formed from the queue (retries are not formed, and there were none).
    assert_eq!(
        value(r#"aqueduct_stage_batch_fill_duration_seconds_count{stage="counted"}"#),
        stats.batches as f64
    );
    // Sampled when the flow started.
    assert!(value(r#"aqueduct_worker_rss_bytes{stage="counted",worker="0"}"#) > 1e6);
    assert!(value(r#"aqueduct_arena_bytes{state="free"}"#) > 0.0);
}

#[aqueduct::handler]
fn chatty(job: &mut Job) {
    tracing::info!(chatty_job = job.id, "handled in a worker process");
    job.id += 1;
}

#[aqueduct::handler(isolation = "thread")]
fn chatty_thread(job: &mut Job) {
    tracing::info!("handled in a worker thread: chatty_thread_job={}", job.id);
    job.id += 1;
}

/// Checks that `event` belongs to a batch span of `stage` under the `process` span of a
/// call to the flow `flow`.
fn assert_under_the_callers_span(event: &Seen, stage: &str, flow: &str) {
    let chain = ancestry(event.span);
    let names: Vec<&str> = chain.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(names, ["aqueduct.batch", "process"], "{chain:?}");
    assert_eq!(chain[0].fields.0["stage"], stage);
    assert_eq!(chain[0].fields.0["size"], "1");
    assert_eq!(chain[1].fields.0["flow"], flow);
    assert!(chain[1].fields.0.contains_key("seq"));
}

#[tokio::test]
async fn a_handler_event_in_a_worker_process_carries_the_callers_span() {
    observers();
    let flow = aqueduct::flow!(chatty).start().await.unwrap();
    let pid = flow.stats()[0].worker_pids[0];
    assert_eq!(flow.process(Job { id: 4101 }).await.unwrap().id, 4102);
    let event = wait_for_event("chatty_job=4101".into()).await;
    assert_eq!(
        event.fields.0["pid"],
        pid.to_string(),
        "forwarded from the worker"
    );
    assert_under_the_callers_span(&event, "chatty", "chatty");
    // A second call gets a span of its own.
    flow.process(Job { id: 4201 }).await.unwrap();
    let second = wait_for_event("chatty_job=4201".into()).await;
    assert_under_the_callers_span(&second, "chatty", "chatty");
    assert_ne!(
        ancestry(second.span)[1].fields.0["seq"],
        ancestry(event.span)[1].fields.0["seq"]
    );
}

#[tokio::test]
async fn a_handler_event_in_a_worker_thread_carries_the_callers_span() {
    observers();
    let flow = aqueduct::flow!(chatty_thread).start().await.unwrap();
    flow.process(Job { id: 4301 }).await.unwrap();
    let event = wait_for_event("chatty_thread_job=4301".into()).await;
    assert_under_the_callers_span(&event, "chatty_thread", "chatty_thread");
}

#[aqueduct::handler(exec_timeout_ms = 300)]
fn fragile(job: &mut Job) {
    match job.id {
        1 => std::process::abort(),
        2 => std::thread::sleep(Duration::from_secs(30)),
        _ => job.id += 1,
    }
}

#[tokio::test]
async fn restarts_are_counted_by_cause() {
    observers();
    let flow = aqueduct::flow!(fragile).start().await.unwrap();
    assert!(matches!(
        flow.process(Job { id: 1 }).await,
        Err(aqueduct::Error::WorkerCrashed { .. })
    ));
    assert!(matches!(
        flow.process(Job { id: 2 }).await,
        Err(aqueduct::Error::WorkerCrashed { .. })
    ));
    let scraped = observers().metrics.render();
    // Each task killed its worker twice: in its batch, then when it was run again alone.
    for (cause, count) in [("crashed", "2"), ("timeout", "2"), ("protocol", "0")] {
        let line =
            format!(r#"aqueduct_worker_restarts_total{{stage="fragile",cause="{cause}"}} {count}"#);
        let restarts: Vec<&str> = scraped.lines().filter(|l| l.contains("restarts")).collect();
        assert!(
            restarts.contains(&line.as_str()),
            "no `{line}` in {restarts:#?}"
        );
    }
    assert_eq!(flow.stats()[0].restarts, 4);
}
