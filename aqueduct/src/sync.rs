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
