//! The first seed's batching example: a model emulator that spends 10 ms on an image
//! alone but only 0.7 x 10 ms per image in a batch (as a GPU would), served with and
//! without batching. Then the seed's second case: a batch larger than the load, flushed
//! by `batch_timeout_ms` instead of waiting to fill.
//!
//! Run: `cargo run --release --example cat_detector`
//!
//! The last line prints both throughputs, their ratio (the ideal is 1 / 0.7 = 1.43),
//! the mean batch size the batched stage achieved, and the timed batch's wall time.

use std::time::{Duration, Instant};

use aqueduct::{Error, Flow};

const IMAGE_PROCESS_TIME: Duration = Duration::from_millis(10);
const BATCH_REDUCTION_FACTOR: f64 = 0.7;
const TASKS_BATCH_SIZE: usize = 20;
const IMAGES: usize = 400;

/// An image (three pixels, as in the seed) and the detector's verdict.
#[aqueduct::task]
struct CatImage {
    pixels: [f32; 3],
    has_cat: u32,
}

/// The GPU model emulator: always finds a cat, faster per image in a batch.
fn predict(images: &mut [CatImage]) {
    let cost = if images.len() == 1 {
        IMAGE_PROCESS_TIME
    } else {
        IMAGE_PROCESS_TIME.mul_f64(images.len() as f64 * BATCH_REDUCTION_FACTOR)
    };
    std::thread::sleep(cost);
    images.iter_mut().for_each(|image| image.has_cat = 1);
}

#[aqueduct::handler]
fn detect_one_by_one(images: &mut [CatImage]) {
    predict(images);
}

#[aqueduct::handler(batch_size = 20)]
fn detect_batched(images: &mut [CatImage]) {
    predict(images);
}

#[aqueduct::handler(batch_size = 40, batch_timeout_ms = 10)]
fn detect_with_timeout(images: &mut [CatImage]) {
    predict(images);
}

/// Sends `count` images at once and returns tasks per second.
async fn throughput(flow: &Flow<CatImage, CatImage>, count: usize) -> Result<f64, Error> {
    let started = Instant::now();
    let calls: Vec<_> = (0..count)
        .map(|i| {
            let flow = flow.clone();
            tokio::spawn(async move {
                flow.process(CatImage {
                    pixels: [i as f32, 2.0, 3.0],
                    has_cat: 0,
                })
                .await
            })
        })
        .collect();
    for call in calls {
        let image = call.await.expect("caller panicked")?;
        assert_eq!(image.has_cat, 1, "every image was handled");
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let one_by_one = aqueduct::flow!(detect_one_by_one)
        .timeout(Duration::from_secs(60))
        .start()
        .await?;
    let unbatched = throughput(&one_by_one, IMAGES).await?;
    println!("without batching: {unbatched:.1} images/s");

    let batched_flow = aqueduct::flow!(detect_batched)
        .timeout(Duration::from_secs(60))
        .start()
        .await?;
    let batched = throughput(&batched_flow, IMAGES).await?;
    let mean_batch = batched_flow.stats()[0].mean_batch_size();
    println!(
        "with batch_size = {TASKS_BATCH_SIZE}: {batched:.1} images/s (mean batch {mean_batch:.1})"
    );

    // The seed's second case: batch_size 40 but only 20 images; the 10 ms batch timeout
    // flushes them as one batch instead of waiting for 40.
    let timed_flow = aqueduct::flow!(detect_with_timeout).start().await?;
    let started = Instant::now();
    throughput(&timed_flow, TASKS_BATCH_SIZE).await?;
    let timed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let timed_batches = timed_flow.stats()[0].batches;

    for flow in [&one_by_one, &batched_flow, &timed_flow] {
        flow.stop(true).await;
    }
    println!(
        "unbatched_tasks_per_s={unbatched:.1} batched_tasks_per_s={batched:.1} speedup={:.2} mean_batch_size={mean_batch:.1} timed_batch_ms={timed_ms:.0} timed_batches={timed_batches}",
        batched / unbatched
    );
    Ok(())
}
