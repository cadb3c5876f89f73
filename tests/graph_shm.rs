//! Result handles keep a copy of each input: for tasks holding shared memory that copy
//! must own its own references. Every block stays readable while a handle holds it, and
//! once everything is dropped the arena is back where it started: nothing released
//! twice (which would free a block early and fail a read), nothing leaked.
//!
//! Alone in its test binary, because it measures the process-wide arena.

use aqueduct::graph::{Graph, Processor, Progress, ResultHandle};
use aqueduct::ShmStr;

#[aqueduct::task]
struct Doc {
    id: u64,
    text: ShmStr,
}

#[aqueduct::task]
struct Measured {
    id: u64,
    len: u64,
    text: ShmStr,
}

#[aqueduct::handler(nprocs = 2, batch_size = 3)]
fn shout(doc: Doc) -> Result<Doc, String> {
    if doc.id % 5 == 4 {
        return Err(format!("document {} rejected", doc.id));
    }
    let text = doc.text.view().map_err(|e| e.to_string())?.to_uppercase();
    let text = ShmStr::new(&text).map_err(|e| e.to_string())?;
    Ok(Doc { id: doc.id, text })
}

/// Passes the text block through to its output.
#[aqueduct::handler(nprocs = 2)]
fn measure(doc: Doc) -> Measured {
    Measured {
        id: doc.id,
        len: doc.text.len() as u64,
        text: doc.text,
    }
}

#[aqueduct::handler]
fn keep(_doc: &mut Doc) {}

fn text_of(id: u64) -> String {
    format!("document number {id}")
}

fn docs(ids: std::ops::Range<u64>) -> Vec<Doc> {
    ids.map(|id| Doc {
        id,
        text: ShmStr::new(&text_of(id)).unwrap(),
    })
    .collect()
}

fn usage() -> (usize, usize) {
    let stats = aqueduct::arena::stats();
    (stats.used, stats.blocks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_handles_own_their_shared_memory() {
    let baseline = usage();
    let shouter = Processor::of::<shout>().start().await.unwrap();
    let measurer = Processor::of::<measure>().start().await.unwrap();
    let rejects = Processor::of::<keep>()
        .name("rejects")
        .start()
        .await
        .unwrap();

    let mut graph = Graph::new();
    graph
        .progress(Progress::Silent)
        .connect(&shouter, &measurer, |done: &ResultHandle<Doc, Doc>| {
            done.output_owned().ok()
        })
        // Fan-out of the same output twice more: each copy owns its references.
        .connect(&shouter, &measurer, |done: &ResultHandle<Doc, Doc>| {
            done.output_owned()
                .ok()
                .into_iter()
                .chain(done.output_owned().ok())
        })
        .connect(&shouter, &rejects, |done: &ResultHandle<Doc, Doc>| {
            done.is_failed().then(|| done.input_owned().unwrap())
        })
        .feed(&shouter, docs(0..60));
    let mut results = graph.run().await.unwrap();
    assert!(usage().1 > baseline.1, "the results hold blocks");

    for done in results.handles(&shouter) {
        let id = done.input().id;
        assert_eq!(&*done.input().text.view().unwrap(), text_of(id));
        if let Some(out) = done.output() {
            assert_eq!(&*out.text.view().unwrap(), text_of(id).to_uppercase());
        }
    }
    let measured = results.take(&measurer);
    assert_eq!(measured.len(), 48 * 3);
    for done in &measured {
        let out = done.output().unwrap();
        let upper = text_of(out.id).to_uppercase();
        assert_eq!(&*out.text.view().unwrap(), upper);
        assert_eq!(&*done.input().text.view().unwrap(), upper);
        assert_eq!(out.len, upper.len() as u64);
    }
    let rejected = results.take(&rejects);
    assert_eq!(rejected.len(), 12);
    for done in &rejected {
        let id = done.input().id;
        assert_eq!(id % 5, 4);
        assert_eq!(&*done.output().unwrap().text.view().unwrap(), text_of(id));
    }
    drop((results, measured, rejected));

    // Cancelled inputs: waiting in the processor, in the flow's queue, or running.
    let keeper = Processor::of::<keep>()
        .max_in_flight(4)
        .start()
        .await
        .unwrap();
    keeper.feed_all(docs(0..40)).unwrap();
    keeper.cancel_all();
    for done in keeper.take_ready() {
        assert_eq!(
            &*done.input().text.view().unwrap(),
            text_of(done.input().id)
        );
    }
    // Dropped with inputs pending: they are cancelled and released.
    let abandoned = Processor::of::<shout>()
        .max_in_flight(2)
        .start()
        .await
        .unwrap();
    abandoned.feed_all(docs(0..30)).unwrap();
    let abandoned_flow = abandoned.flow().clone();
    drop(abandoned);

    // Stopping gracefully drains every flow, so results of cancelled inputs that were
    // mid-handler have been delivered (and released) by then.
    shouter.stop(true).await;
    measurer.stop(true).await;
    rejects.stop(true).await;
    keeper.stop(true).await;
    abandoned_flow.stop(true).await;
    drop((shouter, measurer, rejects, keeper, graph));
    assert_eq!(usage(), baseline, "every block released exactly once");
}
