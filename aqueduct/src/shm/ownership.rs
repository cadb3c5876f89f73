//! Reference accounting: the primitives behind [`super::Owned`] and the handler
//! boundary ([`super::owned::call_handler`]).
//!
//! The rule: a task value in the runtime's custody (an `Owned`) owns one arena
//! reference per handle it holds. Around a handler call the runtime retains the
//! outputs' handles, then releases the inputs' handles and everything the handler
//! allocated (its *scope*), so a handle passed through is unchanged, a new one kept in
//! an output survives, and anything dropped or replaced is freed.

use std::cell::RefCell;

use super::arena::Arena;
use super::ShmHandle;
use crate::task::{for_each_handle, TaskField};
use crate::Error;

thread_local! {
    static SCOPE: RefCell<Option<Vec<ShmHandle>>> = const { RefCell::new(None) };
}

/// Records a fresh allocation: inside a handler call it belongs to the call's scope.
pub(crate) fn adopt_new(handle: ShmHandle) {
    SCOPE.with(|scope| {
        if let Some(list) = scope.borrow_mut().as_mut() {
            list.push(handle);
        }
    });
}

/// Runs `f` with allocations recorded; returns its result and what it allocated.
pub(crate) fn scoped<R>(f: impl FnOnce() -> R) -> (R, Vec<ShmHandle>) {
    let outer = SCOPE.with(|scope| scope.replace(Some(Vec::new())));
    let result = f();
    let allocated = SCOPE.with(|scope| scope.replace(outer)).unwrap_or_default();
    (result, allocated)
}

/// All handles held by `task`.
pub(crate) fn handles_of<T: TaskField>(task: &T) -> Vec<ShmHandle> {
    let mut handles = Vec::new();
    for_each_handle(task, &mut |h| handles.push(h));
    handles
}

/// Checks that every handle of `task` names a live block.
pub(crate) fn validate<T: TaskField>(task: &T) -> Result<(), Error> {
    if !T::HAS_HANDLES {
        return Ok(());
    }
    let handles = handles_of(task);
    let arena = match Arena::global() {
        Ok(arena) => arena,
        Err(_) if handles.iter().all(ShmHandle::is_empty) => return Ok(()),
        Err(error) => return Err(error),
    };
    handles
        .iter()
        .try_for_each(|handle| arena.check_live(handle))
}

/// Adds one reference per handle of `task`; on failure, none.
pub(crate) fn retain<T: TaskField>(task: &T) -> Result<(), Error> {
    if !T::HAS_HANDLES {
        return Ok(());
    }
    let handles = handles_of(task);
    if handles.iter().all(ShmHandle::is_empty) {
        return Ok(());
    }
    let arena = Arena::global()?;
    for (i, handle) in handles.iter().enumerate() {
        if let Err(error) = arena.retain(handle) {
            handles[..i].iter().for_each(|h| arena.release(h));
            return Err(error);
        }
    }
    Ok(())
}

/// Drops one reference per handle of `task`.
pub(crate) fn release<T: TaskField>(task: &T) {
    if T::HAS_HANDLES {
        release_all(&handles_of(task));
    }
}

/// Drops one reference per handle.
pub(crate) fn release_all(handles: &[ShmHandle]) {
    if handles.iter().all(ShmHandle::is_empty) {
        return;
    }
    if let Ok(arena) = Arena::global() {
        handles.iter().for_each(|h| arena.release(h));
    }
}
