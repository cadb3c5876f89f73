//! Worker logs reach the parent's `tracing` subscriber.
//!
//! A worker's stderr is a pipe to the parent. In the worker, a small subscriber writes
//! each `tracing` event as one marked line; anything else on stderr (panic messages,
//! `eprintln!`) is a plain line. The parent reads the pipe on a thread per worker and
//! re-emits every line as a `tracing` event with `stage` and `pid` fields (plain lines
//! at WARN). If the parent has no subscriber, lines go to its own stderr instead (above a
//! graph run's progress bars, see [`crate::console`]), so nothing a worker says is lost.
//!
//! A marked line also names the request the worker was running. The parent lends each
//! observed request's batch span to the worker's [`SpanBook`] when it publishes the
//! request, and re-emits the request's lines under that span: the handler's events in a
//! worker process belong to the same trace as its caller's `process` call. The worker
//! tells the parent, with its answer, how many lines the request wrote, so the span is
//! kept exactly until they have been read (the pipe is read apart from the answers).
//!
//! The parent reads until the pipe closes, whatever it carries: bytes that are not UTF-8
//! are decoded lossily, and a line longer than [`MAX_LINE`] keeps its start and says how
//! much was dropped. Stopping early would close the pipe, and every later write to
//! stderr in the worker (an `eprintln!`, a panic message) would then fail or panic. Only
//! once the worker is gone does reading end on its own, [`GRACE`] later: the pipe is
//! then held open by a process the worker started, not by the worker.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::platform::{eventfd, fd};

/// Starts a line written by the worker's subscriber (ASCII record separator).
const MARK: char = '\u{1e}';

/// Most bytes of one line the parent forwards; the rest of a longer line is dropped, so
/// a worker writing without newlines cannot grow the parent's memory.
const MAX_LINE: usize = 16 * 1024;

/// Most requests whose spans a worker's book holds: a worker that writes fewer lines
/// than it announced (or none at all while the parent keeps lending) cannot make the
/// parent keep spans without bound.
const BOOK_CAP: usize = 16;

/// Worker side: the request the worker runs now (0: none), written in every line.
static RUNNING: AtomicU64 = AtomicU64::new(0);
/// Worker side: lines written since the request began.
static LINES: AtomicU32 = AtomicU32::new(0);

/// Worker side: the worker begins request `seq` (0: it finished one). Returns the lines
/// written since the previous call, for the worker's report.
pub(crate) fn running(seq: u64) -> u32 {
    RUNNING.store(seq, Ordering::Relaxed);
    LINES.swap(0, Ordering::Relaxed)
}

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
            "{MARK}{} {} {} {}\n",
            meta.level(),
            RUNNING.load(Ordering::Relaxed),
            meta.target(),
            fields.0.replace('\n', "\\n")
        );
        if std::io::stderr().lock().write_all(line.as_bytes()).is_ok() {
            LINES.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Parent side: the batch spans of one worker's observed requests, lent when a request
/// is published and kept until the worker's lines about it were read.
#[derive(Debug, Default)]
pub(crate) struct SpanBook {
    lent: Mutex<Vec<Lent>>,
    /// Whether `lent` holds anything, readable without the lock: with nobody observing,
    /// nothing is ever lent, and an answer need not take the lock.
    any: AtomicBool,
}

#[derive(Debug)]
struct Lent {
    seq: u64,
    span: tracing::Span,
    /// Lines of the request read so far.
    read: u32,
    /// Lines the worker says it wrote, once it answered.
    written: Option<u32>,
}

impl SpanBook {
    /// Request `seq` runs in `span` (nothing to keep if nobody observes it).
    pub(crate) fn lend(&self, seq: u64, span: tracing::Span) {
        if span.is_none() {
            return;
        }
        let mut lent = crate::sync::lock(&self.lent);
        if lent.len() == BOOK_CAP {
            lent.remove(0);
        }
        lent.push(Lent {
            seq,
            span,
            read: 0,
            written: None,
        });
        self.any.store(true, Ordering::Release);
    }

    /// The worker answered request `seq` and says it wrote `lines` lines meanwhile.
    pub(crate) fn answered(&self, seq: u64, lines: u32) {
        // A span lent for `seq` was lent before the request was published, so before
        // its answer was read: it is seen here.
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut lent = crate::sync::lock(&self.lent);
        if let Some(at) = lent.iter().position(|entry| entry.seq == seq) {
            if lent[at].read >= lines {
                lent.remove(at);
            } else {
                lent[at].written = Some(lines);
            }
        }
    }

    /// The span of request `seq`, for one of its lines. The pipe keeps the worker's
    /// order, so a line of `seq` also means every older request's lines were read.
    fn line_of(&self, seq: u64) -> Option<tracing::Span> {
        let mut lent = crate::sync::lock(&self.lent);
        lent.retain(|entry| entry.seq >= seq);
        let at = lent.iter().position(|entry| entry.seq == seq)?;
        let entry = &mut lent[at];
        entry.read += 1;
        let span = entry.span.clone();
        if entry.written.is_some_and(|written| entry.read >= written) {
            lent.remove(at);
        }
        Some(span)
    }
}

/// How long a worker's stderr is still read once the worker is gone, and so how long a
/// graceful stop waits for the last lines. The pipe ends as the worker exits, unless a
/// process it started holds its stderr: that one's later output is then dropped, or
/// every such process would keep a thread and a pipe of the parent's for its lifetime.
pub(super) const GRACE: Duration = Duration::from_secs(1);

/// Parent side: re-emits what worker `pid` of `stage` writes on `stderr`, until it
/// closes (the worker exited) or [`GRACE`] after the worker is known to be gone (see
/// [`Forwarded`]); lines of a request lent a span in `book` go under it.
pub(crate) fn forward(
    stage: &'static str,
    pid: u32,
    stderr: std::fs::File,
    book: Arc<SpanBook>,
) -> Forwarded {
    let gone = match eventfd::create(true) {
        Ok(fd) => Some(Arc::new(fd)),
        Err(e) => {
            let message = format!("worker logs will be read until their pipe closes: {e}");
            warn(stage, pid, &message);
            None
        }
    };
    let (done, forwarded) = tokio::sync::oneshot::channel();
    let mut reader = UntilGone {
        stderr,
        gone: gone.clone(),
        deadline: None,
        cut: false,
    };
    let spawned = std::thread::Builder::new()
        .name(format!("aqueduct-log-{pid}"))
        .spawn(move || {
            let read = for_each_line(BufReader::new(&mut reader), MAX_LINE, |line| {
                emit(stage, pid, line, &book)
            });
            if let Err(e) = read {
                warn(stage, pid, &format!("stopped forwarding worker logs: {e}"));
            } else if reader.cut {
                let why = "a process it started still holds its stderr, and what it writes there is dropped";
                warn(stage, pid, &format!("stopped forwarding worker logs {GRACE:?} after the worker exited: {why}"));
            }
            drop(done);
        });
    if let Err(e) = spawned {
        warn(stage, pid, &format!("cannot forward worker logs: {e}"));
    }
    Forwarded {
        done: forwarded,
        gone,
    }
}

/// A worker's stderr, read until it closes or until [`GRACE`] after `gone` is signalled,
/// whichever comes first; then it reads as ended.
struct UntilGone {
    stderr: std::fs::File,
    /// Signalled once the worker is gone (`None`: read until the pipe closes).
    gone: Option<Arc<OwnedFd>>,
    /// When reading stops, once `gone` was seen.
    deadline: Option<Instant>,
    /// Whether reading stopped at the deadline rather than at the pipe's end.
    cut: bool,
}

impl Read for UntilGone {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let Some(gone) = &self.gone else {
            return self.stderr.read(out);
        };
        loop {
            let stderr = self.stderr.as_fd();
            let (data, told) = match self.deadline {
                None => fd::wait_readable(stderr, Some(gone.as_fd()), None)?,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.cut = true;
                        return Ok(0);
                    }
                    fd::wait_readable(stderr, None, Some(left))?
                }
            };
            if data {
                return self.stderr.read(out);
            }
            if told && self.deadline.is_none() {
                self.deadline = Some(Instant::now() + GRACE);
            }
        }
    }
}

/// The parent's side of a worker's log forwarding: resolves once the worker's lines
/// have all been forwarded. Dropped, or [`Forwarded::within`] called, it tells the
/// forwarding that the worker is gone, so that it ends within [`GRACE`] even if the
/// pipe stays open.
#[derive(Debug)]
pub(crate) struct Forwarded {
    done: tokio::sync::oneshot::Receiver<()>,
    gone: Option<Arc<OwnedFd>>,
}

impl Forwarded {
    /// Nothing to wait for (the worker's stderr was not a pipe).
    pub(crate) fn none() -> Self {
        Self {
            done: tokio::sync::oneshot::channel().1,
            gone: None,
        }
    }

    /// The worker has exited: waits until its lines are forwarded (at most [`GRACE`],
    /// and then twice that, should the parent's subscriber block the forwarding).
    pub(crate) async fn within(mut self) {
        self.tell_gone();
        let _ = tokio::time::timeout(2 * GRACE, &mut self.done).await;
    }

    fn tell_gone(&mut self) {
        if let Some(gone) = self.gone.take() {
            // A full counter is as good as told; nothing else can fail here.
            let _ = eventfd::add(&*gone, 1);
        }
    }
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        self.tell_gone();
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

/// A WARN event of the parent's about worker `pid`'s logs, where its lines go: to the
/// parent's subscriber, or without one to its stderr (see [`emit`]).
fn warn(stage: &'static str, pid: u32, message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!(stage, pid, "{message}");
    } else {
        crate::console::line(&format!("[{stage} worker {pid}] WARN aqueduct: {message}"));
    }
}

/// One line as the worker wrote it.
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    level: Level,
    /// The request the worker ran (0: none, or a plain line).
    seq: u64,
    target: &'a str,
    message: &'a str,
}

impl<'a> Line<'a> {
    /// A marked line is `MARK level seq target message`; anything else is plain text.
    fn parse(line: &'a str) -> Self {
        let Some(marked) = line.strip_prefix(MARK) else {
            return Self {
                level: Level::WARN,
                seq: 0,
                target: "stderr",
                message: line,
            };
        };
        let mut parts = marked.splitn(4, ' ');
        let level = parts
            .next()
            .and_then(|level| Level::from_str(level).ok())
            .unwrap_or(Level::INFO);
        let seq = parts.next().and_then(|seq| seq.parse().ok()).unwrap_or(0);
        Self {
            level,
            seq,
            target: parts.next().unwrap_or(""),
            message: parts.next().unwrap_or(""),
        }
    }
}

fn emit(stage: &'static str, pid: u32, line: &str, book: &SpanBook) {
    let Line {
        level,
        seq,
        target,
        message,
    } = Line::parse(line);
    let span = if seq == 0 { None } else { book.line_of(seq) };
    if !tracing::dispatcher::has_been_set() {
        crate::console::line(&format!(
            "[{stage} worker {pid}] {level} {target}: {message}"
        ));
        return;
    }
    let parent = span.as_ref().and_then(tracing::Span::id);
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(target: "aqueduct::worker", parent: parent.clone(), $level, stage, pid, worker_target = target, "{message}")
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

    #[test]
    fn a_marked_line_names_its_level_request_and_target() {
        let line = format!("{MARK}DEBUG 7 my_crate::model loaded weights=3");
        assert_eq!(
            Line::parse(&line),
            Line {
                level: Level::DEBUG,
                seq: 7,
                target: "my_crate::model",
                message: "loaded weights=3",
            }
        );
        let plain = Line::parse("thread 'main' panicked");
        assert_eq!(
            (plain.level, plain.seq, plain.target),
            (Level::WARN, 0, "stderr")
        );
        // Garbage where the request number belongs: no span, the line still goes out.
        assert_eq!(Line::parse(&format!("{MARK}INFO x t m")).seq, 0);
    }

    /// A span that exists (a disabled one is never lent): needs a subscriber.
    fn with_spans(test: impl FnOnce()) {
        #[derive(Default)]
        struct Ids(AtomicU64);
        impl Subscriber for Ids {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(self.0.fetch_add(1, Ordering::Relaxed) + 1)
            }
            fn record(&self, _: &Id, _: &Record<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, _: &Event<'_>) {}
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
        tracing::subscriber::with_default(Ids::default(), test);
    }

    fn kept(book: &SpanBook) -> Vec<u64> {
        book.lent
            .lock()
            .unwrap()
            .iter()
            .map(|entry| entry.seq)
            .collect()
    }

    #[test]
    fn a_span_is_kept_until_the_lines_the_worker_announced_were_read() {
        with_spans(|| {
            let book = SpanBook::default();
            book.lend(1, tracing::info_span!("one"));
            book.lend(2, tracing::info_span!("two"));
            // Request 1 wrote two lines; one was read before its answer, one after.
            assert!(book.line_of(1).is_some());
            book.answered(1, 2);
            assert_eq!(kept(&book), [1, 2]);
            assert!(book.line_of(1).is_some());
            assert_eq!(kept(&book), [2]);
            // Request 2 wrote nothing: its answer releases it at once.
            book.answered(2, 0);
            assert!(kept(&book).is_empty());
        });
    }

    #[test]
    fn a_newer_requests_line_releases_older_spans_and_the_book_is_bounded() {
        with_spans(|| {
            let book = SpanBook::default();
            book.lend(1, tracing::info_span!("one"));
            book.lend(2, tracing::info_span!("two"));
            assert!(book.line_of(2).is_some());
            assert_eq!(kept(&book), [2], "request 1's lines all came before");
            assert!(book.line_of(1).is_none());
            // Not observed: nothing kept.
            book.lend(3, tracing::Span::none());
            assert_eq!(kept(&book), [2]);
            for seq in 3..40 {
                book.lend(seq, tracing::info_span!("more"));
            }
            assert_eq!(kept(&book).len(), BOOK_CAP);
            assert_eq!(kept(&book)[0], 40 - BOOK_CAP as u64);
        });
    }
}
