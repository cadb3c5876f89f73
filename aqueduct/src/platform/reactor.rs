//! Descriptors watched by the tokio runtime's reactor (`AsyncFd`): the one place the
//! runtime hands a descriptor to it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::shapes::catch;

/// A value that owns the descriptor it names: the descriptor stays open, and the same,
/// for as long as the value lives.
pub(crate) trait OwnsFd: AsRawFd {}

impl OwnsFd for OwnedFd {}

/// Why a descriptor is not watched.
#[derive(Debug)]
pub(crate) enum Unwatched {
    /// The runtime was built without its IO driver.
    NoIoDriver,
    /// The reactor refused it.
    Refused(io::Error),
}

/// Watches `fd` for readability on the current runtime's reactor. Called on a runtime.
pub(crate) fn watch_readable<T: OwnsFd>(fd: T) -> Result<AsyncFd<T>, Unwatched> {
    // Registration panics on a runtime built without its IO driver (the descriptor, not
    // yet registered, is then closed as the panic unwinds). Caught quietly: the answer
    // is a fallback or an error, not a message on stderr.
    let registered = catch(move || {
        // SAFETY: `T: OwnsFd`, and the `AsyncFd` owns `fd` from here on: the descriptor
        // stays open, and the same, for the `AsyncFd`'s whole life.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
    });
    match registered {
        Ok(Ok(watched)) => Ok(watched),
        Ok(Err(refused)) => Err(Unwatched::Refused(refused.into())),
        Err(_) => Err(Unwatched::NoIoDriver),
    }
}
