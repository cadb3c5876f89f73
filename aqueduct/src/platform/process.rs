//! This process's relation to its parent, signals, and leaving a forked child.

use std::io;

use rustix::process::Signal;

/// SIGKILL's number, as [`crate::Error::WorkerCrashed`] reports it.
pub(crate) const SIGKILL: i32 = Signal::KILL.as_raw();

/// The parent's pid; 0 if there is none (the process is in another pid namespace than
/// its parent's). Async-signal-safe.
pub(crate) fn parent_pid() -> u32 {
    rustix::process::Pid::as_raw(rustix::process::getppid()) as u32
}

/// Asks the kernel to SIGKILL this process when its parent dies (`PR_SET_PDEATHSIG`; it
/// fires when the parent *thread* that forked it exits). Async-signal-safe.
pub(crate) fn die_with_parent() -> io::Result<()> {
    Ok(rustix::process::set_parent_process_death_signal(Some(
        Signal::KILL,
    ))?)
}

/// Ends the process at once with `code`: no destructors, no `atexit` handlers, no
/// flushing. What a forked child that must not run the parent's code calls.
/// Async-signal-safe.
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Whether the process runs in secure mode (`AT_SECURE`: setuid, setgid, capabilities).
pub(crate) fn secure_mode() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector; it has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Makes writing to a closed pipe an error (`EPIPE`) instead of a fatal signal, as std's
/// start-up does before `main`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to "ignore" installs no handler and has no
    // preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Ignores SIGINT and SIGTERM. A worker shares its parent's process group (and cgroup),
/// so a ctrl-c in a terminal, or a service manager's SIGTERM to the whole group, would
/// otherwise kill it under the requests its parent is draining for a graceful stop. It
/// still ends with its parent, which the kernel makes SIGKILL it.
pub(crate) fn ignore_stop_requests() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: as for SIGPIPE above.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}

#[cfg(feature = "metrics")]
/// The resident memory of process `pid`, in bytes (`/proc/<pid>/statm`, whose second
/// field counts resident pages); `None` if it cannot be read (the process is gone).
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}
