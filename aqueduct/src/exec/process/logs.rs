//! Worker logs reach the parent's `tracing` subscriber.
//!
//! A worker's stderr is a pipe to the parent. In the worker, a small subscriber writes
//! each `tracing` event as one marked line; anything else on stderr (panic messages,
//! `eprintln!`) is a plain line. The parent reads the pipe on a thread per worker and
//! re-emits every line as a `tracing` event with `stage` and `pid` fields (plain lines
//! at WARN). If the parent has no subscriber, lines go to its own stderr instead, so
//! nothing a worker says is lost.
//!
//! The parent reads until the pipe closes, whatever it carries: bytes that are not UTF-8
//! are decoded lossily, and a line longer than [`MAX_LINE`] keeps its start and says how
//! much was dropped. Stopping early would close the pipe, and every later write to
//! stderr in the worker (an `eprintln!`, a panic message) would then fail or panic.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Write as _};
use std::str::FromStr;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Starts a line written by the worker's subscriber (ASCII record separator).
const MARK: char = '\u{1e}';

/// Most bytes of one line the parent forwards; the rest of a longer line is dropped, so
/// a worker writing without newlines cannot grow the parent's memory.
const MAX_LINE: usize = 16 * 1024;

/// Worker side: routes the worker's `tracing` events up to `level` to stderr as marked
/// lines. (`level` is the parent's `AQUEDUCT_WORKER_LOG`, passed in the spawn spec.)
pub(crate) fn install_worker_subscriber(level: LevelFilter) {
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
            if let Err(e) = for_each_line(BufReader::new(stderr), MAX_LINE, |line| {
                emit(stage, pid, line)
            }) {
                tracing::warn!(stage, pid, "stopped forwarding worker logs: {e}");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(stage, pid, "cannot forward worker logs: {e}");
    }
}

/// Calls `each` with every line of `reader` (without its newline) until end of input:
/// decoded lossily, and cut to its first `cap` bytes plus a note of what was dropped.
/// Returns early only on a read error other than an interruption.
fn for_each_line(
    mut reader: impl BufRead,
    cap: usize,
    mut each: impl FnMut(&str),
) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut dropped = 0usize;
    let mut finish = |line: &mut Vec<u8>, dropped: &mut usize| {
        let mut text = String::from_utf8_lossy(line);
        if *dropped > 0 {
            let note = format!(" … [line truncated: {dropped} bytes dropped]");
            text.to_mut().push_str(&note);
        }
        each(&text);
        line.clear();
        *dropped = 0;
    };
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let newline = chunk.iter().position(|&b| b == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        let keep = part.len().min(cap - line.len());
        line.extend_from_slice(&part[..keep]);
        dropped += part.len() - keep;
        let used = newline.map_or(chunk.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() {
            finish(&mut line, &mut dropped);
        }
    }
    if !line.is_empty() || dropped > 0 {
        finish(&mut line, &mut dropped);
    }
    Ok(())
}

fn emit(stage: &'static str, pid: u32, line: &str) {
    let (level, target, message) = match line.strip_prefix(MARK) {
        Some(marked) => {
            let mut parts = marked.splitn(3, ' ');
            let level = parts
                .next()
                .and_then(|level| Level::from_str(level).ok())
                .unwrap_or(Level::INFO);
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

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<String> {
        let mut seen = Vec::new();
        for_each_line(input, cap, |line| seen.push(line.to_string())).unwrap();
        seen
    }

    #[test]
    fn bytes_that_are_not_utf8_are_decoded_lossily_and_reading_goes_on() {
        assert_eq!(
            lines(b"a\n\xff\xfe\nb\n", 64),
            ["a", "\u{fffd}\u{fffd}", "b"]
        );
    }

    #[test]
    fn a_long_line_keeps_its_start_and_says_what_was_dropped() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\nnext\ntail without newline");
        // A small buffer, so the long line arrives in several reads.
        let reader = BufReader::with_capacity(7, &input[..]);
        let mut seen = Vec::new();
        for_each_line(reader, 10, |line| seen.push(line.to_string())).unwrap();
        assert_eq!(
            seen,
            [
                "xxxxxxxxxx … [line truncated: 90 bytes dropped]",
                "next",
                "tail witho … [line truncated: 10 bytes dropped]",
            ]
        );
    }

    /// Fails every other read with `Interrupted`.
    struct Interrupting<'a>(&'a [u8], bool);

    impl Read for Interrupting<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(ErrorKind::Interrupted.into());
            }
            let n = out.len().min(2);
            self.0.read(&mut out[..n])
        }
    }

    #[test]
    fn an_interrupted_read_is_retried() {
        let reader = BufReader::new(Interrupting(b"one\ntwo\n", false));
        let mut seen = Vec::new();
        for_each_line(reader, 64, |line| seen.push(line.to_string())).unwrap();
        assert_eq!(seen, ["one", "two"]);
    }
}
