//! How a `#[task]` value crosses machines: its plain bytes with every shared-memory
//! handle zeroed, plus the bytes of each handle's block, tagged with where the handle
//! sits in the task.
//!
//! A handle (`ShmBytes`, `ShmStr`, `ShmVec<T>`) names a block of *this process's* arena,
//! so it means nothing on another host. `split` copies each block's bytes out and zeroes
//! the handle; `join` copies them into new blocks of the receiving process's arena and
//! writes the new handles back. Handles can only sit in the task's own bytes (a `ShmVec`
//! element cannot hold handles), and they are 8-aligned 24-byte `ShmHandle`s, so `split`
//! finds each one the task reports (`TaskField::visit_handles`) at an 8-aligned offset.

use aqueduct::{Owned, ShmBytes, ShmHandle, Task, TaskField};

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not as long as the task type.
    #[error("{what}: {got} bytes, but `{name}` is {want} bytes")]
    Size {
        /// What was being decoded.
        what: &'static str,
        /// The task type.
        name: &'static str,
        /// Its size.
        want: usize,
        /// The bytes received.
        got: usize,
    },
    /// The payload section is cut short or names an offset outside the task.
    #[error("malformed payload section: {0}")]
    Payloads(String),
    /// A handle the task reports was not found in its bytes (or found twice as often).
    #[error("could not locate the task's shared-memory handles in its bytes ({reported} reported, {found} found)")]
    Handles {
        /// Handles the task reported.
        reported: usize,
        /// Matching 24-byte windows found.
        found: usize,
    },
    /// Reading or allocating a shared-memory block failed.
    #[error("shared memory: {0}")]
    Shm(#[from] aqueduct::Error),
}

const HANDLE: usize = std::mem::size_of::<ShmHandle>();

/// One shared-memory block of a task: where its handle sits, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Byte offset of the handle in the task.
    pub offset: usize,
    /// The block's bytes.
    pub bytes: Vec<u8>,
}

/// A task's bytes with its handles zeroed, and the blocks they named.
pub fn split<T: TaskField>(task: &T) -> Result<(Vec<u8>, Vec<Payload>), CodecError> {
    let mut bytes = bytemuck::bytes_of(task).to_vec();
    let mut reported = Vec::new();
    task.visit_handles(&mut |h| {
        if !h.is_empty() {
            reported.push(h)
        }
    });
    let mut payloads = Vec::new();
    if reported.is_empty() {
        return Ok((bytes, payloads));
    }
    let mut offset = 0;
    while offset + HANDLE <= bytes.len() {
        let window: ShmHandle = bytemuck::pod_read_unaligned(&bytes[offset..offset + HANDLE]);
        if !window.is_empty() && reported.contains(&window) {
            let block: ShmBytes = bytemuck::cast(window);
            payloads.push(Payload {
                offset,
                bytes: block.to_vec()?,
            });
            bytes[offset..offset + HANDLE].fill(0);
            offset += HANDLE;
        } else {
            offset += 8;
        }
    }
    if payloads.len() != reported.len() {
        return Err(CodecError::Handles {
            reported: reported.len(),
            found: payloads.len(),
        });
    }
    Ok((bytes, payloads))
}

/// The task `split` took apart, its blocks copied into this process's arena. On failure
/// nothing leaks: blocks already made belong to a partly built task that is dropped.
pub fn join<T: Task>(
    what: &'static str,
    bytes: &[u8],
    payloads: &[Payload],
) -> Result<Owned<T>, CodecError> {
    let want = std::mem::size_of::<T>();
    if bytes.len() != want {
        return Err(CodecError::Size {
            what,
            name: T::LAYOUT.name,
            want,
            got: bytes.len(),
        });
    }
    for p in payloads {
        if p.offset % 8 != 0 || p.offset + HANDLE > want {
            return Err(CodecError::Payloads(format!(
                "handle offset {} in a {want}-byte task",
                p.offset
            )));
        }
        if bytes[p.offset..p.offset + HANDLE].iter().any(|&b| b != 0) {
            return Err(CodecError::Payloads(format!(
                "the handle at offset {} was not zeroed",
                p.offset
            )));
        }
    }
    let mut task: Owned<T> = Owned::new(bytemuck::pod_read_unaligned(bytes));
    for p in payloads {
        let block = ShmBytes::copy_from_slice(&p.bytes)?;
        let mut raw = task.into_inner();
        bytemuck::bytes_of_mut(&mut raw)[p.offset..p.offset + HANDLE]
            .copy_from_slice(bytemuck::bytes_of(&block.handle()));
        task = Owned::new(raw);
    }
    Ok(task)
}

/// Appends `payloads` as `[u32 count] ([u32 offset][u64 len][bytes])*`.
pub fn put_payloads(out: &mut Vec<u8>, payloads: &[Payload]) {
    out.extend_from_slice(&(payloads.len() as u32).to_le_bytes());
    for p in payloads {
        out.extend_from_slice(&(p.offset as u32).to_le_bytes());
        out.extend_from_slice(&(p.bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&p.bytes);
    }
}

/// A little-endian reader over a byte string, failing with what was cut short.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.rest.len() < n {
            return Err(CodecError::Payloads(format!(
                "wanted {n} more bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `u32`.
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    /// The next `u64`.
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Whatever is left.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }

    /// A payload section written by [`put_payloads`].
    pub fn payloads(&mut self) -> Result<Vec<Payload>, CodecError> {
        let count = self.u32()?;
        let mut payloads = Vec::new();
        for _ in 0..count {
            let offset = self.u32()? as usize;
            let len = usize::try_from(self.u64()?)
                .map_err(|_| CodecError::Payloads("payload length overflows".into()))?;
            payloads.push(Payload {
                offset,
                bytes: self.take(len)?.to_vec(),
            });
        }
        Ok(payloads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aqueduct::{ShmStr, ShmVec};

    #[aqueduct::task]
    struct Mixed {
        id: u64,
        body: ShmBytes,
        empty: ShmBytes,
        label: ShmStr,
        values: ShmVec<f32>,
        pair: [ShmBytes; 2],
        score: f32,
        flag: u32,
    }

    #[test]
    fn a_task_with_every_kind_of_handle_survives_split_and_join() {
        let original = Owned::new(Mixed {
            id: 7,
            body: ShmBytes::copy_from_slice(b"body bytes").unwrap(),
            empty: ShmBytes::default(),
            label: ShmStr::new("cat").unwrap(),
            values: ShmVec::from_slice(&[0.5, 1.5]).unwrap(),
            pair: [
                ShmBytes::copy_from_slice(b"left").unwrap(),
                ShmBytes::copy_from_slice(b"right").unwrap(),
            ],
            score: 2.5,
            flag: 1,
        });
        let (bytes, payloads) = split(&*original).unwrap();
        assert_eq!(payloads.len(), 5);
        let mut wire = Vec::new();
        put_payloads(&mut wire, &payloads);
        let decoded = Reader::new(&wire).payloads().unwrap();
        assert_eq!(decoded, payloads);
        let copy: Owned<Mixed> = join("task", &bytes, &decoded).unwrap();
        assert_eq!((copy.id, copy.score, copy.flag), (7, 2.5, 1));
        assert_eq!(&*copy.body.view().unwrap(), b"body bytes");
        assert!(copy.empty.is_empty());
        assert_eq!(&*copy.label.view().unwrap(), "cat");
        assert_eq!(&*copy.values.view().unwrap(), &[0.5, 1.5]);
        assert_eq!(&*copy.pair[1].view().unwrap(), b"right");
        assert_ne!(copy.body.handle(), original.body.handle());
    }

    #[test]
    fn wrong_sizes_and_offsets_are_refused() {
        let err = join::<Mixed>("task", &[0; 3], &[]).unwrap_err();
        assert!(err.to_string().contains("3 bytes, but `Mixed` is"), "{err}");
        let size = std::mem::size_of::<Mixed>();
        let bad = [Payload {
            offset: size,
            bytes: vec![1],
        }];
        assert!(matches!(
            join::<Mixed>("task", &vec![0; size], &bad),
            Err(CodecError::Payloads(_))
        ));
        assert!(Reader::new(&[1, 0, 0, 0, 9]).payloads().is_err());
    }
}
