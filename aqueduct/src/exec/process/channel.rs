//! The per-worker control region and its wake-ups, used by both sides.
//!
//! One size-sealed memfd per worker, mapped by the parent and the worker:
//!
//! ```text
//! 0     magic                 u64   parent, at creation
//! 64    req_seq               u64   parent: sequence number of the last request published
//! 128   taken_seq             u64   worker: last request it picked up (started)
//! 192   resp_seq              u64   worker: last request it answered
//! 256   worker_waiting        u32   worker: "about to sleep on the request eventfd"
//! 320   state                 u32   worker: STARTING / READY / INIT_FAILED / REFUSED
//! 384   closing               u32   parent: "exit when idle"
//! 512   msg_len u32, msg [u8; MSG_CAP]   worker: init error or refusal text
//! 2048  lane 0: req_count u32, resp_count u32, tag u64 (the request's seq), then
//!               request slots:  batch_cap × input size        (the tasks' `#[task]` bytes)
//!               response slots: batch_cap × (16 + slot_data)   (status, len, output or error)
//! ...   lane 1 (pipelined stages only), laid out the same way
//! ```
//!
//! Requests are numbered from 1. The parent writes each into a free lane, tagged with
//! its number, and the worker answers in the same lane; the lane stays the parent's
//! until it has read the answer. A worker runs requests strictly in order, one at a
//! time, finding request `n` by its tag. With two lanes the parent may publish the next
//! request while the worker runs the current one, so the worker goes from one to the
//! next without waiting for the parent (see the stage runner's pipelining). Each lane
//! also has its own part of the worker's scratch area ([`Geometry::scratch_window`]),
//! so the blocks a handler made for one answer survive while the worker runs the next.
//!
//! Sequence numbers are monotonic `u64`s; a slot's contents are written before its
//! sequence number is published (Release) and read after it is observed (Acquire).
//! Wake-ups are eventfds under an event-count protocol: the worker announces that it
//! is about to sleep, re-checks, then sleeps; the parent writes the eventfd only when
//! the worker announced sleep, so nothing is written while the worker is busy.
//!
//! Everything the parent reads back is validated by the caller: the region is shared
//! with a process that may be buggy. The region is accessed only through raw pointers
//! and atomics, never through references to plain bytes.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{MmapOptions, MmapRaw};

pub(crate) const MAGIC: u64 = 0x6171_7565_6475_6374; // "aqueduct"
pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_REQ_SEQ: usize = 64;
pub(crate) const OFF_TAKEN_SEQ: usize = 128;
pub(crate) const OFF_RESP_SEQ: usize = 192;
pub(crate) const OFF_WORKER_WAITING: usize = 256;
pub(crate) const OFF_STATE: usize = 320;
pub(crate) const OFF_CLOSING: usize = 384;
pub(crate) const OFF_MSG_LEN: usize = 512;
pub(crate) const OFF_MSG: usize = 516;
pub(crate) const MSG_CAP: usize = 1024;
pub(crate) const OFF_SLOTS: usize = 2048;

pub(crate) const STATE_STARTING: u32 = 0;
pub(crate) const STATE_READY: u32 = 1;
pub(crate) const STATE_INIT_FAILED: u32 = 2;
pub(crate) const STATE_REFUSED: u32 = 3;

/// Response slot status words.
pub(crate) const STATUS_OK: u32 = 0;
pub(crate) const STATUS_ERR: u32 = 1;
/// Bytes of a response slot's header (status, len, reserved).
pub(crate) const RESP_HEADER: usize = 16;
/// Longest handler error message carried back (longer ones are truncated).
pub(crate) const ERR_CAP: usize = 1024;

/// Most lanes a region has: a worker holds at most this many requests at once.
pub(crate) const MAX_LANES: usize = 2;
/// Bytes before a lane's request slots (its `req_count` and `resp_count`).
const LANE_HEADER: usize = 64;

/// Sizes of a worker's slots, fixed at spawn from the stage's types and batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Most tasks one request carries.
    pub batch_cap: usize,
    pub input_size: usize,
    pub output_size: usize,
    /// Requests a worker may hold at once (1 or 2, see the module docs).
    pub lanes: usize,
}

impl Geometry {
    /// Whether the sizes are usable: a worker refuses a geometry that is not.
    pub(crate) fn is_valid(&self) -> bool {
        self.batch_cap > 0 && (1..=MAX_LANES).contains(&self.lanes)
    }

    /// Data bytes of one response slot: an output or an error message.
    pub(crate) fn slot_data(&self) -> usize {
        self.output_size.max(ERR_CAP).next_multiple_of(8)
    }

    fn lane_len(&self) -> usize {
        self.responses_start() + self.batch_cap * (RESP_HEADER + self.slot_data())
    }

    fn responses_start(&self) -> usize {
        (LANE_HEADER + self.batch_cap * self.input_size).next_multiple_of(64)
    }

    fn lane_offset(&self, lane: usize) -> usize {
        OFF_SLOTS + lane * self.lane_len().next_multiple_of(64)
    }

    /// Where a lane's request count is.
    pub(crate) fn req_count_offset(&self, lane: usize) -> usize {
        self.lane_offset(lane)
    }

    /// Where a lane's response count is.
    pub(crate) fn resp_count_offset(&self, lane: usize) -> usize {
        self.lane_offset(lane) + 4
    }

    /// Where a lane's tag is: the number of the request it holds (an atomic `u64`).
    pub(crate) fn tag_offset(&self, lane: usize) -> usize {
        self.lane_offset(lane) + 8
    }

    pub(crate) fn request_offset(&self, lane: usize, index: usize) -> usize {
        self.lane_offset(lane) + LANE_HEADER + index * self.input_size
    }

    pub(crate) fn response_offset(&self, lane: usize, index: usize) -> usize {
        self.lane_offset(lane) + self.responses_start() + index * (RESP_HEADER + self.slot_data())
    }

    /// Total bytes of the region.
    pub(crate) fn region_len(&self) -> usize {
        self.lane_offset(self.lanes).next_multiple_of(4096)
    }

    /// The part of a scratch area of `capacity` bytes that a lane's handler calls
    /// allocate in: an equal share per lane, page-aligned.
    pub(crate) fn scratch_window(&self, capacity: usize, lane: usize) -> Range<usize> {
        let share = (capacity / self.lanes) & !4095;
        lane * share..(lane + 1) * share
    }
}

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
        region
            .u64(OFF_MAGIC)
            .store(MAGIC, std::sync::atomic::Ordering::Release);
        Ok(region)
    }

    /// Maps an existing region of `len` bytes (worker side: the inherited memfd). The
    /// memfd is size-sealed, so `len` cannot outgrow the file under the mapping.
    pub(crate) fn map(file: File, len: usize) -> io::Result<Self> {
        if file.metadata()?.len() < len as u64 || len < OFF_SLOTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control region is smaller than announced",
            ));
        }
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Self { file, map, len })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The `u64` atomic at `offset` (one of the `OFF_*` header fields, or a lane's tag).
    pub(crate) fn u64(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.len);
        // SAFETY: the offset is 8-aligned inside the mapping (asserted), which is
        // page-aligned and lives as long as `self`. Both processes access these words
        // only atomically, and every bit pattern is a valid `u64`.
        unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// The `u32` atomic at `offset` (one of the `OFF_*` header fields).
    pub(crate) fn u32(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= OFF_SLOTS);
        // SAFETY: as in `u64`, for a 4-aligned `u32`.
        unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU32) }
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

    /// The `u32` at `offset` (a plain field written before a sequence number was
    /// published), or `None` if the offset is outside the region.
    pub(crate) fn read_u32(&self, offset: usize) -> Option<u32> {
        let mut bytes = [0u8; 4];
        self.read(offset, &mut bytes)
            .then(|| u32::from_ne_bytes(bytes))
    }

    pub(crate) fn write_u32(&self, offset: usize, value: u32) -> bool {
        self.write(offset, &value.to_ne_bytes())
    }

    /// Writes the message area (init errors, refusals), truncated to fit.
    pub(crate) fn write_message(&self, text: &str) {
        let bytes = truncate_utf8(text, MSG_CAP).as_bytes();
        self.write(OFF_MSG, bytes);
        self.write_u32(OFF_MSG_LEN, bytes.len() as u32);
    }

    /// Reads the message area, validating its length.
    pub(crate) fn read_message(&self) -> String {
        let len = self.read_u32(OFF_MSG_LEN).unwrap_or(0) as usize;
        let mut bytes = vec![0; len.min(MSG_CAP)];
        self.read(OFF_MSG, &mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An eventfd: a counter one side adds to and the other drains to wake up.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    /// A new eventfd, close-on-exec (it is passed to a worker explicitly).
    pub(crate) fn create(nonblocking: bool) -> io::Result<Self> {
        let flags = libc::EFD_CLOEXEC | if nonblocking { libc::EFD_NONBLOCK } else { 0 };
        // SAFETY: plain syscall with valid flags.
        let fd = unsafe { libc::eventfd(0, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
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
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid buffer to an owned fd. An error (counter
        // overflow after 2^64 - 2 wake-ups) cannot happen in practice and only loses a
        // wake-up that the periodic re-check recovers.
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Resets the counter; `Err(WouldBlock)` if it was zero (non-blocking eventfd).
    pub(crate) fn drain(&self) -> io::Result<()> {
        let mut value = [0u8; 8];
        // SAFETY: reads 8 bytes into a valid buffer from an owned fd.
        let n = unsafe { libc::read(self.0.as_raw_fd(), value.as_mut_ptr().cast(), 8) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sleeps until the counter is non-zero or `timeout_ms` passes, then drains it.
    /// Returns whether it was woken (as opposed to timing out).
    pub(crate) fn wait(&self, timeout_ms: i32) -> bool {
        let mut pollfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pollfd` is a valid array of one element for the duration of the call.
        let ready = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
        if ready > 0 {
            let _ = self.drain();
            true
        } else {
            false
        }
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
