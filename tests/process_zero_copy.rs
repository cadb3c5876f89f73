//! A task carrying a 10 MB `ShmBytes` crosses two worker-process stages with its payload
//! read in place (checksummed in both workers), then a third stage replaces the payload
//! with a block it creates inside its worker; afterwards the arena is back to its
//! starting usage.

use aqueduct::ShmBytes;
use aqueduct_suite::call_each;

#[aqueduct::task]
#[derive(Debug)]
struct Image {
    id: u64,
    checksum: u64,
    /// Process ids of the workers that saw the task, to prove they were other processes.
    seen_by: [u64; 3],
    data: ShmBytes,
}

/// The tests compare arena usage, which is process-wide: they run one at a time.
static ARENA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |acc, (i, &b)| {
        acc.wrapping_mul(31).wrapping_add(b as u64 ^ i as u64)
    })
}

#[aqueduct::handler]
fn measure(task: &mut Image) -> Result<(), aqueduct::Error> {
    task.checksum = sum(&task.data.view()?);
    task.seen_by[0] = std::process::id() as u64;
    Ok(())
}

#[aqueduct::handler]
fn verify(task: &mut Image) -> Result<(), String> {
    let seen = sum(&task.data.view().map_err(|e| e.to_string())?);
    if seen != task.checksum {
        return Err(format!("checksum changed: {seen} != {}", task.checksum));
    }
    task.seen_by[1] = std::process::id() as u64;
    Ok(())
}

/// Replaces the payload with a new block made in the worker: its first 1000 bytes.
#[aqueduct::handler]
fn crop(task: &mut Image) -> Result<(), aqueduct::Error> {
    let head = task.data.view()?[..1000].to_vec();
    task.data = ShmBytes::copy_from_slice(&head)?;
    task.checksum = sum(&head);
    task.seen_by[2] = std::process::id() as u64;
    Ok(())
}

#[tokio::test]
async fn ten_megabytes_cross_process_stages_intact_and_are_released() {
    let _serial = ARENA.lock().await;
    let payload: Vec<u8> = (0..10 << 20)
        .map(|i: u32| (i * 7 + i / 4096) as u8)
        .collect();
    let expected = sum(&payload);

    let flow = aqueduct::flow!(measure -> verify).start().await.unwrap();
    let before = aqueduct::arena::stats().used;
    let data = ShmBytes::copy_from_slice(&payload).unwrap();
    let handle = data.handle();
    let out = flow
        .process(Image {
            id: 1,
            checksum: 0,
            seen_by: [0; 3],
            data,
        })
        .await
        .unwrap();
    assert_eq!(
        out.checksum, expected,
        "checksum computed in the first worker"
    );
    assert_eq!(
        out.data.handle(),
        handle,
        "the payload was handed over, not copied"
    );
    assert_eq!(&*out.data.view().unwrap(), &payload[..]);
    let me = std::process::id() as u64;
    assert!(
        out.seen_by[0] != 0 && out.seen_by[0] != me,
        "ran in a worker process"
    );
    assert!(
        out.seen_by[1] != 0 && out.seen_by[1] != me,
        "ran in a worker process"
    );
    assert_ne!(out.seen_by[0], out.seen_by[1], "two stages, two processes");
    drop(out);
    flow.stop(true).await;
    assert_eq!(
        aqueduct::arena::stats().used,
        before,
        "arena back to its starting usage"
    );
}

#[tokio::test]
async fn a_block_created_in_a_worker_reaches_the_caller_and_the_input_is_freed() {
    let _serial = ARENA.lock().await;
    let payload: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let flow = aqueduct::flow!(measure -> crop).start().await.unwrap();
    let before = aqueduct::arena::stats().used;
    let out = flow
        .process(Image {
            id: 2,
            checksum: 0,
            seen_by: [0; 3],
            data: ShmBytes::copy_from_slice(&payload).unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(&*out.data.view().unwrap(), &payload[..1000]);
    assert_eq!(out.checksum, sum(&payload[..1000]));
    assert!(out.seen_by[2] != 0 && out.seen_by[2] != std::process::id() as u64);
    assert!(
        aqueduct::arena::stats().used < before + (3 << 20),
        "the 3 MB input was released once replaced"
    );
    drop(out);
    flow.stop(true).await;
    assert_eq!(aqueduct::arena::stats().used, before);
}

/// Makes a block of `MADE` bytes inside its worker, each byte from the task's id.
#[aqueduct::handler]
fn make_large(task: &mut Image) -> Result<(), aqueduct::Error> {
    let id = task.id;
    task.data = ShmBytes::with_len(MADE, |bytes| {
        bytes
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = made_byte(id, i))
    })?;
    task.seen_by[0] = std::process::id() as u64;
    Ok(())
}

/// Past the size whose copy into the arena is made off the runtime's thread.
const MADE: usize = 3 << 20;

/// Byte `i` of the block `make_large` makes for task `id`.
fn made_byte(id: u64, i: usize) -> u8 {
    (id as usize * 13 + i / 4096) as u8
}

/// A task for `make_large`, with no block yet.
fn blank(id: u64) -> Image {
    Image {
        id,
        checksum: 0,
        seen_by: [0; 3],
        data: ShmBytes::default(),
    }
}

/// Checks that `out` carries the whole block `make_large` makes for task `id`.
fn check_made(id: u64, out: &Image) {
    let view = out.data.view().unwrap();
    assert_eq!(view.len(), MADE);
    let wrong = view
        .iter()
        .enumerate()
        .position(|(i, &b)| b != made_byte(id, i));
    assert_eq!(wrong, None, "task {id}: first wrong byte");
}

/// Runs eight `make_large` tasks at once and checks every block, then that the arena
/// is back where it was.
async fn large_blocks_made_in_workers_arrive_whole() {
    let flow = aqueduct::flow!(make_large).start().await.unwrap();
    let before = aqueduct::arena::stats().used;
    for (id, out) in call_each(&flow, 1..=8, blank).await {
        check_made(id, &out.unwrap());
    }
    flow.stop(true).await;
    assert_eq!(aqueduct::arena::stats().used, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blocks_made_in_workers_arrive_whole_on_a_multi_thread_runtime() {
    let _serial = ARENA.lock().await;
    large_blocks_made_in_workers_arrive_whole().await;
}

#[tokio::test]
async fn large_blocks_made_in_workers_arrive_whole_on_a_current_thread_runtime() {
    let _serial = ARENA.lock().await;
    large_blocks_made_in_workers_arrive_whole().await;
}

#[test]
fn large_blocks_made_in_workers_arrive_whole_through_the_blocking_api() {
    let _serial = ARENA.blocking_lock();
    let flow = aqueduct::flow!(make_large).start_blocking().unwrap();
    let before = aqueduct::arena::stats().used;
    let out = flow.process_blocking(blank(5)).unwrap();
    check_made(5, &out);
    drop(out);
    flow.stop_blocking(true).unwrap();
    assert_eq!(aqueduct::arena::stats().used, before);
}
