//! The process-wide arena: one sealed memfd mapped once, carved into buddy blocks.
//!
//! All allocator metadata (free lists, reference counts, generations) lives in this
//! process's private memory, never in the shared mapping, so no other process that maps
//! the arena can corrupt it; every handle that comes back is checked against it.
//!
//! A worker *process* maps the same memfd (inherited) but has no books: the parent holds
//! a reference to every block it lent for as long as the worker may read it, so in a
//! worker a read needs only a bounds check, and retain/release are no-ops. Blocks a
//! handler creates inside a worker go to the worker's *scratch* area (a second memfd the
//! parent maps too), tagged with [`SCRATCH_TAG`]; the parent copies them into the arena
//! when it takes the batch's outputs (see `exec::process`).

use crate::sync::lock;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use memmap2::{MmapOptions, MmapRaw};

use super::buddy::{Buddy, MIN_BLOCK};
use super::memfd;
use super::ShmHandle;
use crate::config::{self, Settings};
use crate::Error;

/// Default arena size: 1 GiB of address space. Pages are only backed once written.
pub const DEFAULT_CAPACITY: usize = config::DEFAULT_ARENA_BYTES;
/// Environment variable that sets the arena size in bytes, read once at first use
/// (unless [`configure`] set it). A value that is not a byte count fails the arena's
/// creation with [`Error::Config`].
pub const CAPACITY_ENV: &str = config::ARENA_BYTES;
/// The smallest arena [`configure`] accepts: one page.
const MIN_CAPACITY: usize = crate::platform::PAGE;

static REQUESTED_CAPACITY: AtomicUsize = AtomicUsize::new(0);
static GLOBAL: OnceLock<Arena> = OnceLock::new();

/// Sets the arena's size, in bytes (rounded down to a power of two). Must be called
/// before the first shared-memory allocation; afterwards the arena exists and its size
/// is fixed, and this returns [`Error::Config`].
pub fn configure(capacity: usize) -> Result<(), Error> {
    if capacity < MIN_CAPACITY {
        return Err(Error::Config(format!(
            "arena capacity {capacity} is below the minimum of {MIN_CAPACITY} bytes"
        )));
    }
    REQUESTED_CAPACITY.store(capacity, Ordering::SeqCst);
    if GLOBAL.get().is_some() {
        return Err(Error::Config(
            "the shared-memory arena is already in use; configure it before the first allocation"
                .into(),
        ));
    }
    Ok(())
}

/// Usage figures of the process's arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaStats {
    /// Total size in bytes.
    pub capacity: usize,
    /// Bytes in allocated blocks (block sizes, so rounded up to powers of two).
    pub used: usize,
    /// Number of allocated blocks.
    pub blocks: usize,
}

/// Current usage of the arena (all zeros in use if nothing was ever allocated).
pub fn stats() -> ArenaStats {
    Arena::global().map(Arena::stats).unwrap_or(ArenaStats {
        capacity: 0,
        used: 0,
        blocks: 0,
    })
}

/// One allocated block's private bookkeeping.
#[derive(Debug)]
struct Block {
    order: u32,
    len: u64,
    generation: u64,
    refs: u32,
}

#[derive(Debug)]
struct Books {
    buddy: Buddy,
    live: HashMap<u64, Block>,
    used: usize,
    next_generation: u64,
}

/// Offset bit marking a handle into a worker's scratch area rather than the arena.
pub(crate) const SCRATCH_TAG: u64 = 1 << 62;

/// An arena of shared memory.
#[derive(Debug)]
pub struct Arena {
    map: MmapRaw,
    capacity: usize,
    file: File,
    role: Role,
}

#[derive(Debug)]
enum Role {
    /// The process that owns the arena and keeps its books.
    Owner(Mutex<Books>),
    /// A worker process: no books, plus the worker's scratch area for new blocks.
    Worker(WorkerScratch),
}

#[derive(Debug)]
struct WorkerScratch {
    map: MmapRaw,
    capacity: usize,
    /// Bump pointer, the end of the current window, and the request blocks are made for.
    next: Mutex<ScratchCursor>,
}

#[derive(Debug)]
struct ScratchCursor {
    start: usize,
    next: usize,
    end: usize,
    /// The number of the request the worker runs (0 before the first): every block made
    /// for it carries it as its generation, for the parent to tell a block of this
    /// answer from one left over from an earlier request, whose bytes may be another's
    /// by now (see `Scratch::import`).
    request: u64,
}

/// Maps the parent's arena inside a worker process, plus the worker's scratch area.
/// Called once, first thing in a worker; fails if the arena already exists.
pub(crate) fn attach_worker(
    arena: File,
    capacity: usize,
    scratch: File,
    scratch_capacity: usize,
) -> Result<(), Error> {
    // Read-only: a worker only reads the blocks lent to it (what it makes goes to its
    // scratch area), so a handler's stray write into a lent block faults in its own
    // process instead of corrupting another task's payload.
    let map = MmapOptions::new()
        .len(capacity)
        .map_raw_read_only(&arena)
        .map_err(|e| Error::Config(format!("cannot map shared memory: {e}")))?;
    let scratch_map = map_file(&scratch, scratch_capacity)?;
    let attached = Arena {
        map,
        capacity,
        file: arena,
        role: Role::Worker(WorkerScratch {
            map: scratch_map,
            capacity: scratch_capacity,
            next: Mutex::new(ScratchCursor {
                start: 0,
                next: 0,
                end: scratch_capacity,
                request: 0,
            }),
        }),
    };
    GLOBAL
        .set(attached)
        .map_err(|_| Error::Config("the arena was used before the worker attached it".into()))
}

/// In a worker: new blocks, made for request `request`, go to `window` of the scratch
/// area from now on, which starts empty. The blocks made there for an earlier request
/// have been copied out by the parent; those of the request answered just before may
/// still be being copied, which is why consecutive requests get different windows (see
/// the control region's lanes).
pub(crate) fn reset_worker_scratch(window: std::ops::Range<usize>, request: u64) {
    if let Some(Arena {
        role: Role::Worker(scratch),
        ..
    }) = GLOBAL.get()
    {
        let mut cursor = lock(&scratch.next);
        cursor.end = window.end.min(scratch.capacity);
        cursor.start = window.start.min(cursor.end);
        cursor.next = cursor.start;
        cursor.request = request;
    }
}

fn map_file(file: &File, len: usize) -> Result<MmapRaw, Error> {
    MmapOptions::new()
        .len(len)
        .map_raw(file)
        .map_err(|e| Error::Config(format!("cannot map shared memory: {e}")))
}

impl Arena {
    /// The process's arena, created at first use.
    pub(crate) fn global() -> Result<&'static Arena, Error> {
        if let Some(arena) = GLOBAL.get() {
            return Ok(arena);
        }
        let requested = match REQUESTED_CAPACITY.load(Ordering::SeqCst) {
            0 => Settings::get()?.arena_bytes,
            n => n,
        };
        let arena = Arena::new(requested)?;
        // Another thread may have won the race; its arena is equally good.
        Ok(GLOBAL.get_or_init(|| arena))
    }

    #[cfg(feature = "metrics")]
    /// The process's arena if it was created (unlike [`Arena::global`], creates none).
    pub(crate) fn existing() -> Option<&'static Arena> {
        GLOBAL.get()
    }

    /// A fresh arena of `capacity` bytes, rounded down to a power of two.
    pub(crate) fn new(capacity: usize) -> Result<Self, Error> {
        let capacity = 1usize << (usize::BITS - 1 - capacity.max(MIN_BLOCK).leading_zeros());
        let (file, map) = memfd::create_owner_writable("aqueduct-arena", capacity)
            .map_err(|e| Error::Config(format!("cannot create the shared-memory arena: {e}")))?;
        let books = Books {
            buddy: Buddy::new(capacity),
            live: HashMap::new(),
            used: 0,
            next_generation: 1,
        };
        Ok(Self {
            map,
            capacity,
            file,
            role: Role::Owner(Mutex::new(books)),
        })
    }

    /// The memfd, for worker processes to inherit.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The arena's size in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The books; `None` in a worker process.
    fn books(&self) -> Option<MutexGuard<'_, Books>> {
        match &self.role {
            Role::Owner(books) => Some(lock(books)),
            Role::Worker(_) => None,
        }
    }

    pub(crate) fn stats(&self) -> ArenaStats {
        match self.books() {
            Some(books) => ArenaStats {
                capacity: self.capacity,
                used: books.used,
                blocks: books.live.len(),
            },
            None => ArenaStats {
                capacity: self.capacity,
                used: 0,
                blocks: 0,
            },
        }
    }

    /// Allocates a block for `len` bytes (`len > 0`) with one reference, and hands its
    /// bytes to `fill` before anyone else can see the block.
    pub(crate) fn alloc_with(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<ShmHandle, Error> {
        debug_assert!(len > 0);
        let books = match &self.role {
            Role::Owner(books) => books,
            Role::Worker(scratch) => return scratch.alloc_with(len, fill),
        };
        let order = Buddy::order_for(len);
        let handle = {
            let mut books = lock(books);
            let offset = books.buddy.alloc(order).ok_or_else(|| Error::ArenaFull {
                requested: len,
                free: self.capacity - books.used,
                capacity: self.capacity,
            })?;
            let generation = books.next_generation;
            books.next_generation += 1;
            books.used += Buddy::block_size(order);
            books.live.insert(
                offset,
                Block {
                    order,
                    len: len as u64,
                    generation,
                    refs: 1,
                },
            );
            ShmHandle {
                offset,
                len: len as u64,
                generation,
            }
        };
        // SAFETY: the block `[offset, offset + len)` lies inside the mapping (the buddy
        // allocator only hands out blocks below `capacity`, and `len` fits the block),
        // the mapping lives as long as `self`, and the block was just allocated: no other
        // handle to it exists yet, so this is the only reference to these bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(handle.offset as usize), len)
        };
        fill(bytes);
        Ok(handle)
    }

    /// Checks that `handle` names a live block exactly as allocated.
    fn check<'b>(&self, books: &'b mut Books, handle: &ShmHandle) -> Result<&'b mut Block, Error> {
        let block = books
            .live
            .get_mut(&handle.offset)
            .ok_or_else(|| Error::InvalidHandle {
                reason: format!("no live block at offset {}", handle.offset),
            })?;
        if block.generation != handle.generation || block.len != handle.len {
            return Err(Error::InvalidHandle {
                reason: format!(
                    "stale handle at offset {} (generation {} is now {})",
                    handle.offset, handle.generation, block.generation
                ),
            });
        }
        Ok(block)
    }

    /// Checks that `handle` names a live block, without touching its references (a
    /// worker, which keeps no books, checks the handle's range).
    pub(crate) fn check_live(&self, handle: &ShmHandle) -> Result<(), Error> {
        if handle.is_empty() {
            return Ok(());
        }
        match self.books() {
            Some(mut books) => self.check(&mut books, handle).map(|_| ()),
            None => self.worker_range(handle).map(|_| ()),
        }
    }

    /// Adds a reference to a live block.
    pub(crate) fn retain(&self, handle: &ShmHandle) -> Result<(), Error> {
        if handle.is_empty() {
            return Ok(());
        }
        let Some(mut books) = self.books() else {
            // A worker holds no references of its own; the parent's cover the call.
            return self.worker_range(handle).map(|_| ());
        };
        let block = self.check(&mut books, handle)?;
        block.refs = block
            .refs
            .checked_add(1)
            .ok_or_else(|| Error::InvalidHandle {
                reason: "reference count overflow".into(),
            })?;
        Ok(())
    }

    /// Drops a reference; the block is freed when none remain. A handle that is not live
    /// (a stale copy the user kept, say) is ignored: its generation no longer matches, so
    /// it cannot touch a block that was reused.
    pub(crate) fn release(&self, handle: &ShmHandle) {
        if handle.is_empty() {
            return;
        }
        let Some(mut books) = self.books() else {
            return;
        };
        let Ok(block) = self.check(&mut books, handle) else {
            return;
        };
        block.refs -= 1;
        if block.refs == 0 {
            let order = block.order;
            books.live.remove(&handle.offset);
            books.used -= Buddy::block_size(order);
            books.buddy.free(handle.offset, order);
        }
    }

    /// The bytes of a live block. The caller must hold a reference for as long as it uses
    /// the slice (see `ShmView`).
    pub(crate) fn bytes(&self, handle: &ShmHandle) -> Result<&[u8], Error> {
        if handle.is_empty() {
            return Ok(&[]);
        }
        let Some(mut books) = self.books() else {
            let (base, len) = self.worker_range(handle)?;
            // SAFETY: `worker_range` proved `[base, base + len)` lies inside a mapping
            // that lives as long as `self`. The parent lent the block for this call and
            // holds a reference to it until the worker answers, and blocks are never
            // written after they were handed out; scratch blocks are written only by
            // `alloc_with`'s `fill`, before the handle exists.
            return Ok(unsafe { std::slice::from_raw_parts(base, len) });
        };
        self.check(&mut books, handle)?;
        // SAFETY: `check` proved the block is live with exactly this offset and length,
        // so the range lies inside the mapping, which lives as long as `self`. Blocks are
        // written only by `alloc_with`, before the handle exists, so no `&mut` to these
        // bytes exists; the caller holds a reference, so the block cannot be freed and
        // reused while the slice is alive.
        Ok(unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(handle.offset as usize),
                handle.len as usize,
            )
        })
    }
}

impl Arena {
    /// In a worker: where a handle's bytes are, after a bounds check against the arena
    /// or the scratch area (there are no books to check it against).
    fn worker_range(&self, handle: &ShmHandle) -> Result<(*const u8, usize), Error> {
        let Role::Worker(scratch) = &self.role else {
            unreachable!("only called in a worker");
        };
        let (map, capacity, offset) = if handle.offset & SCRATCH_TAG != 0 {
            (&scratch.map, scratch.capacity, handle.offset & !SCRATCH_TAG)
        } else {
            (&self.map, self.capacity, handle.offset)
        };
        match offset.checked_add(handle.len) {
            Some(end) if end <= capacity as u64 => {
                // SAFETY: `offset + len <= capacity`, the mapping's length.
                Ok((
                    unsafe { map.as_ptr().add(offset as usize) },
                    handle.len as usize,
                ))
            }
            _ => Err(Error::InvalidHandle {
                reason: format!(
                    "block [{offset}, +{}) lies outside the shared mapping of {capacity} bytes",
                    handle.len
                ),
            }),
        }
    }
}

impl WorkerScratch {
    fn alloc_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<ShmHandle, Error> {
        let (offset, request) = {
            let mut cursor = lock(&self.next);
            let offset = cursor.next;
            let end = offset
                .checked_add(len)
                .filter(|&end| end <= cursor.end)
                .ok_or(Error::ArenaFull {
                    requested: len,
                    free: cursor.end - offset,
                    capacity: cursor.end - cursor.start,
                })?;
            cursor.next = end.next_multiple_of(MIN_BLOCK).min(cursor.end);
            (offset, cursor.request)
        };
        // SAFETY: `[offset, offset + len)` is inside the scratch mapping (checked above)
        // and was just reserved by the bump pointer, so nothing else refers to it until
        // the handle is returned.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset), len) };
        fill(bytes);
        Ok(ShmHandle {
            offset: offset as u64 | SCRATCH_TAG,
            len: len as u64,
            generation: request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_arena_is_a_clear_error_and_frees_make_room() {
        let arena = Arena::new(4096).unwrap();
        let a = arena.alloc_with(3000, |b| b.fill(1)).unwrap();
        match arena.alloc_with(3000, |_| {}) {
            Err(Error::ArenaFull {
                requested: 3000,
                capacity: 4096,
                ..
            }) => {}
            other => panic!("expected ArenaFull, got {other:?}"),
        }
        arena.release(&a);
        assert_eq!(arena.stats().used, 0);
        assert!(arena.alloc_with(3000, |_| {}).is_ok());
    }

    #[test]
    fn stale_and_forged_handles_are_rejected() {
        let arena = Arena::new(1 << 16).unwrap();
        let a = arena
            .alloc_with(10, |b| b.copy_from_slice(b"0123456789"))
            .unwrap();
        assert_eq!(arena.bytes(&a).unwrap(), b"0123456789");
        arena.release(&a);
        let b = arena.alloc_with(10, |_| {}).unwrap();
        assert_eq!(a.offset, b.offset, "block is reused");
        assert!(
            matches!(arena.bytes(&a), Err(Error::InvalidHandle { .. })),
            "old handle is stale"
        );
        let forged = ShmHandle {
            offset: 1 << 40,
            len: 8,
            generation: 1,
        };
        assert!(matches!(
            arena.retain(&forged),
            Err(Error::InvalidHandle { .. })
        ));
        let longer = ShmHandle { len: 4000, ..b };
        assert!(
            arena.bytes(&longer).is_err(),
            "length must match the allocation"
        );
    }

    #[test]
    fn references_keep_blocks_alive() {
        let arena = Arena::new(1 << 16).unwrap();
        let a = arena.alloc_with(100, |_| {}).unwrap();
        arena.retain(&a).unwrap();
        arena.release(&a);
        assert!(arena.bytes(&a).is_ok());
        arena.release(&a);
        assert_eq!(arena.stats().blocks, 0);
    }
}
