use std::sync::atomic::{AtomicU64, Ordering};

use super::results::{handle_offsets, take_lost, take_results, Answer};
use super::wire::{Outcome, Taken};
use super::*;
use crate::exec::BatchResults;
use crate::{ShmBytes, ShmStr};

#[crate::task(crate = "crate")]
#[derive(Debug)]
struct WithHandles {
    id: u64,
    image: ShmBytes,
    labels: [ShmStr; 2],
    score: f64,
}

#[test]
fn handle_offsets_are_found_by_probing() {
    assert_eq!(handle_offsets::<WithHandles>().unwrap(), vec![8, 32, 56]);
    assert!(handle_offsets::<u64>().unwrap().is_empty());
}

/// A stage for exercising the response decoder directly.
#[derive(Debug)]
struct Echo;

impl Stage for Echo {
    type Input = WithHandles;
    type Output = WithHandles;
    type State = ();
    const NAME: &'static str = "echo";
    const CONFIG: StageConfig = StageConfig::DEFAULT;

    fn init() -> Result<(), String> {
        Ok(())
    }

    fn handle(_: &mut (), inputs: Vec<WithHandles>) -> Vec<Result<WithHandles, String>> {
        inputs.into_iter().map(Ok).collect()
    }
}

/// The fixture answers in the second lane, whose scratch window is the second half.
const LANE: usize = 1;
const SCRATCH: usize = 1 << 16;
/// The number of the request the fixture's batch went out as.
const SEQ: u64 = 7;

struct Fixture {
    ctl: Region,
    geometry: Geometry,
    offsets: Vec<usize>,
    scratch: Scratch,
    batch: Vec<WithHandles>,
    /// The parent's number of the last request published to the worker.
    published: AtomicU64,
}

impl Fixture {
    fn new() -> Self {
        let geometry = Geometry {
            batch_cap: 2,
            input_size: size_of::<WithHandles>(),
            output_size: size_of::<WithHandles>(),
            lanes: 2,
        };
        let batch = vec![WithHandles {
            id: 1,
            image: ShmBytes::default(),
            labels: [ShmStr::default(); 2],
            score: 0.5,
        }];
        let fixture = Self {
            ctl: Region::create(geometry.region_len()).unwrap(),
            geometry,
            offsets: handle_offsets::<WithHandles>().unwrap(),
            scratch: Scratch::create(SCRATCH).unwrap(),
            batch,
            published: AtomicU64::new(SEQ),
        };
        // A well-formed answer: the input echoed back.
        fixture.answer(SEQ, bytemuck::bytes_of(&fixture.batch[0]));
        fixture
    }

    /// The worker's answer to request `seq`: one output of `bytes`.
    fn answer(&self, seq: u64, bytes: &[u8]) {
        let outcomes = [Outcome::Output(bytes)];
        wire::write_answer(&self.ctl, &self.geometry, LANE, seq, outcomes.into_iter());
    }

    fn slot(&self) -> &wire::SlotHeader {
        self.ctl.slot(&self.geometry, LANE, 0)
    }

    /// Where the answer to the fixture's request lies, as its dispatch sees it.
    fn answer_to_take(&self) -> Answer<'_> {
        Answer {
            ctl: &self.ctl,
            geometry: self.geometry,
            lane: LANE,
            seq: SEQ,
            published: &self.published,
            output_handles: &self.offsets,
            scratch: &self.scratch,
        }
    }

    fn take(&self) -> Result<BatchResults<Owned<WithHandles>>, String> {
        take_results::<Echo>(&self.answer_to_take(), &self.batch)
    }
}

#[test]
fn a_well_formed_response_is_accepted() {
    let results = Fixture::new().take().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].as_ref().unwrap().id, 1);
}

/// A dispatch on another thread may publish the worker's next request, and the worker
/// answer it, between the moment this answer is found and the moment it is checked. The
/// newer response number is then no violation: once it failed such answers under load
/// (`response number 84 is ahead of the last request's 82`), the count of published
/// requests having been read before the response number.
#[test]
fn an_answer_checked_while_the_next_request_is_published_and_answered_is_accepted() {
    let fixture = Fixture::new();
    let answer = fixture.answer_to_take();
    fixture.published.store(SEQ + 1, Ordering::Release);
    fixture
        .ctl
        .header()
        .resp_seq
        .store(SEQ + 1, Ordering::Release);
    let results = take_results::<Echo>(&answer, &fixture.batch).unwrap();
    assert_eq!(results[0].as_ref().unwrap().id, 1);
}

#[test]
fn corrupted_response_slots_are_rejected() {
    let wrong_count = Fixture::new();
    wrong_count
        .ctl
        .lane(&wrong_count.geometry, LANE)
        .resp_count
        .store(2, Ordering::Relaxed);
    assert!(wrong_count.take().unwrap_err().contains("2 results"));

    let bad_status = Fixture::new();
    bad_status.slot().status.store(0xDEAD, Ordering::Relaxed);
    assert!(bad_status.take().unwrap_err().contains("invalid slot"));

    let short_output = Fixture::new();
    short_output.answer(SEQ, &[0; 8]);
    assert!(short_output.take().unwrap_err().contains("invalid slot"));

    let long_error = Fixture::new();
    wire::write_answer(
        &long_error.ctl,
        &long_error.geometry,
        LANE,
        SEQ,
        [Outcome::Error("boom")].into_iter(),
    );
    long_error.slot().len.store(u32::MAX, Ordering::Relaxed);
    assert!(long_error.take().unwrap_err().contains("invalid slot"));
}

#[test]
fn an_answer_to_another_request_is_never_taken_for_this_one() {
    // The previous request's answer still in the lane, with `resp_seq` pushed ahead by a
    // stray write: the lane says whom it answers.
    let stale = Fixture::new();
    stale.answer(SEQ - 2, bytemuck::bytes_of(&stale.batch[0]));
    stale.ctl.header().resp_seq.store(SEQ, Ordering::Relaxed);
    assert!(stale.take().unwrap_err().contains("answers request 5"));

    // The lane's tag forged too: each slot's stamp still says.
    stale
        .ctl
        .lane(&stale.geometry, LANE)
        .answer_tag
        .store(SEQ, Ordering::Relaxed);
    assert!(stale.take().unwrap_err().contains("stamped for request 5"));

    // A response number ahead of every request published.
    let ahead = Fixture::new();
    ahead
        .ctl
        .header()
        .resp_seq
        .store(SEQ + 1, Ordering::Relaxed);
    assert!(ahead
        .take()
        .unwrap_err()
        .contains("ahead of the last request"));
}

#[test]
fn a_stray_write_into_a_result_is_a_violation_not_a_result() {
    for offset in [0, 8, 40] {
        let fixture = Fixture::new();
        let at = fixture.geometry.response_offset(LANE, 0) + wire::RESP_HEADER + offset;
        fixture.ctl.write(at, &[0x5a; 8]);
        assert!(
            fixture.take().unwrap_err().contains("checksum"),
            "a write at data offset {offset} must be caught"
        );
    }
    // Into an error's text: never a wrong handler error.
    let fixture = Fixture::new();
    wire::write_answer(
        &fixture.ctl,
        &fixture.geometry,
        LANE,
        SEQ,
        [Outcome::Error("model not loaded")].into_iter(),
    );
    let at = fixture.geometry.response_offset(LANE, 0) + wire::RESP_HEADER;
    fixture.ctl.write(at, b"garbage!");
    assert!(fixture.take().unwrap_err().contains("checksum"));
    // A forged stamp or status is caught the same way.
    let fixture = Fixture::new();
    fixture.slot().check.fetch_xor(1, Ordering::Relaxed);
    assert!(fixture.take().unwrap_err().contains("checksum"));
}

#[test]
fn a_request_is_taken_only_if_both_words_say_so() {
    let fixture = Fixture::new();
    let (ctl, geometry) = (&fixture.ctl, &fixture.geometry);
    let seq = 3;
    assert_eq!(wire::taken(ctl, geometry, LANE, seq), Taken::No);
    wire::take(ctl, geometry, LANE, seq);
    assert_eq!(wire::taken(ctl, geometry, LANE, seq), Taken::Yes);
    // One stray write into either word: never "not taken", so never sent twice.
    ctl.header().taken_seq.store(0, Ordering::Relaxed);
    assert_eq!(wire::taken(ctl, geometry, LANE, seq), Taken::Unsure);
    wire::take(ctl, geometry, LANE, seq);
    ctl.lane(geometry, LANE)
        .taken_tag
        .store(0, Ordering::Relaxed);
    assert_eq!(wire::taken(ctl, geometry, LANE, seq), Taken::Unsure);
}

#[test]
fn a_lost_workers_count_of_begun_tasks_counts_only_with_its_checksum() {
    let fixture = Fixture::new();
    let (ctl, geometry) = (&fixture.ctl, &fixture.geometry);
    let head = ctl.lane(geometry, LANE);
    wire::set_begun(ctl, geometry, LANE, SEQ, 1);
    assert_eq!(wire::begun(ctl, geometry, LANE, SEQ, 2), Some(1));
    // Another request's count, or one past the request's tasks, says nothing.
    assert_eq!(wire::begun(ctl, geometry, LANE, SEQ + 1, 2), None);
    wire::set_begun(ctl, geometry, LANE, SEQ, 3);
    assert_eq!(wire::begun(ctl, geometry, LANE, SEQ, 2), None);
    // One stray write into either word: every task counts as begun, none goes again.
    wire::set_begun(ctl, geometry, LANE, SEQ, 2);
    head.begun.store(0, Ordering::Relaxed);
    assert_eq!(wire::begun(ctl, geometry, LANE, SEQ, 2), None);
    wire::set_begun(ctl, geometry, LANE, SEQ, 2);
    head.begun_check.fetch_xor(1, Ordering::Relaxed);
    assert_eq!(wire::begun(ctl, geometry, LANE, SEQ, 2), None);
}

#[test]
fn a_lost_workers_results_count_slot_by_slot_and_its_begun_count_only_if_no_later_slot_is_stamped()
{
    let fixture = Fixture::new();
    let (ctl, geometry) = (&fixture.ctl, &fixture.geometry);
    let batch = [fixture.batch[0], fixture.batch[0]];
    let take = |died| take_lost::<Echo>(&fixture.answer_to_take(), &batch, died);
    let ids = |results: &[Option<Result<Owned<WithHandles>, String>>]| {
        results
            .iter()
            .map(|result| result.as_ref().map(|output| output.as_ref().unwrap().id))
            .collect::<Vec<_>>()
    };
    // The first task answered (the fixture wrote its slot), the second begun.
    wire::set_begun(ctl, geometry, LANE, SEQ, 2);
    let (results, begun) = take(true);
    assert_eq!((ids(&results), begun), (vec![Some(1), None], 2));
    // The first begun only, and answered: the second never began.
    wire::set_begun(ctl, geometry, LANE, SEQ, 1);
    let (results, begun) = take(true);
    assert_eq!((ids(&results), begun), (vec![Some(1)], 1));
    // A slot stamped for the request past the begun count: a stray write, so every
    // task counts as begun; the valid slot still counts as that task's result.
    let second = ctl.slot(geometry, LANE, 1);
    second.stamp.store(SEQ, Ordering::Relaxed);
    let (results, begun) = take(true);
    assert_eq!((ids(&results), begun), (vec![Some(1), None], 2));
    // An invalid slot is no result, whatever comes after it.
    fixture.slot().check.fetch_xor(1, Ordering::Relaxed);
    let (results, begun) = take(true);
    assert_eq!((ids(&results), begun), (vec![None, None], 2));
    // An answer that broke the protocol: its slots count one by one only if it is
    // this request's, whole.
    fixture.slot().check.fetch_xor(1, Ordering::Relaxed);
    ctl.lane(geometry, LANE)
        .resp_count
        .store(2, Ordering::Relaxed);
    let (results, begun) = take(false);
    assert_eq!((ids(&results), begun), (vec![Some(1), None], 2));
    ctl.lane(geometry, LANE)
        .answer_tag
        .store(SEQ - 1, Ordering::Relaxed);
    let (results, begun) = take(false);
    assert_eq!((ids(&results), begun), (vec![None, None], 2));
}

#[test]
fn a_request_that_does_not_match_its_checksum_is_refused() {
    let fixture = Fixture::new();
    let (ctl, geometry) = (&fixture.ctl, &fixture.geometry);
    let tasks = bytemuck::cast_slice(&fixture.batch);
    let mut out = Vec::new();
    wire::write_request(ctl, geometry, 0, 9, tasks, 0);
    assert_eq!(wire::read_request(ctl, geometry, 9, &mut out), Ok(0));
    assert_eq!(out, tasks);
    assert!(
        wire::read_request(ctl, geometry, 10, &mut out).is_err(),
        "not published"
    );
    ctl.write(geometry.request_offset(0, 0) + 8, &[1]);
    assert!(wire::read_request(ctl, geometry, 9, &mut out)
        .unwrap_err()
        .0
        .contains("checksum"));
    wire::write_request(ctl, geometry, 0, 9, tasks, 0);
    ctl.lane(geometry, 0).count.store(3, Ordering::Relaxed);
    assert!(wire::read_request(ctl, geometry, 9, &mut out).is_err());
}

#[test]
fn handles_out_of_range_or_not_lent_are_rejected() {
    let fixture = Fixture::new();
    let mut output = fixture.batch[0];
    let [_, len, generation]: [u64; 3] = bytemuck::cast(output.image);
    assert_eq!((len, generation), (0, 0));

    // A scratch block past the end of the worker's scratch area, and one in the other
    // lane's half, which the worker may be overwriting for its next request.
    for offset in [1 << 20, 128] {
        output.image = bytemuck::cast([crate::shm::arena::SCRATCH_TAG | offset, 64u64, 3u64]);
        fixture.answer(SEQ, bytemuck::bytes_of(&output));
        assert!(fixture
            .take()
            .unwrap_err()
            .contains("outside the worker's scratch area"));
    }

    // An arena handle that was never lent.
    output.image = bytemuck::cast([4096u64, 64u64, 3u64]);
    fixture.answer(SEQ, bytemuck::bytes_of(&output));
    assert!(fixture.take().unwrap_err().contains("names no block"));
}

#[test]
fn a_scratch_block_is_copied_into_the_arena() {
    let fixture = Fixture::new();
    // A block a worker allocated in its lane's half of the scratch area (the fresh area
    // reads as zeros).
    let mut output = fixture.batch[0];
    let offset = (SCRATCH / 2 + 128) as u64;
    let tag = crate::shm::arena::SCRATCH_TAG;
    // Made for an earlier request: its bytes may be another block's by now.
    output.image = bytemuck::cast([tag | offset, 5u64, SEQ - 2]);
    fixture.answer(SEQ, bytemuck::bytes_of(&output));
    let stale = fixture.take().unwrap_err();
    assert!(stale.contains("was made for request 5"), "{stale}");
    // Made for this answer's request.
    output.image = bytemuck::cast([tag | offset, 5u64, SEQ]);
    fixture.answer(SEQ, bytemuck::bytes_of(&output));
    let results = fixture.take().unwrap();
    let image = results[0].as_ref().unwrap().image;
    assert_eq!(image.len(), 5);
    assert!(!Scratch::is_scratch(&image.handle()), "now an arena block");
    assert_eq!(
        &*image.view().unwrap(),
        &[0; 5],
        "the scratch bytes, copied"
    );
}

#[test]
fn an_expected_request_wakes_a_sleeping_worker_unless_the_worker_declines() {
    let fixture = Fixture::new();
    let (ctl, header) = (&fixture.ctl, fixture.ctl.header());
    assert!(!wire::request_expected(ctl), "nothing expected yet");
    // Awake: told, not woken.
    assert!(!wire::expect_request(ctl));
    assert!(
        wire::request_expected(ctl),
        "the expectation is there to take"
    );
    assert!(!wire::request_expected(ctl), "and taken once");
    // Asleep: told and woken, its announcement taken.
    header.worker_waiting.store(1, Ordering::SeqCst);
    assert!(wire::expect_request(ctl), "a sleeping worker is woken");
    assert_eq!(header.worker_waiting.load(Ordering::SeqCst), 0);
    assert!(wire::request_expected(ctl));
    // Declining: neither told nor woken, whatever else its words say.
    wire::decline_expected(ctl, true);
    header.worker_waiting.store(1, Ordering::SeqCst);
    assert!(!wire::expect_request(ctl));
    assert!(!wire::request_expected(ctl));
    assert_eq!(
        header.worker_waiting.load(Ordering::SeqCst),
        1,
        "left asleep"
    );
    header.declining.store(u32::MAX, Ordering::SeqCst);
    assert!(!wire::expect_request(ctl), "any value but 0 declines");
    wire::decline_expected(ctl, false);
    assert!(wire::expect_request(ctl));
}
