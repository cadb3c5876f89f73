//! Locking that survives a panic elsewhere.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning: the runtime never leaves shared state half-updated
/// across a panic point, so a poisoned lock only means another thread panicked elsewhere
/// (often in user code), and the data is still consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A value on cache lines of its own, so that writes to it (an atomic every call
/// updates, say) do not slow down reads of its neighbours on other cores. 128 bytes:
/// x86 fetches lines in adjacent pairs.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
