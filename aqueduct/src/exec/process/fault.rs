//! Fault injection for the fault suite: a handler in a worker process writes one word of
//! its own control region, as a memory-corruption bug in the handler could. Reached
//! through `aqueduct::__private::corrupt_control`; not public API.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::channel::Region;
use super::wire::Geometry;

/// The worker's control region and geometry, while its worker loop runs.
static ATTACHED: AtomicPtr<(Region, Geometry)> = AtomicPtr::new(std::ptr::null_mut());
/// The lane and number of the request being run.
static LANE: AtomicUsize = AtomicUsize::new(0);
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Worker: makes the region reachable by [`corrupt_control`] for the worker's life.
pub(crate) fn attach(region: &Region, geometry: Geometry) {
    // A mapping of its own, leaked, so that a handler's thread that outlives the worker
    // loop never writes through a dangling reference to the loop's region.
    let Ok(file) = region.try_clone_file() else {
        return;
    };
    if let Ok(copy) = Region::map(file, region.len()) {
        let boxed = Box::into_raw(Box::new((copy, geometry)));
        ATTACHED.store(boxed, Ordering::Release);
    }
}

/// Worker: the request now running is request `seq`, in `lane`.
pub(crate) fn running(lane: usize, seq: u64) {
    LANE.store(lane, Ordering::Relaxed);
    SEQ.store(seq, Ordering::Relaxed);
}

/// The number of the request this worker is running (or ran last): a stray write of a
/// plausible value, such as this plus or minus one, is the dangerous kind.
pub fn running_request() -> u64 {
    SEQ.load(Ordering::Relaxed)
}

/// Writes `value` into the control-region word named `word` of this worker process:
/// `req_seq`, `taken_seq`, `resp_seq`, `worker_waiting`, `state`, `closing`,
/// `parent_waiting`, `expected`, `declining`, or a field
/// of the running request's lane (`tag`, `check`, `taken_tag`, `answer_tag`, `count`,
/// `resp_count`, `begun`, `begun_check`), or of the other lane (the same names prefixed `other.`), or of the
/// running lane's first response slot (`slot.stamp`, `slot.check`, `slot.status`,
/// `slot.len`). Returns `false` outside a worker process or for an unknown word.
pub fn corrupt_control(word: &str, value: u64) -> bool {
    let attached = ATTACHED.load(Ordering::Acquire);
    if attached.is_null() {
        return false;
    }
    // SAFETY: set once from a leaked box, never freed: valid for the process's life.
    let (ctl, geometry) = unsafe { &*attached };
    let running = LANE.load(Ordering::Relaxed);
    let (lane, field) = match word.strip_prefix("other.") {
        Some(field) => ((running + 1) % geometry.lanes, field),
        None => (running, word),
    };
    let header = ctl.header();
    let head = ctl.lane(geometry, lane);
    let slot = ctl.slot(geometry, lane, 0);
    let narrow = value as u32;
    match field {
        "req_seq" => header.req_seq.store(value, Ordering::SeqCst),
        "taken_seq" => header.taken_seq.store(value, Ordering::SeqCst),
        "resp_seq" => header.resp_seq.store(value, Ordering::SeqCst),
        "worker_waiting" => header.worker_waiting.store(narrow, Ordering::SeqCst),
        "state" => header.state.store(narrow, Ordering::SeqCst),
        "closing" => header.closing.store(narrow, Ordering::SeqCst),
        "parent_waiting" => header.parent_waiting.store(narrow, Ordering::SeqCst),
        "expected" => header.expected.store(narrow, Ordering::SeqCst),
        "declining" => header.declining.store(narrow, Ordering::SeqCst),
        "tag" => head.tag.store(value, Ordering::SeqCst),
        "check" => head.check.store(value, Ordering::SeqCst),
        "taken_tag" => head.taken_tag.store(value, Ordering::SeqCst),
        "answer_tag" => head.answer_tag.store(value, Ordering::SeqCst),
        "count" => head.count.store(narrow, Ordering::SeqCst),
        "resp_count" => head.resp_count.store(narrow, Ordering::SeqCst),
        "begun" => head.begun.store(value, Ordering::SeqCst),
        "begun_check" => head.begun_check.store(value, Ordering::SeqCst),
        "slot.stamp" => slot.stamp.store(value, Ordering::SeqCst),
        "slot.check" => slot.check.store(value, Ordering::SeqCst),
        "slot.status" => slot.status.store(narrow, Ordering::SeqCst),
        "slot.len" => slot.len.store(narrow, Ordering::SeqCst),
        _ => return false,
    }
    true
}
