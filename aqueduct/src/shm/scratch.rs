//! A worker process's scratch area, seen from the parent: a sealed memfd that the worker
//! allocates new blocks in (see [`super::arena`]) and that the parent maps too, so it can
//! copy the blocks a batch's outputs name into its own arena. Only new data is copied;
//! handles that a handler passes through from its inputs stay zero-copy.

use std::fs::File;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};

use memmap2::{MmapOptions, MmapRaw};

use super::arena::{Arena, SCRATCH_TAG};
use super::{memfd, ShmHandle};
use crate::Error;

/// The parent's view of one worker's scratch area.
#[derive(Debug)]
pub(crate) struct Scratch {
    file: File,
    map: MmapRaw,
    capacity: usize,
}

impl Scratch {
    /// A new, size-sealed scratch area of `capacity` bytes (address space; pages are only
    /// backed once the worker writes them).
    pub(crate) fn create(capacity: usize) -> Result<Self, Error> {
        let file = memfd::create_sealed("aqueduct-scratch", capacity)
            .map_err(|e| Error::Config(format!("cannot create a worker scratch area: {e}")))?;
        let map = MmapOptions::new()
            .len(capacity)
            .map_raw(&file)
            .map_err(|e| Error::Config(format!("cannot map a worker scratch area: {e}")))?;
        Ok(Self {
            file,
            map,
            capacity,
        })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `handle` claims to be a scratch block.
    pub(crate) fn is_scratch(handle: &ShmHandle) -> bool {
        handle.offset & SCRATCH_TAG != 0
    }

    /// Copies the scratch block a worker's `handle` names into a new arena block (holding
    /// one reference). The handle comes from another process: it must lie inside
    /// `window`, the part of the area the worker allocated in for this answer, and be
    /// made for `request`, the answer's (a block of an earlier request may hold another
    /// block's bytes by now).
    pub(crate) fn import(
        &self,
        handle: &ShmHandle,
        window: Range<usize>,
        request: u64,
    ) -> Result<ShmHandle, ImportError> {
        let offset = handle.offset & !SCRATCH_TAG;
        let len = handle.len;
        let end = window.end.min(self.capacity) as u64;
        match offset.checked_add(len) {
            Some(stop) if len > 0 && offset >= window.start as u64 && stop <= end => {}
            _ => {
                return Err(ImportError::Invalid(format!(
                    "scratch block [{offset}, +{len}) lies outside the worker's scratch area for this answer ([{}, {end}) of {} bytes)",
                    window.start, self.capacity
                )))
            }
        }
        if handle.generation != request {
            return Err(ImportError::Invalid(format!(
                "scratch block [{offset}, +{len}) was made for request {}, not for this answer's request {request}",
                handle.generation
            )));
        }
        let arena = Arena::global().map_err(ImportError::Arena)?;
        arena
            .alloc_with(len as usize, |dst| {
                // SAFETY: `[offset, offset + len)` lies inside the scratch mapping (checked
                // above), which lives as long as `self`; `dst` is a fresh arena block of
                // exactly `len` bytes, private to this call, so the ranges cannot overlap.
                // Raw copies are used because the worker process may (if it misbehaves)
                // write the source concurrently; no reference to it is formed.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.map.as_ptr().add(offset as usize),
                        dst.as_mut_ptr(),
                        len as usize,
                    )
                }
            })
            .map_err(ImportError::Arena)
    }
}

/// Why a worker's block could not be imported.
#[derive(Debug)]
pub(crate) enum ImportError {
    /// The handle is out of range: the worker is misbehaving.
    Invalid(String),
    /// The arena has no room for the copy: a resource limit, not the worker's fault.
    Arena(crate::Error),
}
