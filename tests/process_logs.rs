//! What a worker process logs through `tracing`, and its panic messages, reach the
//! parent's subscriber tagged with the stage name and the worker's pid.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Debug, Clone, Default)]
struct Seen {
    stage: String,
    pid: u64,
    message: String,
}

static EVENTS: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
static ARRIVED: Condvar = Condvar::new();

struct Collect;

impl Visit for Seen {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "pid" {
            self.pid = value;
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "stage" {
            self.stage = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut seen = Seen::default();
        event.record(&mut seen);
        EVENTS.lock().unwrap().push(seen);
        ARRIVED.notify_all();
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Waits (bounded) until an event whose message contains `text` has arrived.
fn wait_for(text: &str) -> Seen {
    let events = EVENTS.lock().unwrap();
    let (events, _) = ARRIVED
        .wait_timeout_while(events, Duration::from_secs(10), |events| {
            !events.iter().any(|e| e.message.contains(text))
        })
        .unwrap();
    events
        .iter()
        .find(|e| e.message.contains(text))
        .cloned()
        .unwrap_or_else(|| panic!("no event containing {text:?} arrived: {events:?}"))
}

#[aqueduct::task]
struct Note {
    n: u64,
    pid: u64,
}

#[aqueduct::handler]
fn chatty(note: &mut Note) {
    note.pid = std::process::id() as u64;
    tracing::info!(n = note.n, "hello from the worker");
    if note.n == 13 {
        panic!("unlucky number {}", note.n);
    }
}

#[tokio::test]
async fn worker_logs_and_panics_reach_the_parent_subscriber() {
    tracing::subscriber::set_global_default(Collect).unwrap();
    let flow = aqueduct::flow!(chatty).start().await.unwrap();
    let out = flow.process(Note { n: 1, pid: 0 }).await.unwrap();
    assert_ne!(out.pid, std::process::id() as u64);

    let hello = wait_for("hello from the worker");
    assert_eq!(hello.stage, "chatty");
    assert_eq!(hello.pid, out.pid);
    assert!(hello.message.contains("n=1"), "{hello:?}");

    let failed = flow.process(Note { n: 13, pid: 0 }).await;
    assert!(matches!(failed, Err(aqueduct::Error::Handler { .. })));
    let panic = wait_for("unlucky number 13");
    assert_eq!(panic.stage, "chatty");
    assert_eq!(
        panic.pid, out.pid,
        "the same worker: a caught panic does not kill it"
    );
    flow.stop(true).await;
}
