//! Variable-size data in shared memory through flows: payloads pass between stages as
//! handles, contents stay intact, and every block is freed once nothing holds it.
//! Tests here compare arena usage, so they run one at a time (`SERIAL`).
// Each test has its own runtime; the lock deliberately spans a whole test to serialise them.
#![allow(clippy::await_holding_lock)]

use std::sync::Mutex;

use aqueduct::{arena, Error, ShmBytes, ShmStr, ShmVec};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[aqueduct::task]
struct Image {
    id: u64,
    pixels: ShmBytes,
    checksum: u64,
    label: ShmStr,
    features: ShmVec<f32>,
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |sum, &b| {
        sum.wrapping_mul(31).wrapping_add(u64::from(b))
    })
}

#[aqueduct::handler(batch_size = 4)]
fn measure(images: &mut [Image]) -> Result<(), Error> {
    for image in images {
        image.checksum = checksum(&image.pixels.view()?);
    }
    Ok(())
}

#[aqueduct::handler]
fn describe(mut image: Image) -> Result<Image, Error> {
    // Replaces the label and adds features: the old label's block must be freed, the new
    // blocks must survive into the output.
    image.label = ShmStr::new(&format!("image {} sum {}", image.id, image.checksum))?;
    image.features = ShmVec::from_slice(&[image.pixels.len() as f32, 0.5])?;
    // A scratch allocation the output does not keep: freed after the call.
    let _scratch = ShmBytes::copy_from_slice(&[0u8; 4096])?;
    Ok(image)
}

fn image(id: u64, len: usize) -> Image {
    let pixels = ShmBytes::with_len(len, |buf| {
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 7 + id as usize) as u8)
    })
    .unwrap();
    Image {
        id,
        pixels,
        checksum: 0,
        label: ShmStr::new("unlabelled").unwrap(),
        features: ShmVec::default(),
    }
}

#[tokio::test]
async fn ten_megabytes_pass_through_two_stages_intact_and_are_freed() {
    let _serial = serial();
    let flow = aqueduct::flow!(measure -> describe).start().await.unwrap();
    let before = arena::stats();
    let input = image(1, 10 << 20);
    let expected = checksum(&input.pixels.view().unwrap());
    let input_handle = input.pixels.handle();
    let out = flow.process(input).await.unwrap();
    assert_eq!(out.checksum, expected);
    assert_eq!(
        out.pixels.handle(),
        input_handle,
        "the payload travelled as the same handle: not copied"
    );
    assert_eq!(
        &*out.label.view().unwrap(),
        format!("image 1 sum {expected}")
    );
    assert_eq!(&*out.features.view().unwrap(), &[(10 << 20) as f32, 0.5]);
    drop(out);
    assert_eq!(
        arena::stats().used,
        before.used,
        "every block freed once the result is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_payloads_leave_nothing_behind() {
    let _serial = serial();
    let flow = aqueduct::flow!(measure -> describe).start().await.unwrap();
    let before = arena::stats();
    let calls: Vec<_> = (0..200u64)
        .map(|id| {
            tokio::spawn({
                let flow = flow.clone();
                async move {
                    let input = image(id, 1000 + id as usize * 97);
                    let expected = checksum(&input.pixels.view().unwrap());
                    let out = flow.process(input).await.unwrap();
                    assert_eq!(out.checksum, expected);
                }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(arena::stats(), before);
}

#[tokio::test]
async fn a_view_keeps_its_block_alive_after_the_result_is_dropped() {
    let _serial = serial();
    let flow = aqueduct::flow!(measure).start().await.unwrap();
    let before = arena::stats();
    let out = flow.process(image(2, 5000)).await.unwrap();
    let view = out.pixels.view().unwrap();
    let copied_handle = out.pixels;
    drop(out);
    assert_eq!(view.len(), 5000, "still readable through the view");
    drop(view);
    assert!(
        matches!(copied_handle.view(), Err(Error::InvalidHandle { .. })),
        "a copied handle outliving its owner is stale, not dangling"
    );
    assert_eq!(arena::stats().used, before.used);
}

#[tokio::test]
async fn stale_handles_are_refused_at_submission() {
    let _serial = serial();
    let flow = aqueduct::flow!(measure).start().await.unwrap();
    let out = flow.process(image(3, 100)).await.unwrap();
    let stale = Image {
        id: 4,
        pixels: out.pixels,
        checksum: 0,
        label: ShmStr::default(),
        features: ShmVec::default(),
    };
    drop(out);
    assert!(matches!(
        flow.process(stale).await,
        Err(Error::InvalidHandle { .. })
    ));
}

#[tokio::test]
async fn refused_tasks_free_their_memory() {
    let _serial = serial();
    let flow = aqueduct::flow!(measure -> describe).start().await.unwrap();
    flow.stop(true).await;
    let before = arena::stats();
    assert_eq!(
        flow.process(image(5, 100)).await.unwrap_err(),
        Error::NotRunning
    );
    assert_eq!(
        arena::stats().used,
        before.used,
        "nothing of the refused task remains"
    );
    assert_eq!(arena::stats().blocks, before.blocks);
}

#[test]
fn shared_payloads_are_reference_counted() {
    let _serial = serial();
    let before = arena::stats();
    let bytes = ShmBytes::copy_from_slice(b"shared").unwrap();
    let second = bytes.clone_ref().unwrap();
    assert_eq!(
        arena::stats().blocks,
        before.blocks + 1,
        "one block, two references"
    );
    let flow = aqueduct::flow!(measure).start_blocking().unwrap();
    let a = flow
        .process_blocking(Image {
            pixels: bytes,
            ..image(6, 0)
        })
        .unwrap();
    let b = flow
        .process_blocking(Image {
            pixels: second,
            ..image(7, 0)
        })
        .unwrap();
    assert_eq!(a.checksum, b.checksum);
    drop(a);
    assert_eq!(
        &*b.pixels.view().unwrap(),
        b"shared",
        "still alive: the other task holds it"
    );
    drop(b);
    assert_eq!(arena::stats().used, before.used);
}
