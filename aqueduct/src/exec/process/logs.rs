//! Worker logs reach the parent's `tracing` subscriber.
//!
//! A worker's stderr is a pipe to the parent. In the worker, a small subscriber writes
//! each `tracing` event as one marked line; anything else on stderr (panic messages,
//! `eprintln!`) is a plain line. The parent reads the pipe on a thread per worker and
//! re-emits every line as a `tracing` event with `stage` and `pid` fields (plain lines
//! at WARN). If the parent has no subscriber, lines go to its own stderr instead, so
//! nothing a worker says is lost.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Starts a line written by the worker's subscriber (ASCII record separator).
const MARK: char = '\u{1e}';

/// Worker side: routes the worker's `tracing` events to stderr as marked lines. Level:
/// `AQUEDUCT_WORKER_LOG` (`error` … `trace`), INFO by default.
pub(crate) fn install_worker_subscriber() {
    let level = match std::env::var("AQUEDUCT_WORKER_LOG").as_deref() {
        Ok("error") => LevelFilter::ERROR,
        Ok("warn") => LevelFilter::WARN,
        Ok("debug") => LevelFilter::DEBUG,
        Ok("trace") => LevelFilter::TRACE,
        Ok("off") => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    };
    let _ = tracing::subscriber::set_global_default(LineSubscriber { level });
}

struct LineSubscriber {
    level: LevelFilter,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{rest}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for LineSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.level >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let line = format!(
            "{MARK}{} {} {}\n",
            meta.level(),
            meta.target(),
            fields.0.replace('\n', "\\n")
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Parent side: re-emits what worker `pid` of `stage` writes on `stderr`, until it
/// closes (the worker exited).
pub(crate) fn forward(stage: &'static str, pid: u32, stderr: std::fs::File) {
    let spawned = std::thread::Builder::new()
        .name(format!("aqueduct-log-{pid}"))
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                emit(stage, pid, &line);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(stage, pid, "cannot forward worker logs: {e}");
    }
}

fn emit(stage: &'static str, pid: u32, line: &str) {
    let (level, target, message) = match line.strip_prefix(MARK) {
        Some(marked) => {
            let mut parts = marked.splitn(3, ' ');
            let level = match parts.next() {
                Some("ERROR") => Level::ERROR,
                Some("WARN") => Level::WARN,
                Some("DEBUG") => Level::DEBUG,
                Some("TRACE") => Level::TRACE,
                _ => Level::INFO,
            };
            let target = parts.next().unwrap_or("");
            (level, target, parts.next().unwrap_or(""))
        }
        None => (Level::WARN, "stderr", line),
    };
    if !tracing::dispatcher::has_been_set() {
        eprintln!("[{stage} worker {pid}] {level} {target}: {message}");
        return;
    }
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(target: "aqueduct::worker", $level, stage, pid, worker_target = target, "{message}")
        };
    }
    match level {
        Level::ERROR => at!(Level::ERROR),
        Level::WARN => at!(Level::WARN),
        Level::INFO => at!(Level::INFO),
        Level::DEBUG => at!(Level::DEBUG),
        _ => at!(Level::TRACE),
    }
}
