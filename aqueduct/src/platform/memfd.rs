//! Anonymous memory files (`memfd_create`) and their seals (`F_ADD_SEALS`). Which seals
//! each of the runtime's files gets, and why, is `crate::shm::memfd`'s business.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{MemfdFlags, SealFlags};

/// A seal: a way a memfd may no longer change.
pub(crate) use rustix::fs::SealFlags as Seals;

/// A new, empty memfd, close-on-exec, that accepts seals.
pub(crate) fn create(name: &str) -> io::Result<File> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    Ok(File::from(fd))
}

/// Adds `seals` to the memfd `file`.
pub(crate) fn add_seals(file: impl AsFd, seals: Seals) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(file, seals)?)
}

/// Seals `file` against any new write or writable mapping (`F_SEAL_FUTURE_WRITE`) where
/// the kernel has that seal (Linux 5.1+); returns whether it did. Mappings made before
/// stay writable.
pub(crate) fn seal_future_writes(file: impl AsFd) -> io::Result<bool> {
    match rustix::fs::fcntl_add_seals(file, SealFlags::FUTURE_WRITE) {
        Ok(()) => Ok(true),
        // An older kernel does not know the seal.
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
