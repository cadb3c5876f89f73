//! The variable-size field types of `#[task]` structs. Each is a plain-data handle into
//! the arena; its contents are written once, at creation, and read through [`ShmView`].

use std::fmt;
use std::marker::PhantomData;

use super::arena::Arena;
use super::{ownership, ShmHandle, ShmView};
use crate::task::TaskField;
use crate::Error;

/// Allocates `len` bytes filled by `fill`; zero bytes need no block.
fn alloc(len: usize, fill: impl FnOnce(&mut [u8])) -> Result<ShmHandle, Error> {
    if len == 0 {
        return Ok(ShmHandle::EMPTY);
    }
    let handle = Arena::global()?.alloc_with(len, fill)?;
    ownership::adopt_new(handle);
    Ok(handle)
}

/// Another reference to the same block, for putting one payload into several tasks.
fn clone_ref(handle: ShmHandle) -> Result<ShmHandle, Error> {
    if !handle.is_empty() {
        Arena::global()?.retain(&handle)?;
        ownership::adopt_new(handle);
    }
    Ok(handle)
}

macro_rules! handle_field {
    ($name:ident $(<$t:ident>)?) => {
        // SAFETY: the value is exactly one `ShmHandle`, which is reported.
        unsafe impl$(<$t: TaskField>)? TaskField for $name$(<$t>)? {
            const HAS_HANDLES: bool = true;

            fn visit_handles(&self, visit: &mut dyn FnMut(ShmHandle)) {
                visit(self.handle);
            }
        }
        // SAFETY: `repr(transparent)` over `ShmHandle` (plus a zero-sized marker), which
        // is `Pod`; zero is the empty value.
        unsafe impl$(<$t: TaskField>)? bytemuck::Zeroable for $name$(<$t>)? {}
        // SAFETY: as above.
        unsafe impl$(<$t: TaskField>)? bytemuck::Pod for $name$(<$t>)? {}
        impl$(<$t>)? Clone for $name$(<$t>)? {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl$(<$t>)? Copy for $name$(<$t>)? {}
        impl$(<$t>)? Default for $name$(<$t>)? {
            fn default() -> Self {
                Self::from_handle(ShmHandle::EMPTY)
            }
        }
        impl$(<$t>)? PartialEq for $name$(<$t>)? {
            fn eq(&self, other: &Self) -> bool {
                self.handle == other.handle
            }
        }
        impl$(<$t>)? Eq for $name$(<$t>)? {}
        impl$(<$t>)? $name$(<$t>)? {
            const fn from_handle(handle: ShmHandle) -> Self {
                Self { handle, $(_elem: PhantomData::<$t>)? }
            }

            /// The handle, as stored in the task.
            pub fn handle(&self) -> ShmHandle {
                self.handle
            }

            /// `true` if this holds nothing (no block).
            pub fn is_empty(&self) -> bool {
                self.handle.is_empty()
            }

            /// A second reference to the same contents, e.g. to put one payload into two
            /// tasks; each task then owns one reference.
            pub fn clone_ref(&self) -> Result<Self, Error> {
                clone_ref(self.handle).map(Self::from_handle)
            }
        }
    };
}

/// Bytes in shared memory: an image, an encoded request body, a serialized blob. In a
/// task it is a 24-byte handle; the bytes themselves never move between stages.
///
/// ```
/// let bytes = aqueduct::ShmBytes::copy_from_slice(b"pixels")?;
/// assert_eq!(&*bytes.view()?, b"pixels");
/// # Ok::<(), aqueduct::Error>(())
/// ```
#[repr(transparent)]
pub struct ShmBytes {
    handle: ShmHandle,
}
handle_field!(ShmBytes);

impl ShmBytes {
    /// Copies `data` into a new block.
    pub fn copy_from_slice(data: &[u8]) -> Result<Self, Error> {
        Self::with_len(data.len(), |buf| buf.copy_from_slice(data))
    }

    /// A new block of `len` bytes written in place by `fill`, so a producer (a socket
    /// read, a decoder) can write straight into shared memory with no intermediate
    /// buffer. The bytes `fill` receives are unspecified; it should write all of them.
    pub fn with_len(len: usize, fill: impl FnOnce(&mut [u8])) -> Result<Self, Error> {
        alloc(len, fill).map(Self::from_handle)
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.handle.len()
    }

    /// Reads the bytes in place.
    pub fn view(&self) -> Result<ShmView<[u8]>, Error> {
        ShmView::new(self.handle, Ok)
    }

    /// Copies the bytes out.
    pub fn to_vec(&self) -> Result<Vec<u8>, Error> {
        Ok(self.view()?.to_vec())
    }
}

/// A UTF-8 string in shared memory.
///
/// ```
/// let label = aqueduct::ShmStr::new("cat")?;
/// assert_eq!(&*label.view()?, "cat");
/// # Ok::<(), aqueduct::Error>(())
/// ```
#[repr(transparent)]
pub struct ShmStr {
    handle: ShmHandle,
}
handle_field!(ShmStr);

impl ShmStr {
    /// Copies `text` into a new block.
    pub fn new(text: &str) -> Result<Self, Error> {
        alloc(text.len(), |buf| buf.copy_from_slice(text.as_bytes())).map(Self::from_handle)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.handle.len()
    }

    /// Reads the string in place (its UTF-8 is checked, since another process may have
    /// written it).
    pub fn view(&self) -> Result<ShmView<str>, Error> {
        ShmView::new(self.handle, |bytes| {
            std::str::from_utf8(bytes).map_err(|e| Error::InvalidHandle {
                reason: format!("ShmStr holds invalid UTF-8: {e}"),
            })
        })
    }
}

/// A vector of plain-data values in shared memory (`f32` features, `[u8; 3]` pixels, a
/// nested `#[task]` record without handles).
///
/// ```
/// let features = aqueduct::ShmVec::from_slice(&[0.5f32, 1.5])?;
/// assert_eq!(&*features.view()?, &[0.5, 1.5]);
/// # Ok::<(), aqueduct::Error>(())
/// ```
#[repr(transparent)]
pub struct ShmVec<T> {
    handle: ShmHandle,
    _elem: PhantomData<T>,
}
handle_field!(ShmVec<T>);

impl<T: TaskField> ShmVec<T> {
    const CHECKED: () = {
        assert!(
            !T::HAS_HANDLES,
            "ShmVec elements cannot hold shared-memory handles themselves"
        );
        assert!(size_of::<T>() > 0, "ShmVec elements cannot be zero-sized");
        assert!(
            align_of::<T>() <= 64,
            "ShmVec elements can be aligned to at most 64 bytes (the arena's block alignment)"
        );
    };

    /// Copies `items` into a new block.
    pub fn from_slice(items: &[T]) -> Result<Self, Error> {
        Self::with_len(items.len(), |buf| buf.copy_from_slice(items))
    }

    /// A new vector of `len` elements written in place by `fill` (initially unspecified
    /// values; every bit pattern of `T` is valid).
    pub fn with_len(len: usize, fill: impl FnOnce(&mut [T])) -> Result<Self, Error> {
        let () = Self::CHECKED;
        // A length whose bytes overflow asks for more than any arena holds: the arena
        // refuses it with its own figures.
        let bytes = len.saturating_mul(size_of::<T>());
        alloc(bytes, |buf| fill(bytemuck::cast_slice_mut(buf))).map(Self::from_handle)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.handle.len() / size_of::<T>()
    }

    /// Reads the elements in place.
    pub fn view(&self) -> Result<ShmView<[T]>, Error> {
        let () = Self::CHECKED;
        ShmView::new(self.handle, |bytes| {
            bytemuck::try_cast_slice(bytes).map_err(|e| Error::InvalidHandle {
                reason: format!("ShmVec block does not hold whole elements: {e}"),
            })
        })
    }
}

impl fmt::Debug for ShmBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmBytes")
            .field("len", &self.len())
            .finish()
    }
}

impl fmt::Debug for ShmStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.view() {
            Ok(text) => write!(f, "ShmStr({:?})", &*text),
            Err(_) => f.debug_struct("ShmStr").field("len", &self.len()).finish(),
        }
    }
}

impl<T> fmt::Debug for ShmVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmVec")
            .field("bytes", &self.handle.len())
            .finish()
    }
}
