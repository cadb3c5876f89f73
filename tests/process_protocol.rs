//! What a worker process sends back is validated, never trusted: an output holding a
//! handle outside the arena, or a handle to a live block that was not lent to the
//! worker, fails the batch with `Error::WorkerProtocol`; the worker is killed and
//! replaced, and the flow keeps serving.

use aqueduct::{Error, ShmBytes};

#[aqueduct::task]
#[derive(Debug)]
struct Forge {
    /// 0: behave; 1: return an out-of-range handle; 2: return the handle described by
    /// `offset`, `len` and `generation` (a block the worker was never given).
    mode: u64,
    offset: u64,
    len: u64,
    generation: u64,
    data: ShmBytes,
}

fn forged(offset: u64, len: u64, generation: u64) -> ShmBytes {
    // SAFETY: `ShmBytes` is a `repr(transparent)` plain-data handle of three `u64`s
    // (offset, length, generation), and every bit pattern is a valid value: the runtime
    // validates handles wherever they are used. This forges one, as a buggy worker could.
    unsafe { std::mem::transmute::<[u64; 3], ShmBytes>([offset, len, generation]) }
}

/// Without `crash_retry`: each violating task is sent once, so each restarts one worker.
#[aqueduct::handler(crash_retry = false)]
fn forge(task: &mut Forge) {
    match task.mode {
        1 => task.data = forged(1 << 45, 64, 7),
        2 => task.data = forged(task.offset, task.len, task.generation),
        _ => {}
    }
}

fn task(mode: u64) -> Forge {
    Forge {
        mode,
        offset: 0,
        len: 0,
        generation: 0,
        data: ShmBytes::default(),
    }
}

#[tokio::test]
async fn forged_handles_from_a_worker_are_rejected_and_the_worker_replaced() {
    let flow = aqueduct::flow!(forge).start().await.unwrap();

    match flow.process(task(1)).await {
        Err(Error::WorkerProtocol {
            stage: "forge",
            reason,
            ..
        }) => {
            assert!(reason.contains("names no block"), "{reason}")
        }
        other => panic!("out-of-range handle must be rejected, got {other:?}"),
    }
    assert_eq!(
        flow.process(task(0)).await.unwrap().mode,
        0,
        "flow still serves"
    );

    // A live block of this process that the worker was never lent.
    let secret = ShmBytes::copy_from_slice(b"not yours").unwrap();
    let [offset, len, generation]: [u64; 3] =
        // SAFETY: as in `forged`, the other way round: a handle is three `u64`s.
        unsafe { std::mem::transmute::<ShmBytes, [u64; 3]>(secret) };
    let mut steal = task(2);
    (steal.offset, steal.len, steal.generation) = (offset, len, generation);
    let used = aqueduct::arena::stats().used;
    match flow.process(steal).await {
        Err(Error::WorkerProtocol { stage: "forge", .. }) => {}
        other => panic!("a handle that was not lent must be rejected, got {other:?}"),
    }
    assert_eq!(
        &*secret.view().unwrap(),
        b"not yours",
        "the block was not touched"
    );
    assert_eq!(
        aqueduct::arena::stats().used,
        used,
        "no reference was taken"
    );

    // A handle passed through from the input is fine, and stays zero-copy.
    let lent = ShmBytes::copy_from_slice(b"lent").unwrap();
    let mut pass = task(0);
    pass.data = lent;
    let out = flow.process(pass).await.unwrap();
    assert_eq!(out.data.handle(), lent.handle());
    assert_eq!(&*out.data.view().unwrap(), b"lent");

    assert_eq!(
        flow.stats()[0].restarts,
        2,
        "each violation restarted the worker"
    );
    flow.stop(true).await;
}
