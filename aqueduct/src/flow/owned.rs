//! A result handed back to the caller, owning the shared memory it refers to.

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;

use crate::shm::ownership;
use crate::task::TaskField;

/// A finished task returned by [`crate::Flow::process`]. Derefs to the task; when
/// dropped, releases the shared-memory blocks its `ShmBytes`/`ShmStr`/`ShmVec` fields
/// refer to. For tasks without such fields it is a plain wrapper.
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
