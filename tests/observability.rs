//! What a flow tells observers: a `process` span per call with the runner's events about
//! the task under it, one ERROR event per handler failure (for error-reporting layers),
//! and the `metrics` facade's counters and histograms, scraped through the Prometheus
//! recorder.
//!
//! One test binary, one global subscriber and one global recorder; the tests use stages
//! of their own and look only at what those stages produced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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

#[derive(Default)]
struct Collected {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, (String, Fields)>>,
    events: Mutex<Vec<Seen>>,
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
        self.0.spans.lock().unwrap().insert(id, (name, fields));
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = event.parent().map(Id::into_u64);
        self.0.events.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            span,
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
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
        .find(|(_, (name, fields))| {
            name == "process" && fields.0.get("flow").map(String::as_str) == Some("traced")
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
    assert_eq!(
        value(r#"aqueduct_stage_compute_duration_seconds_count{stage="counted"}"#),
        stats.batches as f64
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
}
