//! Size-sealed anonymous memory files: the backing store of the arena, the control
//! regions and the scratch areas. Sealing the size means no process that shares the file
//! can shrink it under another's mapping (which would turn reads into SIGBUS).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

use memmap2::{MmapOptions, MmapRaw};

/// Creates a memfd of `len` bytes and seals its size.
pub fn create_sealed(name: &str, len: usize) -> io::Result<File> {
    let file = create(name, len)?;
    add_seals(&file, libc::F_SEAL_SEAL)?;
    Ok(file)
}

/// Creates a memfd of `len` bytes, seals its size, maps it read-write in this process,
/// and then seals it against any *new* writable mapping or write, in any process
/// (`F_SEAL_FUTURE_WRITE`, Linux 5.1+; on older kernels the file stays writable through
/// its descriptor, and readers still map it read-only). The arena is made so: only its
/// owner writes it, and a worker process that inherits it cannot corrupt another task's
/// payload even by mapping it anew.
pub fn create_owner_writable(name: &str, len: usize) -> io::Result<(File, MmapRaw)> {
    let file = create(name, len)?;
    let map = MmapOptions::new().len(len).map_raw(&file)?;
    match add_seals(&file, libc::F_SEAL_FUTURE_WRITE) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(e),
    }
    add_seals(&file, libc::F_SEAL_SEAL)?;
    Ok((file, map))
}

fn create(name: &str, len: usize) -> io::Result<File> {
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
    add_seals(&file, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)?;
    Ok(file)
}

fn add_seals(file: &File, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: the fd is a valid memfd created with MFD_ALLOW_SEALING; F_ADD_SEALS takes
    // an int.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
