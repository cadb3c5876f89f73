//! A full arena is a clear, typed error, never a crash, and frees make room again. This
//! binary sizes its own arena (before any allocation), so it is a separate test target.

use aqueduct::{arena, Error, ShmBytes};

#[aqueduct::task]
struct Blob {
    bytes: ShmBytes,
}

#[aqueduct::handler]
fn grow(blob: Blob) -> Result<Blob, Error> {
    Ok(Blob {
        bytes: ShmBytes::with_len(blob.bytes.len() * 4, |b| b.fill(1))?,
    })
}

#[tokio::test]
async fn allocation_beyond_capacity_is_reported_and_recoverable() {
    arena::configure(1 << 20).unwrap();
    // Blocks are powers of two: 400 KiB takes half the arena, 600 KiB would need all of it.
    let first = ShmBytes::with_len(400 << 10, |b| b.fill(0)).unwrap();
    assert!(
        matches!(arena::configure(1 << 30), Err(Error::Config(_))),
        "size is fixed once in use"
    );
    match ShmBytes::with_len(600 << 10, |_| {}) {
        Err(Error::ArenaFull {
            requested,
            capacity,
            ..
        }) => assert_eq!((requested, capacity), (600 << 10, 1 << 20)),
        other => panic!("expected ArenaFull, got {other:?}"),
    }
    // A length whose bytes overflow is refused the same way, with the arena's figures.
    match aqueduct::ShmVec::<u64>::with_len(usize::MAX / 4, |_| {}) {
        Err(Error::ArenaFull {
            requested,
            capacity,
            ..
        }) => assert_eq!((requested, capacity), (usize::MAX, 1 << 20)),
        other => panic!("expected ArenaFull, got {:?}", other.map(|v| v.len())),
    }

    // Inside a handler the same error fails that task only.
    let flow = aqueduct::flow!(grow).start().await.unwrap();
    let error = flow
        .process(Blob {
            bytes: ShmBytes::copy_from_slice(&[1; 100 << 10]).unwrap(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Handler { stage: "grow", message } if message.contains("arena full")),
        "{error}"
    );

    // A task that will not be submitted is freed through `Owned`; then there is room.
    drop(aqueduct::Owned::new(Blob { bytes: first }));
    let out = flow
        .process(Blob {
            bytes: ShmBytes::copy_from_slice(&[1; 100 << 10]).unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(out.bytes.len(), 400 << 10);
    drop(out);
    assert_eq!(arena::stats().used, 0);
}
