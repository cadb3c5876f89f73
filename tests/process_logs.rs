//! What a worker process logs through `tracing`, and its panic messages, reach the
//! parent's subscriber tagged with the stage name and the worker's pid.

use std::io::Write as _;
use std::sync::{Condvar, Mutex, Once};
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
        if seen.message.contains(SLOW_SINK) {
            // A subscriber writing to a slow sink: forwarding lags the worker.
            std::thread::sleep(Duration::from_micros(100));
        }
        EVENTS.lock().unwrap().push(seen);
        ARRIVED.notify_all();
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs the collecting subscriber once for all the tests of this binary.
fn collect() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| tracing::subscriber::set_global_default(Collect).unwrap());
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
        .unwrap_or_else(|| {
            let short: Vec<String> = events
                .iter()
                .map(|e| format!("{}: {:.80}", e.stage, e.message))
                .collect();
            panic!("no event containing {text:?} arrived: {short:#?}")
        })
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
    collect();
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

/// Writes raw bytes that are not UTF-8 as one line for `n == 1`; every task then prints
/// a plain line.
#[aqueduct::handler]
fn garbled(note: &mut Note) {
    note.pid = std::process::id() as u64;
    if note.n == 1 {
        std::io::stderr().write_all(&[0xff, 0xfe, b'\n']).unwrap();
    }
    eprintln!("garbled worker says {}", note.n);
}

#[tokio::test]
async fn a_line_that_is_not_utf8_does_not_stop_the_forwarding() {
    collect();
    let flow = aqueduct::flow!(garbled).start().await.unwrap();
    let first = flow.process(Note { n: 1, pid: 0 }).await.unwrap();
    wait_for("garbled worker says 1");
    for n in 2..5 {
        // Before the fix, the parent stopped reading at the bad line and closed the
        // pipe, so these `eprintln!`s panicked in the worker.
        let out = flow
            .process(Note { n, pid: 0 })
            .await
            .unwrap_or_else(|e| panic!("task {n} after the bad line failed: {e}"));
        assert_eq!(out.pid, first.pid, "the same worker");
        let line = wait_for(&format!("garbled worker says {n}"));
        assert_eq!(line.pid, first.pid);
    }
    assert!(
        EVENTS
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.stage == "garbled" && e.message.contains('\u{fffd}')),
        "the bad line arrives, lossily decoded"
    );
    flow.stop(true).await;
}

/// Bytes of the over-long line `long_line` writes.
const LONG: usize = 1 << 20;
/// Most bytes of one forwarded line, plus room for the truncation marker.
const LINE_CAP: usize = 16 * 1024 + 64;

/// Writes one line of 1 MiB, then a plain line.
#[aqueduct::handler]
fn long_line(note: &mut Note) {
    note.pid = std::process::id() as u64;
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(&vec![b'y'; LONG]).unwrap();
    stderr.write_all(b"\n").unwrap();
    drop(stderr);
    eprintln!("after the long line {}", note.n);
}

#[tokio::test]
async fn an_overlong_line_is_truncated_and_the_next_line_still_arrives() {
    collect();
    let flow = aqueduct::flow!(long_line).start().await.unwrap();
    flow.process(Note { n: 1, pid: 0 }).await.unwrap();
    wait_for("after the long line 1");
    let long = wait_for("yyyyyyyy");
    assert!(
        long.message.len() <= LINE_CAP,
        "the forwarded line is capped, not {} bytes",
        long.message.len()
    );
    assert!(
        long.message.starts_with(&"y".repeat(16 * 1024)),
        "keeps the start"
    );
    assert!(
        long.message.contains("line truncated"),
        "says that it was truncated"
    );
    flow.process(Note { n: 2, pid: 0 }).await.unwrap();
    wait_for("after the long line 2");
    flow.stop(true).await;
}

/// Lines `burst` writes per task.
const BURST: u64 = 3000;
/// In a line, makes the collecting subscriber take 100 us over it.
const SLOW_SINK: &str = "to a slow sink";

/// Writes `BURST` log lines, numbered, that the parent's subscriber is slow to take;
/// then answers.
#[aqueduct::handler]
fn burst(note: &mut Note) {
    note.pid = std::process::id() as u64;
    for line in 0..BURST {
        tracing::info!("burst line {line} of task {} {SLOW_SINK}", note.n);
    }
}

#[tokio::test]
async fn a_graceful_stop_returns_with_every_line_its_workers_wrote_forwarded() {
    collect();
    let flow = aqueduct::flow!(burst).start().await.unwrap();
    flow.process(Note { n: 7, pid: 0 }).await.unwrap();
    // No waiting for the lines here: the stop itself must not return before they are in.
    flow.stop(true).await;
    let forwarded = EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.stage == "burst" && e.message.contains("of task 7"))
        .count() as u64;
    assert_eq!(forwarded, BURST, "lines forwarded when the stop returned");
}
