//! Waiting for a worker process (not a child of the test) to exit, through a pidfd.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A pidfd for `pid`, which becomes readable when the process exits.
pub fn pidfd(pid: u32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Waits up to `timeout_ms` for the process behind `fd` to exit.
pub fn exits_within(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, timeout_ms) == 1 }
}
