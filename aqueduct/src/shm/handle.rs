//! The plain-data reference to an arena block that tasks carry.

/// A reference to a block of the shared arena: where it is, how many bytes are used, and
/// the allocation's generation, which makes a handle to a freed (and maybe reused) block
/// detectably stale. The all-zero handle is the empty value and owns nothing.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShmHandle {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) generation: u64,
}

// SAFETY: three `u64`s, `repr(C)`, no padding: zero is a valid value.
unsafe impl bytemuck::Zeroable for ShmHandle {}
// SAFETY: as above, and every bit pattern is a valid value (validity of the *block* is
// checked against the arena whenever a handle is used).
unsafe impl bytemuck::Pod for ShmHandle {}

impl ShmHandle {
    /// The empty handle: zero bytes, no block.
    pub const EMPTY: Self = Self {
        offset: 0,
        len: 0,
        generation: 0,
    };

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// `true` for a zero-length value (which owns no block).
    pub fn is_empty(&self) -> bool {
        self.generation == 0
    }
}
