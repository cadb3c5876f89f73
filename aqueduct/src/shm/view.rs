//! Read access to a block: a guard that holds a reference for as long as it lives.

use std::fmt;
use std::ops::Deref;

use super::arena::Arena;
use super::ShmHandle;
use crate::Error;

/// Borrowed contents of a `ShmBytes`, `ShmStr` or `ShmVec<T>`: derefs to `[u8]`, `str`
/// or `[T]`. While a view lives, its block cannot be freed or reused, even if every task
/// holding the handle is dropped.
pub struct ShmView<T: ?Sized + 'static> {
    // Points into the arena mapping, which lives for the rest of the process; it is only
    // handed out bounded by `&self`.
    data: &'static T,
    handle: ShmHandle,
}

impl<T: ?Sized + 'static> ShmView<T> {
    /// Retains `handle` and views its bytes through `cast`.
    pub(crate) fn new(
        handle: ShmHandle,
        cast: impl FnOnce(&'static [u8]) -> Result<&'static T, Error>,
    ) -> Result<Self, Error> {
        if handle.is_empty() {
            return Ok(Self {
                data: cast(&[])?,
                handle,
            });
        }
        let arena = Arena::global()?;
        arena.retain(&handle)?;
        let bytes = match arena.bytes(&handle) {
            Ok(bytes) => bytes,
            Err(error) => {
                arena.release(&handle);
                return Err(error);
            }
        };
        match cast(bytes) {
            Ok(data) => Ok(Self { data, handle }),
            Err(error) => {
                arena.release(&handle);
                Err(error)
            }
        }
    }
}

impl<T: ?Sized + 'static> Deref for ShmView<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.data
    }
}

impl<T: ?Sized + 'static> Drop for ShmView<T> {
    fn drop(&mut self) {
        super::ownership::release_all(&[self.handle]);
    }
}

impl<T: ?Sized + fmt::Debug + 'static> fmt::Debug for ShmView<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.data.fmt(f)
    }
}

impl<T: ?Sized + AsRef<[u8]> + 'static> AsRef<[u8]> for ShmView<T> {
    fn as_ref(&self) -> &[u8] {
        self.data.as_ref()
    }
}
