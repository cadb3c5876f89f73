//! eventfd counters: one side adds to the counter, the other sleeps until it is non-zero
//! and takes it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::EventfdFlags;

/// A new eventfd with a zero counter, close-on-exec; reads on an empty counter fail with
/// `WouldBlock` if `nonblocking`, and sleep otherwise.
pub(crate) fn create(nonblocking: bool) -> io::Result<OwnedFd> {
    let mut flags = EventfdFlags::CLOEXEC;
    if nonblocking {
        flags |= EventfdFlags::NONBLOCK;
    }
    Ok(rustix::event::eventfd(0, flags)?)
}

/// Adds `n` to the counter, waking a sleeper.
pub(crate) fn add(fd: impl AsFd, n: u64) -> io::Result<()> {
    rustix::io::write(fd, &n.to_ne_bytes())?;
    Ok(())
}

/// Takes the counter's value, leaving it at zero.
pub(crate) fn take(fd: impl AsFd) -> io::Result<u64> {
    super::fd::read_counter(fd)
}
