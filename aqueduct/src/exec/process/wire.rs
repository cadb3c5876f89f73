//! The wire protocol between the parent and one worker process: the control region's
//! layout as types, and the paired functions that write and read it. The parent, the
//! worker and the tests all go through these functions, so the two sides cannot drift.
//!
//! ```text
//! Header      magic, req_seq (parent), taken_seq, resp_seq, worker_waiting, state,
//!             message, declining (worker), closing, parent_waiting, expected (parent);
//!             one cache line per word
//! lane 0      LaneHeader: tag, check, count, published_ns (parent); taken_tag, answer_tag,
//!             resp_count, compute_ns, log_lines, begun, begun_check (worker)
//!             request slots:  batch_cap × input size        (the tasks' `#[task]` bytes)
//!             response slots: batch_cap × (SlotHeader + slot_data)
//! lane 1      laid out the same way: a second request, waiting behind the first
//! ```
//!
//! Requests are numbered from 1. The parent writes each into a free lane, tagged with
//! its number and a checksum of its contents, then publishes the number in `req_seq`.
//! The worker runs requests strictly in order: it finds request `n` by its tag, copies
//! the tasks out and verifies the checksum, records that it took the request (in the
//! lane *and* in `taken_seq`), runs it, and answers in the same lane: every response
//! slot carries a stamp (the request's number) and a checksum of its contents, the lane
//! says which request its response answers, and `resp_seq` publishes the number.
//!
//! # What the parent trusts
//! Nothing the worker writes is taken on its word alone; a worker with a memory bug can
//! write any of its words at any time. The parent decides from what *it* wrote plus
//! worker words that agree with each other:
//! - an answer counts only if `resp_seq`, the lane's `answer_tag`, the count, and every
//!   slot's stamp and checksum agree with the request ([`check_answer`] and [`read_result`]); anything else is
//!   a protocol violation, never a handler error;
//! - a request counts as not taken (and may be sent again after the worker died) only if
//!   *both* `taken_seq` and the lane's `taken_tag` say so ([`taken`]); one stray write
//!   can therefore neither fake an answer nor make a batch run twice;
//! - the worker likewise refuses a request whose checksum does not match, before taking
//!   it, so a stray write into a queued request never runs as a task;
//! - of a request whose worker was lost, the tasks past the lane's `begun` count never
//!   ran, and may go again, only if that count matches its checksum ([`begun`]) and no
//!   slot past it is stamped for the request; a result the worker wrote before it was
//!   lost counts only as any answer's does, slot by slot ([`read_result`]).
//!
//! Slot contents are written before the sequence number that publishes them (Release)
//! and read after it was observed (Acquire). Wake-ups use eventfds under an event-count
//! protocol: the worker announces that it is about to sleep (`worker_waiting`),
//! re-checks, then sleeps; the parent writes the eventfd only when the worker announced.
//! The response direction is the mirror image (`parent_waiting`): a parent polling for
//! an answer is not woken by a system call it does not need. Since a stray write by the
//! worker could clear the parent's announcement, a sleeping parent also re-checks on a
//! slow backstop timer: a lost wake-up costs latency, never a wedged stage.

use std::ops::{Deref, Range};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::channel::Region;
use crate::hash::{checksum, Digest};
use crate::platform::PAGE;

pub(crate) const MAGIC: u64 = 0x6171_7565_6475_6374; // "aqueduct"
/// Longest init error or refusal text.
pub(crate) const MSG_CAP: usize = 1024;
/// Longest handler error message carried back (longer ones are truncated).
pub(crate) const ERR_CAP: usize = 1024;
/// Most lanes a region has: a worker holds at most this many requests at once.
pub(crate) const MAX_LANES: usize = 2;
/// Bytes of a cache line: parts of the region that different processes write start on
/// separate lines (the `align(64)` attributes below say the same, as a literal).
const CACHE_LINE: usize = 64;

/// A word on its own cache line, so the two processes' writes do not share lines.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Line<T>(T);

impl<T> Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The fixed start of the control region. Each word is written by one side only.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    /// Parent, at creation: [`MAGIC`].
    pub magic: Line<AtomicU64>,
    /// Parent: the number of the last request published.
    pub req_seq: Line<AtomicU64>,
    /// Worker: the number of the last request it took.
    pub taken_seq: Line<AtomicU64>,
    /// Worker: the number of the last request it answered.
    pub resp_seq: Line<AtomicU64>,
    /// Worker: "about to sleep on the request eventfd"; the parent clears it.
    pub worker_waiting: Line<AtomicU32>,
    /// Worker: a [`WorkerState`].
    pub state: Line<AtomicU32>,
    /// Parent: "exit when idle".
    pub closing: Line<AtomicU32>,
    /// Parent: "about to sleep until an answer"; the worker clears it when it signals.
    pub parent_waiting: Line<AtomicU32>,
    /// Parent: "a request is expected within microseconds" (see [`expect_request`]);
    /// the worker clears it when it starts polling for the request.
    pub expected: Line<AtomicU32>,
    /// Worker: "do not expect requests for now" (see [`decline_expected`]).
    pub declining: Line<AtomicU32>,
    /// Worker: the length of `message`.
    pub message_len: Line<AtomicU32>,
    /// Worker: its init error or refusal text.
    pub message: [AtomicU8; MSG_CAP],
}

/// The head of one lane.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct LaneHeader {
    /// Parent: the number of the request this lane holds.
    pub tag: AtomicU64,
    /// Parent: checksum of the request (number, count and task bytes).
    pub check: AtomicU64,
    /// Worker: the number of the request it took from this lane.
    pub taken_tag: AtomicU64,
    /// Worker: the number of the request this lane's response answers.
    pub answer_tag: AtomicU64,
    /// Parent: tasks in the request.
    pub count: AtomicU32,
    /// Parent: when it published the request (`CLOCK_MONOTONIC` ns), for the worker's
    /// idle poll to tell back-to-back requests from far-off ones.
    pub published_ns: AtomicU64,
    /// Worker: results in the response.
    pub resp_count: AtomicU32,
    /// Worker: nanoseconds its handler calls took on the request.
    pub compute_ns: AtomicU64,
    /// Worker: log lines it wrote while it ran the request.
    pub log_lines: AtomicU32,
    /// Worker: how many of the request's tasks have begun (the rest have not).
    pub begun: AtomicU64,
    /// Worker: the checksum tying `begun` to the request's number (see [`begun`]).
    pub begun_check: AtomicU64,
}

/// The head of one response slot.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SlotHeader {
    /// The number of the request this slot answers.
    pub stamp: AtomicU64,
    /// Checksum of stamp, index, status, length and data.
    pub check: AtomicU64,
    /// A [`SlotStatus`].
    pub status: AtomicU32,
    /// Bytes of data: the output's size, or the error text's length.
    pub len: AtomicU32,
    _reserved: AtomicU64,
}

/// Bytes of a response slot's header.
pub(crate) const RESP_HEADER: usize = size_of::<SlotHeader>();
/// Where the lanes start.
const LANES_START: usize = size_of::<Header>().next_multiple_of(CACHE_LINE);

/// A worker's start-up state.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerState {
    Starting = 0,
    Ready = 1,
    InitFailed = 2,
    Refused = 3,
}

impl WorkerState {
    fn from_word(word: u32) -> Option<Self> {
        [Self::Starting, Self::Ready, Self::InitFailed, Self::Refused]
            .into_iter()
            .find(|state| *state as u32 == word)
    }
}

/// What a response slot holds. Zero is no status, so an unwritten slot is invalid.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotStatus {
    Output = 0x4f4b, // "OK"
    Error = 0x4552,  // "ER"
}

/// Sizes of a worker's slots, fixed at spawn from the stage's types and batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Most tasks one request carries.
    pub batch_cap: usize,
    pub input_size: usize,
    pub output_size: usize,
    /// Requests a worker may hold at once (1 or 2, see the module docs).
    pub lanes: usize,
}

impl Geometry {
    /// Whether the sizes are usable: a worker refuses a geometry that is not.
    pub(crate) fn is_valid(&self) -> bool {
        self.batch_cap > 0 && (1..=MAX_LANES).contains(&self.lanes)
    }

    /// Data bytes of one response slot: an output or an error message.
    pub(crate) fn slot_data(&self) -> usize {
        self.output_size.max(ERR_CAP).next_multiple_of(8)
    }

    fn lane_len(&self) -> usize {
        self.responses_start() + self.batch_cap * (RESP_HEADER + self.slot_data())
    }

    fn responses_start(&self) -> usize {
        (size_of::<LaneHeader>() + self.batch_cap * self.input_size).next_multiple_of(CACHE_LINE)
    }

    fn lane_offset(&self, lane: usize) -> usize {
        LANES_START + lane * self.lane_len().next_multiple_of(CACHE_LINE)
    }

    pub(crate) fn request_offset(&self, lane: usize, index: usize) -> usize {
        self.lane_offset(lane) + size_of::<LaneHeader>() + index * self.input_size
    }

    pub(crate) fn response_offset(&self, lane: usize, index: usize) -> usize {
        self.lane_offset(lane) + self.responses_start() + index * (RESP_HEADER + self.slot_data())
    }

    /// Total bytes of the region.
    pub(crate) fn region_len(&self) -> usize {
        self.lane_offset(self.lanes).next_multiple_of(PAGE)
    }

    /// The part of a scratch area of `capacity` bytes that a lane's handler calls
    /// allocate in: an equal share per lane, page-aligned.
    pub(crate) fn scratch_window(&self, capacity: usize, lane: usize) -> Range<usize> {
        let share = (capacity / self.lanes) & !(PAGE - 1);
        lane * share..(lane + 1) * share
    }
}

/// The smallest region that holds a header.
pub(crate) const MIN_REGION: usize = LANES_START;

// SAFETY: these types consist of atomics only (and padding): every bit pattern is a
// valid value, and all access goes through the atomics' interior mutability.
unsafe impl super::channel::Shared for Header {}
// SAFETY: as above.
unsafe impl super::channel::Shared for LaneHeader {}
// SAFETY: as above.
unsafe impl super::channel::Shared for SlotHeader {}

impl Region {
    /// The region's header.
    pub(crate) fn header(&self) -> &Header {
        self.shared_at(0)
    }

    /// A lane's header.
    pub(crate) fn lane(&self, geometry: &Geometry, lane: usize) -> &LaneHeader {
        self.shared_at(geometry.lane_offset(lane))
    }

    pub(crate) fn slot(&self, geometry: &Geometry, lane: usize, index: usize) -> &SlotHeader {
        self.shared_at(geometry.response_offset(lane, index))
    }

    /// The worker's start-up state; `Err` holds an unknown word.
    pub(crate) fn state(&self) -> Result<WorkerState, u32> {
        let word = self.header().state.load(Ordering::Acquire);
        WorkerState::from_word(word).ok_or(word)
    }

    /// Worker: records its start-up state (with the reason, for a failure).
    pub(crate) fn set_state(&self, state: WorkerState, message: &str) {
        let header = self.header();
        let bytes = truncate_utf8(message, MSG_CAP).as_bytes();
        for (cell, byte) in header.message.iter().zip(bytes) {
            cell.store(*byte, Ordering::Relaxed);
        }
        header
            .message_len
            .store(bytes.len() as u32, Ordering::Relaxed);
        header.state.store(state as u32, Ordering::Release);
    }

    /// Parent: the worker's init error or refusal text (length validated).
    pub(crate) fn message(&self) -> String {
        let header = self.header();
        let len = (header.message_len.load(Ordering::Acquire) as usize).min(MSG_CAP);
        let bytes: Vec<u8> = header.message[..len]
            .iter()
            .map(|cell| cell.load(Ordering::Relaxed))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The checksum of a request.
fn request_check(seq: u64, tasks: &[u8]) -> u64 {
    checksum(&[seq], tasks)
}

/// The checksum of a response slot.
fn slot_check(seq: u64, index: usize, status: u32, data: &[u8]) -> u64 {
    checksum(&[seq, index as u64, status as u64], data)
}

/// Parent: writes request `seq` (the tasks' bytes, `count` of `input_size` each) into
/// `lane` and publishes it, made at `published_ns` (`CLOCK_MONOTONIC`). The lane must be
/// free (its last answer read, or its worker gone).
pub(crate) fn write_request(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    seq: u64,
    tasks: &[u8],
    published_ns: u64,
) {
    let count = tasks.len() / geometry.input_size.max(1);
    debug_assert!(count >= 1 && count <= geometry.batch_cap);
    ctl.write(geometry.request_offset(lane, 0), tasks);
    let head = ctl.lane(geometry, lane);
    head.count.store(count as u32, Ordering::Relaxed);
    head.check
        .store(request_check(seq, tasks), Ordering::Relaxed);
    head.tag.store(seq, Ordering::Relaxed);
    head.published_ns.store(published_ns, Ordering::Relaxed);
    ctl.header().req_seq.store(seq, Ordering::Release);
}

/// Worker: when the parent published the request in `lane` (`CLOCK_MONOTONIC` ns).
pub(crate) fn published_ns(ctl: &Region, geometry: &Geometry, lane: usize) -> u64 {
    ctl.lane(geometry, lane)
        .published_ns
        .load(Ordering::Relaxed)
}

/// Why a worker will not run a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadRequest(pub String);

/// Worker: finds request `seq` and copies its tasks' bytes into `out` (cleared first),
/// verifying count and checksum. Returns its lane. Does not take it (see [`take`]).
pub(crate) fn read_request(
    ctl: &Region,
    geometry: &Geometry,
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<usize, BadRequest> {
    let lane = (0..geometry.lanes)
        .find(|&lane| ctl.lane(geometry, lane).tag.load(Ordering::Acquire) == seq)
        .ok_or_else(|| BadRequest(format!("request {seq} is in no lane")))?;
    let head = ctl.lane(geometry, lane);
    let count = head.count.load(Ordering::Relaxed) as usize;
    if count == 0 || count > geometry.batch_cap {
        return Err(BadRequest(format!(
            "request {seq} holds {count} tasks, not 1 to {}",
            geometry.batch_cap
        )));
    }
    let check = head.check.load(Ordering::Relaxed);
    out.clear();
    out.resize(count * geometry.input_size, 0);
    ctl.read(geometry.request_offset(lane, 0), out);
    if request_check(seq, out) != check || head.tag.load(Ordering::Acquire) != seq {
        return Err(BadRequest(format!(
            "request {seq} does not match its checksum"
        )));
    }
    Ok(lane)
}

/// Worker: records that it took request `seq` from `lane` (in both places the parent
/// checks, see [`taken`]).
pub(crate) fn take(ctl: &Region, geometry: &Geometry, lane: usize, seq: u64) {
    ctl.lane(geometry, lane)
        .taken_tag
        .store(seq, Ordering::Release);
    ctl.header().taken_seq.store(seq, Ordering::Release);
}

/// What the parent can tell about whether the worker took a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Both of the worker's words say it took it.
    Yes,
    /// Both say it did not: safe to send again elsewhere.
    No,
    /// They disagree (a stray write, or a death between the two writes): it may have
    /// run, so it is never sent again.
    Unsure,
}

/// Parent: whether the worker took request `seq` from `lane`.
pub(crate) fn taken(ctl: &Region, geometry: &Geometry, lane: usize, seq: u64) -> Taken {
    let by_lane = ctl.lane(geometry, lane).taken_tag.load(Ordering::Acquire) == seq;
    let by_header = ctl.header().taken_seq.load(Ordering::Acquire) >= seq;
    match (by_lane, by_header) {
        (true, true) => Taken::Yes,
        (false, false) => Taken::No,
        _ => Taken::Unsure,
    }
}

/// The checksum of a lane's `begun` word for request `seq`: three word mixes, as it is
/// written before every task of a run.
fn begun_check(seq: u64, begun: u64) -> u64 {
    /// Sets these checksums apart from any other word's.
    const BEGUN: u64 = 0x6265_6775_6e00_0000; // "begun"
    Digest::new().word(BEGUN).word(seq).word(begun).finish()
}

/// Worker: records that the first `begun` tasks of request `seq` in `lane` have begun,
/// and no later one, before the next task begins. (A handler call of several tasks is
/// recorded as begun whole before it starts, unless its per-task loop tells task by
/// task: see [`crate::progress`].)
pub(crate) fn set_begun(ctl: &Region, geometry: &Geometry, lane: usize, seq: u64, begun: usize) {
    let head = ctl.lane(geometry, lane);
    head.begun.store(begun as u64, Ordering::Relaxed);
    head.begun_check
        .store(begun_check(seq, begun as u64), Ordering::Release);
}

/// Parent, once the worker that took request `seq` (of `count` tasks) in `lane` is
/// gone: how many of its tasks had begun; every later one never ran. `None` unless the
/// count and its checksum agree with each other and the request (one stray write, a
/// death between the two words, or one before the first handler call, makes every
/// task count as begun: none then goes again).
pub(crate) fn begun(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    seq: u64,
    count: usize,
) -> Option<usize> {
    let head = ctl.lane(geometry, lane);
    let check = head.begun_check.load(Ordering::Acquire);
    let begun = head.begun.load(Ordering::Relaxed);
    (check == begun_check(seq, begun) && begun <= count as u64).then_some(begun as usize)
}

/// Parent: whether result slot `index` of `lane` says it answers request `seq` (its stamp
/// alone: a hint that the slot was written, never a result, see [`read_result`]).
pub(crate) fn stamped(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    seq: u64,
    index: usize,
) -> bool {
    ctl.slot(geometry, lane, index)
        .stamp
        .load(Ordering::Acquire)
        == seq
}

/// One result as the worker writes it.
pub(crate) enum Outcome<'a> {
    Output(&'a [u8]),
    Error(&'a str),
}

/// Worker: writes the outcome of task `index` of request `seq` into `lane`'s result
/// slot. The parent reads no slot before [`publish_answer`].
pub(crate) fn write_result(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    seq: u64,
    index: usize,
    outcome: Outcome<'_>,
) {
    let (status, data) = match outcome {
        Outcome::Output(bytes) => (SlotStatus::Output, bytes),
        Outcome::Error(text) => (
            SlotStatus::Error,
            truncate_utf8(text, ERR_CAP.min(geometry.slot_data())).as_bytes(),
        ),
    };
    ctl.write(geometry.response_offset(lane, index) + RESP_HEADER, data);
    let slot = ctl.slot(geometry, lane, index);
    slot.status.store(status as u32, Ordering::Relaxed);
    slot.len.store(data.len() as u32, Ordering::Relaxed);
    slot.stamp.store(seq, Ordering::Relaxed);
    slot.check.store(
        slot_check(seq, index, status as u32, data),
        Ordering::Relaxed,
    );
}

/// Worker: publishes the answer to request `seq` in `lane`, its first `count` result
/// slots written (see [`write_result`]).
pub(crate) fn publish_answer(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    seq: u64,
    count: usize,
) {
    let head = ctl.lane(geometry, lane);
    head.resp_count.store(count as u32, Ordering::Relaxed);
    head.answer_tag.store(seq, Ordering::Release);
    ctl.header().resp_seq.store(seq, Ordering::Release);
}

/// Worker: answers request `seq` in `lane` with one outcome per task, then publishes.
#[cfg(test)]
pub(crate) fn write_answer<'a>(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    seq: u64,
    outcomes: impl ExactSizeIterator<Item = Outcome<'a>>,
) {
    let count = outcomes.len();
    for (index, outcome) in outcomes.enumerate() {
        write_result(ctl, geometry, lane, seq, index, outcome);
    }
    publish_answer(ctl, geometry, lane, seq, count);
}

/// What a worker says about how it ran a request, besides the results: figures for
/// observers, which decide nothing (the parent clamps the time to what it saw itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Nanoseconds the handler calls took.
    pub compute_ns: u64,
    /// Log lines the worker wrote while it ran the request.
    pub log_lines: u32,
}

/// Worker: records how it ran the request in `lane`, before [`publish_answer`] publishes
/// the answer (and with it this report).
pub(crate) fn write_report(ctl: &Region, geometry: &Geometry, lane: usize, report: Report) {
    let head = ctl.lane(geometry, lane);
    head.compute_ns.store(report.compute_ns, Ordering::Relaxed);
    head.log_lines.store(report.log_lines, Ordering::Relaxed);
}

/// Parent: the worker's report on the request answered in `lane`, after
/// [`check_answer`].
pub(crate) fn read_report(ctl: &Region, geometry: &Geometry, lane: usize) -> Report {
    let head = ctl.lane(geometry, lane);
    Report {
        compute_ns: head.compute_ns.load(Ordering::Relaxed),
        log_lines: head.log_lines.load(Ordering::Relaxed),
    }
}

/// Parent: announces that it is about to sleep until an answer (then re-checks for one
/// before it sleeps: see the module docs).
pub(crate) fn announce_parent_sleep(ctl: &Region) {
    ctl.header().parent_waiting.store(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// Parent: tells the worker that a request is expected within microseconds (the stage
/// before runs a lone task, and fast), so that a worker about to sleep polls for it
/// instead and a sleeping one wakes now, while the stage before still works. Whether
/// the worker had announced its sleep, and so needs the eventfd written (the
/// announcement is taken, as [`publish_answer`]'s counterpart in the request direction
/// takes it).
///
/// Nothing is set, and `false` returned, while the worker declines expectations (its
/// polls for them did not pay: a busy machine). That word is the worker's and only a
/// hint: whatever it holds, at worst a request is not announced ahead.
pub(crate) fn expect_request(ctl: &Region) -> bool {
    let header = ctl.header();
    if header.declining.load(Ordering::Relaxed) != 0 {
        return false;
    }
    header.expected.store(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    header.worker_waiting.swap(0, Ordering::SeqCst) != 0
}

/// Worker: whether the parent expects a request within microseconds (the expectation
/// is taken). Only ever a reason to poll a while longer: a request is still seen by
/// its number alone.
pub(crate) fn request_expected(ctl: &Region) -> bool {
    ctl.header().expected.swap(0, Ordering::SeqCst) != 0
}

/// Worker: whether it declines expectations for now (see [`expect_request`]).
pub(crate) fn decline_expected(ctl: &Region, declining: bool) {
    ctl.header()
        .declining
        .store(u32::from(declining), Ordering::Relaxed);
}

/// Worker, after [`publish_answer`]: whether the parent announced that it sleeps, and so
/// needs the eventfd written (the announcement is taken, for the next one to set).
pub(crate) fn parent_sleeps(ctl: &Region) -> bool {
    fence(Ordering::SeqCst);
    ctl.header().parent_waiting.swap(0, Ordering::SeqCst) != 0
}

/// Parent: whether the worker says it answered request `seq`, in `resp_seq` or in the
/// lane (either will do, so one stray write cannot hide an answer; each publishes the
/// slots). A hint only: [`check_answer`] and [`read_result`] decide whether the answer
/// counts.
pub(crate) fn answered(ctl: &Region, geometry: &Geometry, lane: usize, seq: u64) -> bool {
    ctl.header().resp_seq.load(Ordering::Acquire) >= seq
        || ctl.lane(geometry, lane).answer_tag.load(Ordering::Acquire) == seq
}

/// One result as the parent reads it: the output's bytes were copied into the caller's
/// buffer, or the handler's error text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    Output,
    Error(String),
}

/// Parent: checks that the answer in `lane` is the answer to request `seq` of `count`
/// tasks, none of them newer than `published` (the number of the last request written,
/// which the parent sets before it publishes a request).
///
/// `published` is read *after* the response number: a dispatch on another thread may
/// publish, and the worker answer, more requests while this one is checked, and a
/// response number read later than the count it is compared with would be taken for a
/// worker answering what was never sent (seen under load before it was read in this
/// order).
pub(crate) fn check_answer(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    seq: u64,
    count: usize,
    published: &AtomicU64,
) -> Result<(), String> {
    let resp_seq = ctl.header().resp_seq.load(Ordering::Acquire);
    let published = published.load(Ordering::Acquire);
    if resp_seq > published {
        return Err(format!(
            "response number {resp_seq} is ahead of the last request's {published}"
        ));
    }
    let head = ctl.lane(geometry, lane);
    let answers = head.answer_tag.load(Ordering::Acquire);
    if answers != seq {
        return Err(format!(
            "lane {lane} answers request {answers}, not request {seq}"
        ));
    }
    let results = head.resp_count.load(Ordering::Acquire) as usize;
    if results != count {
        return Err(format!(
            "response holds {results} results for a batch of {count} tasks"
        ));
    }
    Ok(())
}

/// Parent: copies `out.len()` bytes at `at` within result `index`'s data in `lane`, as
/// they are, unchecked: for a hint only (see `results::claimed_copy_bytes`), never for
/// a result. `false` if that lies outside the slot or the region.
pub(crate) fn peek_result(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    index: usize,
    at: usize,
    out: &mut [u8],
) -> bool {
    at.checked_add(out.len())
        .is_some_and(|end| end <= geometry.slot_data())
        && ctl.read(
            geometry.response_offset(lane, index) + RESP_HEADER + at,
            out,
        )
}

/// Parent: reads result `index` of the answer to `seq` in `lane`, after
/// [`check_answer`]. An output is copied into `output` (exactly its size). Everything is
/// validated on the parent's own copy: stamp, status, length and checksum.
pub(crate) fn read_result(
    ctl: &Region,
    geometry: &Geometry,
    lane: usize,
    seq: u64,
    index: usize,
    output: &mut [u8],
) -> Result<Read, String> {
    let slot = ctl.slot(geometry, lane, index);
    let stamp = slot.stamp.load(Ordering::Acquire);
    let status = slot.status.load(Ordering::Acquire);
    let len = slot.len.load(Ordering::Acquire) as usize;
    let check = slot.check.load(Ordering::Acquire);
    if stamp != seq {
        return Err(format!(
            "result {index} is stamped for request {stamp}, not request {seq}"
        ));
    }
    let data_at = geometry.response_offset(lane, index) + RESP_HEADER;
    let read = if status == SlotStatus::Output as u32 && len == geometry.output_size {
        ctl.read(data_at, output);
        if slot_check(seq, index, status, output) != check {
            return Err(format!("result {index} does not match its checksum"));
        }
        Read::Output
    } else if status == SlotStatus::Error as u32 && len <= ERR_CAP.min(geometry.slot_data()) {
        let mut text = vec![0; len];
        ctl.read(data_at, &mut text);
        if slot_check(seq, index, status, &text) != check {
            return Err(format!("result {index} does not match its checksum"));
        }
        let text = String::from_utf8(text)
            .map_err(|_| format!("result {index}: error text is not UTF-8"))?;
        Read::Error(text)
    } else {
        return Err(format!(
            "result {index}: invalid slot (status {status:#x}, length {len})"
        ));
    };
    Ok(read)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
