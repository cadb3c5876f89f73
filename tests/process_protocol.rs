//! What a worker process sends back is validated, never trusted: an output holding a
//! handle outside the arena, a handle to a live block that was not lent to the worker,
//! or a block the worker made for an earlier request, fails its task with
//! `Error::WorkerProtocol`; the worker is killed and replaced, and the flow keeps
//! serving.

use aqueduct::{Error, ShmBytes};

#[aqueduct::task]
#[derive(Debug)]
struct Forge {
    /// 0: behave; 1: return an out-of-range handle; 2: return the handle described by
    /// `offset`, `len` and `generation` (a block the worker was never given); 3: make a
    /// block, return it and keep it; 4: return the block kept (made for an earlier
    /// request, its bytes perhaps another block's by now).
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

/// The block a worker made for mode 3, kept for mode 4 (in the worker process).
static KEPT: std::sync::Mutex<Option<ShmBytes>> = std::sync::Mutex::new(None);

/// Without `crash_retry`: each violating task is sent once, so each restarts one worker.
#[aqueduct::handler(crash_retry = false)]
fn forge(task: &mut Forge) -> Result<(), Error> {
    match task.mode {
        1 => task.data = forged(1 << 45, 64, 7),
        2 => task.data = forged(task.offset, task.len, task.generation),
        3 => {
            task.data = ShmBytes::copy_from_slice(b"made once")?;
            *KEPT.lock().unwrap() = Some(task.data);
        }
        4 => task.data = KEPT.lock().unwrap().expect("a block was kept"),
        _ => {}
    }
    Ok(())
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

#[tokio::test]
async fn a_block_a_worker_made_for_an_earlier_request_is_rejected() {
    let flow = aqueduct::flow!(forge).start().await.unwrap();
    let made = flow.process(task(3)).await.unwrap();
    assert_eq!(&*made.data.view().unwrap(), b"made once", "copied out once");
    match flow.process(task(4)).await {
        Err(Error::WorkerProtocol {
            stage: "forge",
            reason,
            ..
        }) => assert!(reason.contains("was made for request 1"), "{reason}"),
        other => panic!("a block of an earlier request must be rejected, got {other:?}"),
    }
    assert_eq!(
        flow.process(task(0)).await.unwrap().mode,
        0,
        "flow still serves"
    );
    assert_eq!(flow.stats()[0].restarts, 1);
    flow.stop(true).await;
}
