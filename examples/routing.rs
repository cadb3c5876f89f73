//! Routing: a document pipeline with a conditional stage and two priorities.
//!
//! Run: `cargo run --release --example routing`
//!
//! `detect` finds each document's language. `translate` runs only for documents that
//! are not in English, because of its condition (`translate if needs_translation`).
//! `index` runs for all of them. A bulk backlog of documents is submitted at once at
//! the low priority. While it drains, interactive documents arrive one at a time at the
//! high priority, and each overtakes the queued backlog at every stage.
//!
//! The last line prints
//! `high_p50_ms=X low_p50_ms=Y skipped=N translated=M`:
//! - the median latencies of the two classes;
//! - how many documents skipped `translate`, and how many it translated.
//!
//! The program exits 1 if any document failed or the counts do not add up.

use std::time::Duration;

use aqueduct::Error;
use tokio::time::Instant;

const ENGLISH: u32 = 0;
const BACKLOG: u64 = 600;
const INTERACTIVE: u64 = 40;
const LOW: usize = 0;
const HIGH: usize = 1;

#[aqueduct::task]
struct Doc {
    id: u64,
    lang: u32,
    translated: u32,
    terms: u64,
}

fn doc(id: u64) -> Doc {
    Doc {
        id,
        lang: 0,
        translated: 0,
        terms: 0,
    }
}

/// Works for `micros` on the calling worker, standing in for a model.
fn work(micros: u64) {
    let until = std::time::Instant::now() + Duration::from_micros(micros);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// One document in three is not in English.
#[aqueduct::handler(batch_size = 16, nprocs = 1)]
fn detect(docs: &mut [Doc]) {
    work(50 * docs.len() as u64);
    for doc in docs {
        doc.lang = (doc.id % 3 == 0) as u32;
    }
}

/// The expensive stage: 1 ms a document.
#[aqueduct::handler(batch_size = 4, nprocs = 1)]
fn translate(docs: &mut [Doc]) {
    work(1000 * docs.len() as u64);
    for doc in docs {
        doc.lang = ENGLISH;
        doc.translated = 1;
    }
}

#[aqueduct::handler(batch_size = 16, nprocs = 1)]
fn index(docs: &mut [Doc]) {
    work(100 * docs.len() as u64);
    for doc in docs {
        doc.terms = doc.id * 7;
    }
}

fn needs_translation(doc: &Doc) -> bool {
    doc.lang != ENGLISH
}

fn p50(mut millis: Vec<f64>) -> f64 {
    millis.sort_by(f64::total_cmp);
    millis[millis.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let flow = aqueduct::flow!(detect -> translate if needs_translation -> index)
        .priorities(2)
        .queue_size(1024)
        .timeout(Duration::from_secs(60))
        .start()
        .await?;
    let submit = |id: u64, priority: usize| {
        let flow = flow.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let out = flow.submit(doc(id)).priority(priority).await?;
            let ok = out.terms == id * 7 && out.translated == (id % 3 == 0) as u32;
            Ok::<_, Error>((ok, started.elapsed().as_secs_f64() * 1e3))
        })
    };
    let backlog: Vec<_> = (0..BACKLOG).map(|id| submit(id, LOW)).collect();
    let mut interactive = Vec::new();
    for id in BACKLOG..BACKLOG + INTERACTIVE {
        tokio::time::sleep(Duration::from_millis(5)).await;
        interactive.push(submit(id, HIGH));
    }
    let mut correct = true;
    let mut latencies = [Vec::new(), Vec::new()];
    for (class, calls) in [(LOW, backlog), (HIGH, interactive)] {
        for call in calls {
            let (ok, millis) = call.await.expect("document task panicked")?;
            correct &= ok;
            latencies[class].push(millis);
        }
    }
    let stats = flow.stats();
    flow.stop(true).await;
    let (skipped, translated) = (stats[1].skipped, stats[1].tasks);
    let total = BACKLOG + INTERACTIVE;
    println!(
        "high_p50_ms={:.1} low_p50_ms={:.1} skipped={skipped} translated={translated}",
        p50(latencies[HIGH].clone()),
        p50(latencies[LOW].clone())
    );
    if !correct || skipped + translated != total || translated != total.div_ceil(3) {
        std::process::exit(1);
    }
    Ok(())
}
