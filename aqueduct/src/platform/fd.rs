//! Descriptor flags, the 8-byte counters that eventfds and timerfds hand out, and
//! read-only probes of descriptor numbers.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};

use rustix::fs::FileType;
use rustix::io::FdFlags;

/// Sets or clears `FD_CLOEXEC` on `fd`. Async-signal-safe.
pub(crate) fn set_close_on_exec(fd: impl AsFd, close: bool) -> io::Result<()> {
    let flags = rustix::io::fcntl_getfd(&fd)?;
    let flags = if close {
        flags | FdFlags::CLOEXEC
    } else {
        flags - FdFlags::CLOEXEC
    };
    Ok(rustix::io::fcntl_setfd(&fd, flags)?)
}

/// Reads the 8-byte native-endian counter an eventfd or a timerfd hands out on a read
/// (which resets it); `WouldBlock` from a non-blocking one whose counter is zero.
pub(crate) fn read_counter(fd: impl AsFd) -> io::Result<u64> {
    let mut value = [0u8; 8];
    rustix::io::read(fd, &mut value)?;
    Ok(u64::from_ne_bytes(value))
}

/// Waits until `first` or `second` (if any) is readable (has data, or its other end
/// closed), at most `timeout` (`None`: as long as it takes); which of the two are. An
/// interrupted wait says neither, so the caller looks again.
pub(crate) fn wait_readable(
    first: BorrowedFd<'_>,
    second: Option<BorrowedFd<'_>>,
    timeout: Option<std::time::Duration>,
) -> io::Result<(bool, bool)> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let flags = PollFlags::IN;
    let mut both = [
        PollFd::from_borrowed_fd(first, flags),
        PollFd::from_borrowed_fd(first, flags),
    ];
    if let Some(second) = second {
        both[1] = PollFd::from_borrowed_fd(second, flags);
    }
    let fds = if second.is_some() {
        &mut both[..]
    } else {
        &mut both[..1]
    };
    // A wait too long for a `timespec` is a wait without end.
    let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
    match rustix::event::poll(fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok((false, false)),
        Err(error) => return Err(error.into()),
    }
    let ready = |fd: Option<&PollFd<'_>>| fd.is_some_and(|fd| !fd.revents().is_empty());
    Ok((ready(fds.first()), ready(fds.get(1))))
}

/// [`set_close_on_exec`] on a descriptor number. Async-signal-safe.
///
/// # Safety
/// `fd` must be this process's to change: owned, or held open, by the caller for the
/// call (a forked child's copies of its parent's descriptors, or descriptors inherited
/// for this process alone).
pub(crate) unsafe fn set_close_on_exec_raw(fd: RawFd, close: bool) -> io::Result<()> {
    if fd < 0 {
        return Err(rustix::io::Errno::BADF.into());
    }
    // SAFETY: `fd` is not -1 (checked) and the caller holds it open for this call.
    set_close_on_exec(unsafe { BorrowedFd::borrow_raw(fd) }, close)
}

/// Borrows descriptor number `fd` for one read-only probe.
///
/// # Safety
/// The probe must neither close `fd` nor change any of its state (offset, flags): the
/// number may be closed, or belong to another owner in this process.
unsafe fn probe(fd: RawFd) -> Option<BorrowedFd<'static>> {
    // SAFETY: -1 is the one value `borrow_raw` forbids (excluded here). I/O safety asks
    // that a borrowed descriptor not be closed or repurposed under its owner; a probe
    // only reads it (caller's promise), and a number that is not open makes the system
    // call fail with EBADF, nothing more.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Whether descriptor number `fd` is open and a regular file. Reads only its status.
pub(crate) fn is_regular_file(fd: RawFd) -> io::Result<bool> {
    // SAFETY: fstat only reads the descriptor's status.
    let Some(borrowed) = (unsafe { probe(fd) }) else {
        return Err(rustix::io::Errno::BADF.into());
    };
    let stat = rustix::fs::fstat(borrowed)?;
    Ok(FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile)
}

/// Reads from descriptor number `fd` at `offset` into `buf`, without moving its offset;
/// returns how many bytes were read.
pub(crate) fn read_at(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // SAFETY: pread reads at an explicit offset and leaves the descriptor's own alone.
    let Some(borrowed) = (unsafe { probe(fd) }) else {
        return Err(rustix::io::Errno::BADF.into());
    };
    Ok(rustix::io::pread(borrowed, buf, offset)?)
}

/// A new pipe: (read end, write end).
#[cfg(test)]
pub(crate) fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    Ok(rustix::pipe::pipe()?)
}
