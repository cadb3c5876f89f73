//! Conditional stages: a stage with a condition runs only the tasks it accepts, judged
//! on the task as it arrives there; the others skip it, and a task no remaining stage
//! accepts goes straight back to the caller.

use std::sync::Mutex;
use std::time::Duration;

use aqueduct::graph::{Processor, ProcessorBuilder};
use aqueduct::FlowBuilder;
use aqueduct_suite::{until, Gate};

const LIMIT: Duration = Duration::from_secs(10);
const ENGLISH: u32 = 1;
const FRENCH: u32 = 2;

#[aqueduct::task]
#[derive(PartialEq)]
struct Doc {
    id: u64,
    lang: u32,
    translated: u32,
    words: u32,
    _pad: u32,
}

fn doc(id: u64) -> Doc {
    Doc {
        id,
        lang: 0,
        translated: 0,
        words: 0,
        _pad: 0,
    }
}

static TRANSLATED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Odd ids are French.
#[aqueduct::handler(isolation = "thread")]
fn detect(doc: &mut Doc) {
    doc.lang = if doc.id % 2 == 1 { FRENCH } else { ENGLISH };
}

#[aqueduct::handler(isolation = "thread")]
fn translate(doc: &mut Doc) {
    TRANSLATED.lock().unwrap().push(doc.id);
    doc.translated = 1;
}

#[aqueduct::handler(isolation = "thread")]
fn count(doc: &mut Doc) {
    doc.words = 10;
}

fn needs_translation(doc: &Doc) -> bool {
    doc.lang != ENGLISH
}

#[tokio::test]
async fn a_task_the_condition_rejects_never_reaches_that_stage() {
    let flow = aqueduct::flow!(detect -> translate if needs_translation -> count)
        .start()
        .await
        .unwrap();
    for id in 0..6 {
        let out = flow.process(doc(id)).await.unwrap();
        assert_eq!(out.translated, (id % 2) as u32, "doc {id}");
        assert_eq!(out.words, 10, "the stage after a skipped one still runs");
    }
    let mut translated = TRANSLATED.lock().unwrap().clone();
    translated.sort_unstable();
    assert_eq!(translated, [1, 3, 5]);
    let stats = flow.stats();
    assert_eq!((stats[1].skipped, stats[1].tasks), (3, 3));
    assert_eq!(stats[0].skipped + stats[2].skipped, 0);
}

static HELD: Gate = Gate::new();
static HELD_RAN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Doc 0 waits at the gate; records every doc it runs.
#[aqueduct::handler(isolation = "thread")]
fn held(doc: &mut Doc) {
    if doc.id == 0 {
        HELD.wait();
    }
    HELD_RAN.lock().unwrap().push(doc.id);
    doc.words += 1;
}

#[aqueduct::handler(isolation = "thread")]
fn also_held(doc: &mut Doc) {
    doc.words += 100;
}

fn only_doc_zero(doc: &Doc) -> bool {
    doc.id == 0
}

#[tokio::test]
async fn a_task_no_stage_accepts_returns_at_once_unchanged() {
    let flow = aqueduct::flow!(held if only_doc_zero -> also_held if only_doc_zero)
        .start()
        .await
        .unwrap();
    let blocker = tokio::spawn({
        let flow = flow.clone();
        async move { flow.process(doc(0)).await.map(|out| out.words) }
    });
    until(LIMIT, || HELD.waiting() == 1).await;
    // With the first stage's worker held, doc 7 comes back: it never queued there.
    let skipped = flow.process_timeout(doc(7), LIMIT).await.unwrap();
    assert_eq!(*skipped, doc(7), "returned as it was sent");
    HELD.open();
    assert_eq!(blocker.await.unwrap(), Ok(101));
    assert_eq!(*HELD_RAN.lock().unwrap(), [0]);
    let stats = flow.stats();
    assert_eq!((stats[0].skipped, stats[1].skipped), (1, 1));
}

#[aqueduct::handler]
fn detect_in_a_process(doc: &mut Doc) {
    doc.lang = if doc.id % 2 == 1 { FRENCH } else { ENGLISH };
}

#[aqueduct::handler]
fn translate_in_a_process(doc: &mut Doc) {
    doc.translated = 1;
}

#[tokio::test]
async fn conditions_work_with_worker_processes_and_graph_processors() {
    let builder = FlowBuilder::first::<detect_in_a_process>()
        .then_if::<translate_in_a_process>(needs_translation);
    let processor: Processor<Doc, Doc> = ProcessorBuilder::new(builder).start().await.unwrap();
    let results = processor.run((0..4).map(doc)).await.unwrap();
    let translated: Vec<u32> = results
        .iter()
        .map(|result| result.output().unwrap().translated)
        .collect();
    assert_eq!(translated, [0, 1, 0, 1]);
    assert_eq!(processor.flow().stats()[1].skipped, 2);
}

static SKIPPED_FIRST_GATE: Gate = Gate::new();

/// Doc 0 waits at the gate in the second stage.
#[aqueduct::handler(isolation = "thread")]
fn second_of_two(doc: &mut Doc) {
    if doc.id == 0 {
        SKIPPED_FIRST_GATE.wait();
    }
    doc.words = 20;
}

fn odd(doc: &Doc) -> bool {
    doc.id % 2 == 1
}

/// A flow whose first stage has a condition stops gracefully like any other: the tasks
/// already accepted, skipped or not, finish, and then the stop returns (the flow's way
/// around the first stage no longer keeps the next stage's queue open).
#[tokio::test]
async fn a_flow_with_a_condition_on_its_first_stage_stops_gracefully() {
    let flow = aqueduct::flow!(detect if odd -> second_of_two)
        .start()
        .await
        .unwrap();
    for id in 1..5 {
        assert_eq!(
            flow.process_timeout(doc(id), LIMIT).await.unwrap().words,
            20
        );
    }
    // Doc 0 skips the first stage and is held in the second when the stop begins.
    let skipped = tokio::spawn({
        let flow = flow.clone();
        async move {
            flow.process_timeout(doc(0), LIMIT)
                .await
                .map(|out| out.words)
        }
    });
    until(LIMIT, || SKIPPED_FIRST_GATE.waiting() == 1).await;
    let stopping = tokio::spawn({
        let flow = flow.clone();
        async move { flow.stop(true).await }
    });
    SKIPPED_FIRST_GATE.open();
    assert_eq!(
        skipped.await.unwrap(),
        Ok(20),
        "accepted before the stop: finished"
    );
    tokio::time::timeout(LIMIT, stopping)
        .await
        .expect("the stop returned")
        .unwrap();
    assert_eq!(
        flow.process(doc(9)).await.unwrap_err(),
        aqueduct::Error::NotRunning
    );
}
