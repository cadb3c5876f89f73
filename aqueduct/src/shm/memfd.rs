//! Size-sealed anonymous memory files: the backing store of the arena, the control
//! regions and the scratch areas. Sealing the size means no process that shares the file
//! can shrink it under another's mapping (which would turn reads into SIGBUS).

use std::fs::File;
use std::io;

use memmap2::{MmapOptions, MmapRaw};

use crate::platform::memfd::{self as sys, Seals};

/// Creates a memfd of `len` bytes and seals its size.
pub fn create_sealed(name: &str, len: usize) -> io::Result<File> {
    let file = create(name, len)?;
    sys::add_seals(&file, Seals::SEAL)?;
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
    sys::seal_future_writes(&file)?;
    sys::add_seals(&file, Seals::SEAL)?;
    Ok((file, map))
}

fn create(name: &str, len: usize) -> io::Result<File> {
    let file = sys::create(name)?;
    file.set_len(len as u64)?;
    sys::add_seals(&file, Seals::SHRINK | Seals::GROW)?;
    Ok(file)
}
