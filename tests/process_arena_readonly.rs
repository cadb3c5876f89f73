//! A worker process cannot write the shared arena: it maps the arena read-only, and the
//! arena is sealed against new writable mappings. A handler's stray write into a block
//! lent to it kills only its own process; the parent's bytes are unchanged.

use aqueduct::{Error, ShmBytes};

#[aqueduct::task]
#[derive(Debug)]
struct Poke {
    /// 1: write into `data` through a raw pointer. 2: try to map the arena anew,
    /// writable, and report the outcome in `mapped` (1 = it worked).
    mode: u64,
    mapped: u64,
    data: ShmBytes,
}

/// The inherited arena descriptor, found by its memfd name.
fn arena_fd() -> Option<i32> {
    std::fs::read_dir("/proc/self/fd")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let target = std::fs::read_link(entry.path()).ok()?;
            target
                .to_string_lossy()
                .contains("aqueduct-arena")
                .then(|| entry.file_name().to_str()?.parse().ok())?
        })
}

#[aqueduct::handler(crash_retry = false)]
fn poke(task: &mut Poke) {
    match task.mode {
        1 => {
            let view = task.data.view().unwrap();
            let first = view.as_ptr() as *mut u8;
            // SAFETY: deliberately unsound: a stray write such as a buggy C library
            // could make. The mapping is read-only, so this faults.
            unsafe { first.write_volatile(0xAB) };
        }
        2 => {
            let fd = arena_fd().expect("the worker holds the arena's descriptor");
            // SAFETY: plain mmap of an inherited descriptor; unmapped at once on success.
            let map = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            };
            if map != libc::MAP_FAILED {
                task.mapped = 1;
                // SAFETY: `map` was just returned by mmap for 4096 bytes.
                unsafe { libc::munmap(map, 4096) };
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn a_stray_write_into_a_lent_block_faults_in_the_worker_only() {
    let flow = aqueduct::flow!(poke).start().await.unwrap();
    let data = ShmBytes::copy_from_slice(&[7; 64]).unwrap();
    let task = Poke {
        mode: 1,
        mapped: 0,
        data: data.clone_ref().unwrap(),
    };
    match flow.process(task).await {
        Err(Error::WorkerCrashed {
            signal: Some(signal),
            ..
        }) => assert_eq!(signal, libc::SIGSEGV),
        other => panic!("the write must fault in the worker, got {other:?}"),
    }
    assert_eq!(
        &*data.view().unwrap(),
        &[7; 64],
        "the parent's bytes are intact"
    );
    flow.stop(true).await;
}

#[tokio::test]
async fn a_worker_cannot_map_the_arena_writable() {
    let flow = aqueduct::flow!(poke).start().await.unwrap();
    let out = flow
        .process(Poke {
            mode: 2,
            mapped: 0,
            data: ShmBytes::default(),
        })
        .await
        .unwrap();
    assert_eq!(
        out.mapped, 0,
        "a new writable mapping of the arena must fail"
    );
    flow.stop(true).await;
}
