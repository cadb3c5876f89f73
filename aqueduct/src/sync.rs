//! Locking that survives a panic elsewhere, and the small shared-state helpers beside it.

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Counts itself in a count while it lives: of things under way (a flow's calls, the
/// dispatches asleep on a worker) that another thread reads to decide whether to act.
/// `SeqCst`, because such readers pair the count with a flag or a lock of their own.
#[derive(Debug)]
pub(crate) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    pub(crate) fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
