//! Custody of a task's shared memory, as a type.
//!
//! A task value holds [`ShmHandle`]s (inside its `ShmBytes`/`ShmStr`/`ShmVec` fields),
//! which are plain `Copy` data. Who must release the arena references they stand for is
//! expressed by wrapping the task: an [`Owned<T>`] holds exactly one reference per
//! handle and releases them in `Drop`, so a task dropped anywhere (expired, cancelled,
//! a flow halted, a queue closed, a caller gone) frees its memory exactly once. The
//! runtime carries tasks as `Owned<T>` from `process()` to the caller; a raw `T` exists
//! only where the handler is called ([`call_handler`]) and
//! where a task crosses to a worker process (the wire).
//!
//! [`ShmHandle`]: super::ShmHandle

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;

use super::ownership;
use crate::task::TaskField;
use crate::Error;

/// A task that owns the shared memory it refers to: returned by
/// [`crate::Flow::process`], carried by the runtime between stages.
///
/// Derefs to the task; when dropped, releases the shared-memory blocks its
/// `ShmBytes`/`ShmStr`/`ShmVec` fields refer to. For tasks without such fields it is a
/// plain wrapper.
#[repr(transparent)]
pub struct Owned<T: TaskField> {
    task: T,
}

impl<T: TaskField> Owned<T> {
    /// Takes ownership of `task`'s shared memory: dropping the `Owned` frees it. Use it
    /// for a task that was built (its `ShmBytes` allocated) but will not be submitted;
    /// a task given to `process()` is owned by the flow instead.
    pub fn new(task: T) -> Self {
        Self { task }
    }

    /// The task, with ownership of its shared memory passing to the caller: it is
    /// released when the task is given to `process()` again, and otherwise never.
    pub fn into_inner(self) -> T {
        ManuallyDrop::new(self).task
    }

    /// A copy that owns references of its own (one more per block), so both can be
    /// used and dropped independently: to submit a result again while keeping it, say.
    /// Fails if a handle does not name a live block.
    pub fn try_clone(&self) -> Result<Self, Error> {
        ownership::retain(&self.task)?;
        Ok(Self { task: self.task })
    }

    /// The tasks of `batch`, as they are laid out: for writing a batch to a worker
    /// process's request slots, which the worker reads while the batch still owns the
    /// blocks.
    pub(crate) fn as_tasks(batch: &[Self]) -> &[T] {
        // SAFETY: `Owned<T>` is `repr(transparent)` over `T`, so a slice of it has the
        // layout of a slice of `T`; the returned slice borrows `batch`, so the tasks
        // (and the references they own) outlive it, and shared access to `T` gives no
        // way to release them.
        unsafe { std::slice::from_raw_parts(batch.as_ptr().cast::<T>(), batch.len()) }
    }
}

impl<T: TaskField> Deref for Owned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.task
    }
}

impl<T: TaskField> Drop for Owned<T> {
    fn drop(&mut self) {
        ownership::release(&self.task);
    }
}

impl<T: TaskField + fmt::Debug> fmt::Debug for Owned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.task.fmt(f)
    }
}

/// Calls a handler on `inputs` (the handler boundary: it takes raw tasks) and gives
/// back its results owning their references: outputs retained, then the inputs'
/// references and whatever the call allocated and did not keep released. An output
/// holding a handle that is not live fails that task.
pub(crate) fn call_handler<I: TaskField, O: TaskField>(
    inputs: Vec<Owned<I>>,
    call: impl FnOnce(Vec<I>) -> Vec<Result<O, String>>,
) -> Vec<Result<Owned<O>, String>> {
    let before: Vec<super::ShmHandle> = inputs
        .iter()
        .flat_map(|task| ownership::handles_of(&**task))
        .collect();
    let inputs = inputs.into_iter().map(Owned::into_inner).collect();
    let (results, allocated) = ownership::scoped(|| call(inputs));
    let results = results
        .into_iter()
        .map(|result| {
            let output = result?;
            ownership::retain(&output).map_err(|error| {
                format!("output holds an unusable shared-memory handle: {error}")
            })?;
            Ok(Owned::new(output))
        })
        .collect();
    ownership::release_all(&before);
    ownership::release_all(&allocated);
    results
}

#[cfg(test)]
mod tests {
    use super::Owned;
    use crate::{Error, ShmBytes};

    fn is_freed(bytes: &ShmBytes) -> bool {
        matches!(bytes.view(), Err(Error::InvalidHandle { .. }))
    }

    #[test]
    fn each_owner_releases_its_reference_once_in_drop() {
        let bytes = ShmBytes::copy_from_slice(b"custody").unwrap();
        let first = Owned::new(bytes);
        let second = first.try_clone().unwrap();
        drop(first);
        assert!(!is_freed(&bytes), "the clone still holds a reference");
        assert_eq!(&*second.view().unwrap(), b"custody");
        drop(second);
        assert!(is_freed(&bytes), "the last owner freed the block");
    }

    #[test]
    fn into_inner_hands_the_reference_to_the_caller() {
        let bytes = ShmBytes::copy_from_slice(b"mine").unwrap();
        let raw = Owned::new(bytes).into_inner();
        assert!(!is_freed(&raw), "nothing released on the way out");
        drop(Owned::new(raw));
        assert!(is_freed(&raw));
    }

    #[test]
    fn a_batch_reads_as_its_tasks() {
        let batch = vec![Owned::new(7u64), Owned::new(9u64)];
        assert_eq!(Owned::as_tasks(&batch), &[7, 9]);
    }
}
