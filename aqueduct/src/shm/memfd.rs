//! A size-sealed anonymous memory file: the backing store of the arena. Sealing the size
//! means no process that shares the file can shrink it under another's mapping (which
//! would turn reads into SIGBUS).

use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

/// Creates a memfd of `len` bytes and seals its size.
pub fn create_sealed(name: &str, len: usize) -> io::Result<File> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid for memfd_create.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len as u64)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: `fd` is a valid memfd created with MFD_ALLOW_SEALING; F_ADD_SEALS takes an int.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
