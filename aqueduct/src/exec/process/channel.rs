//! The per-worker control region's mapping and its wake-ups, used by both sides. What
//! the region holds, and who writes what, is [`super::wire`].
//!
//! The region is accessed only through raw copies and atomics (types marked
//! [`Shared`]), never through references to plain bytes: it is shared with a process
//! that may write any byte at any time.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;

use memmap2::{MmapOptions, MmapRaw};

use super::wire::{MAGIC, MIN_REGION};
use crate::platform::eventfd;
use crate::platform::reactor::OwnsFd;

/// A type that may be viewed in place in the shared region.
///
/// # Safety
/// Every bit pattern must be a valid value and all mutation must go through interior
/// mutability (atomics), since the other process writes the same bytes concurrently.
pub(crate) unsafe trait Shared: Sized {}

/// A mapped control region.
#[derive(Debug)]
pub(crate) struct Region {
    file: File,
    map: MmapRaw,
    len: usize,
}

impl Region {
    /// A new region (parent side), zero-filled, with its magic written.
    pub(crate) fn create(len: usize) -> io::Result<Self> {
        let file = crate::shm::memfd::create_sealed("aqueduct-worker-ctl", len)?;
        let region = Self::map(file, len)?;
        region.header().magic.store(MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Maps an existing region of `len` bytes (worker side: the inherited memfd). The
    /// memfd is size-sealed, so `len` cannot outgrow the file under the mapping.
    pub(crate) fn map(file: File, len: usize) -> io::Result<Self> {
        if file.metadata()?.len() < len as u64 || len < MIN_REGION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control region is smaller than announced",
            ));
        }
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Self { file, map, len })
    }

    /// A second handle on the region's file (for a second mapping).
    pub(crate) fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The value of type `T` at `offset`, in place.
    pub(crate) fn shared_at<T: Shared>(&self, offset: usize) -> &T {
        assert!(
            offset % align_of::<T>() == 0 && offset + size_of::<T>() <= self.len,
            "aqueduct bug: a control-region field outside the region"
        );
        // SAFETY: the offset is aligned for `T` and the value lies inside the mapping
        // (asserted; the mapping itself is page-aligned and lives as long as `self`).
        // `T: Shared` makes every bit pattern valid and all access atomic, so the other
        // process writing the same bytes cannot make this reference unsound.
        unsafe { &*(self.map.as_ptr().add(offset) as *const T) }
    }

    /// Copies `data` into the region at `offset`; `false` if it does not fit.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> bool {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: the range is inside the mapping (checked above). The region is shared
        // memory, so no reference to it is formed; a raw copy cannot create aliasing
        // references, and any concurrent write by a misbehaving peer only yields bytes
        // that the reader validates.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(offset),
                data.len(),
            )
        };
        true
    }

    /// Copies bytes at `offset` out into `out`; `false` if the range is outside.
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        if offset
            .checked_add(out.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: as in `write`, in the other direction.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        true
    }
}

/// An eventfd: a counter one side adds to and the other drains to wake up.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    /// A new eventfd, close-on-exec (it is passed to a worker explicitly).
    pub(crate) fn create(nonblocking: bool) -> io::Result<Self> {
        eventfd::create(nonblocking).map(Self)
    }

    /// Takes ownership of an inherited eventfd (worker side).
    ///
    /// # Safety
    /// `fd` must be an open eventfd that nothing else in this process owns.
    pub(crate) unsafe fn from_raw(fd: RawFd) -> Self {
        // SAFETY: upheld by the caller.
        Self(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Adds one to the counter, waking a sleeper.
    pub(crate) fn notify(&self) {
        // An error (counter overflow after 2^64 - 2 wake-ups) cannot happen in practice
        // and only loses a wake-up that the periodic re-check recovers.
        let _ = eventfd::add(&self.0, 1);
    }

    /// Resets the counter; `Err(WouldBlock)` if it was zero (non-blocking eventfd).
    pub(crate) fn drain(&self) -> io::Result<()> {
        eventfd::take(&self.0).map(drop)
    }

    /// Sleeps until the counter is non-zero and drains it, in one read (a blocking
    /// eventfd, as a worker's request eventfd is); returns early if a signal interrupts.
    pub(crate) fn wait(&self) {
        let _ = eventfd::take(&self.0);
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// It owns its eventfd's descriptor, which nothing replaces.
impl OwnsFd for EventFd {}
