//! An offline batch job on a processor graph (the second seed's use case): 4000
//! generated catalogue records are validated, then fan out to a price model and a
//! shipping model, whose results fan back in to a sequential ledger.
//!
//! Run: `cargo run --release --example batch_job`
//!
//! ```text
//!            +-> appraise --+      (appraise retries its own failures once: a cycle)
//! validate --+              +-> ledger
//!            +-> ship ------+
//! ```
//!
//! Some inputs fail on purpose: corrupt records (bad checksum) in `validate`, a flaky
//! first attempt in `appraise` (retried through a cycle edge, and then succeeding), and
//! parcels too heavy for `ship`. Failed results reach the converters like any other,
//! which drop or retry them. While it runs, a live progress display is drawn on stderr
//! when stderr is a terminal; a summary line follows on stderr in any case. The last
//! lines (stdout) are `name: inputs=N ok=N failed=N cancelled=N` per processor.

use aqueduct::graph::{Graph, Processor, ResultHandle};
use aqueduct::Error;
use aqueduct_suite::fib;

const RECORDS: u64 = 4000;

/// A record as it comes from the source system.
#[aqueduct::task]
struct Raw {
    id: u64,
    price_cents: u64,
    weight_g: u64,
    checksum: u64,
}

/// A validated catalogue item; `attempt` counts retries of the price model.
#[aqueduct::task]
struct Item {
    id: u64,
    price_cents: u64,
    weight_g: u64,
    attempt: u64,
}

/// One ledger entry: what a model computed for an item, and the ledger's running total.
#[aqueduct::task]
struct Entry {
    id: u64,
    kind: u64,
    cents: u64,
    running_total: u64,
}

const APPRAISAL: u64 = 1;
const SHIPPING: u64 = 2;

fn checksum(id: u64, price_cents: u64, weight_g: u64) -> u64 {
    (id ^ price_cents.rotate_left(17) ^ weight_g.rotate_left(31))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// SplitMix64: deterministic pseudo-random record fields.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generated data set; every 50th record is corrupted in transit.
fn records() -> impl Iterator<Item = Raw> {
    (0..RECORDS).map(|id| {
        let price_cents = 100 + mix(id) % 50_000;
        let weight_g = 50 + mix(id + RECORDS) % 45_000;
        let mut sum = checksum(id, price_cents, weight_g);
        if id % 50 == 49 {
            sum ^= 1;
        }
        Raw {
            id,
            price_cents,
            weight_g,
            checksum: sum,
        }
    })
}

#[aqueduct::handler(nprocs = 2, batch_size = 32)]
fn validate(raw: Raw) -> Result<Item, String> {
    if checksum(raw.id, raw.price_cents, raw.weight_g) != raw.checksum {
        return Err(format!("record {}: checksum mismatch", raw.id));
    }
    Ok(Item {
        id: raw.id,
        price_cents: raw.price_cents,
        weight_g: raw.weight_g,
        attempt: 0,
    })
}

/// The price model: CPU-heavy, and its first attempt on some items fails.
#[aqueduct::handler(nprocs = 2)]
fn appraise(item: Item) -> Result<Entry, String> {
    if item.id % 97 == 0 && item.attempt == 0 {
        return Err(format!("item {}: model busy, try again", item.id));
    }
    let noise = fib(20 + item.id % 4) % 100;
    Ok(Entry {
        id: item.id,
        kind: APPRAISAL,
        cents: item.price_cents * 95 / 100 + noise,
        running_total: 0,
    })
}

/// The shipping model: refuses parcels over 40 kg.
#[aqueduct::handler]
fn ship(item: Item) -> Result<Entry, String> {
    if item.weight_g > 40_000 {
        return Err(format!(
            "item {}: {} g is too heavy to ship",
            item.id, item.weight_g
        ));
    }
    Ok(Entry {
        id: item.id,
        kind: SHIPPING,
        cents: 299 + item.weight_g / 10 + fib(18) % 7,
        running_total: 0,
    })
}

fn empty_ledger() -> u64 {
    0
}

/// Keeps a running total; run by a sequential processor, so entries are booked one at a
/// time, in the order they arrive.
#[aqueduct::handler(init = empty_ledger)]
fn ledger(total: &mut u64, entry: &mut Entry) {
    *total += entry.cents;
    entry.running_total = *total;
}

/// The converter of the edges that pass results on as they are: failures are dropped
/// here (they stay counted in their processor's summary).
fn pass_on<In: aqueduct::Task, Out: aqueduct::Task>(done: &ResultHandle<In, Out>) -> Option<Out> {
    done.output_owned().ok()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let validator = Processor::of::<validate>().start().await?;
    let appraiser = Processor::of::<appraise>().start().await?;
    let shipper = Processor::of::<ship>().start().await?;
    let books = Processor::of::<ledger>().sequential().start().await?;

    let mut graph = Graph::new();
    graph
        .connect(&validator, &appraiser, pass_on)
        .connect(&validator, &shipper, pass_on)
        .connect(
            &appraiser,
            &appraiser,
            |done: &ResultHandle<Item, Entry>| {
                if !done.is_failed() || done.input().attempt >= 2 {
                    return None;
                }
                let item = done.input_owned().ok()?;
                Some(Item {
                    attempt: item.attempt + 1,
                    ..item
                })
            },
        )
        .connect(&appraiser, &books, pass_on)
        .connect(&shipper, &books, pass_on)
        .feed(&validator, records());
    let mut results = graph.run().await?;

    // The ledger booked every entry exactly once: its final running total is the sum.
    let entries = results.take(&books);
    let booked: u64 = entries
        .iter()
        .filter_map(|done| done.output())
        .map(|e| e.cents)
        .sum();
    let final_total = entries
        .iter()
        .filter_map(|done| done.output())
        .map(|e| e.running_total)
        .max()
        .unwrap_or(0);
    let appraisals = entries
        .iter()
        .filter_map(|done| done.output())
        .filter(|e| e.kind == APPRAISAL)
        .count();
    let valid = results.summary(&validator).map_or(0, |s| s.ok) as usize;
    if final_total != booked || appraisals != valid {
        eprintln!("inconsistent ledger: total {final_total} vs {booked}, {appraisals} appraisals for {valid} items");
        std::process::exit(1);
    }
    println!(
        "records={RECORDS} valid={valid} ledger_entries={} ledger_total_cents={final_total} elapsed_ms={}",
        entries.len(),
        results.elapsed().as_millis()
    );
    for summary in results.summaries() {
        println!("{summary}");
    }
    validator.stop(true).await;
    appraiser.stop(true).await;
    shipper.stop(true).await;
    books.stop(true).await;
    Ok(())
}
