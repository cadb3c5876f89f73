//! What a processor hands back for every input it finished: the seed's
//! `BatchProcessorResultHandle` (a descriptor plus a completed future), as a value that
//! owns both the input and the outcome.

use std::fmt;

use crate::shm::Owned;
use crate::{Error, Task};

/// Identifies one input fed to one processor; ids grow in the order inputs were fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputId(pub(crate) u64);

impl InputId {
    /// The id as a number: the input's position in the processor's feed order.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for InputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A finished input: the input itself (the seed's *descriptor*) and how it ended.
///
/// Finished means one of: done (the output is here), failed (the [`Error`] says why:
/// handler error or panic, timeout, stopped flow, …) or cancelled ([`Error::Cancelled`],
/// before or during execution).
///
/// The handle owns the shared memory of both its input and its output and releases it
/// when dropped. To put the input or output into another task that will be fed to a
/// processor, use [`ResultHandle::input_owned`] / [`ResultHandle::output_owned`], which
/// take their own references; a plain copy (`*handle.input()`) of a task holding
/// `ShmBytes`/`ShmStr`/`ShmVec` fields would be released twice.
pub struct ResultHandle<In: Task, Out: Task> {
    id: InputId,
    input: Owned<In>,
    outcome: Result<Owned<Out>, Error>,
}

impl<In: Task, Out: Task> ResultHandle<In, Out> {
    pub(crate) fn new(id: InputId, input: Owned<In>, outcome: Result<Owned<Out>, Error>) -> Self {
        Self { id, input, outcome }
    }

    /// Which input this was, in its processor's feed order.
    pub fn id(&self) -> InputId {
        self.id
    }

    /// The input as it was fed.
    pub fn input(&self) -> &In {
        &self.input
    }

    /// The output, or why there is none: the seed's `future.result()`.
    pub fn result(&self) -> Result<&Out, &Error> {
        self.outcome.as_ref().map(|output| &**output)
    }

    /// The output, if the input was processed successfully.
    pub fn output(&self) -> Option<&Out> {
        self.result().ok()
    }

    /// Why the input has no output (failure or cancellation), or `None` if it has one:
    /// the seed's `future.exception()`.
    pub fn error(&self) -> Option<&Error> {
        self.result().err()
    }

    /// Processed successfully.
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// Failed: an error other than cancellation.
    pub fn is_failed(&self) -> bool {
        matches!(&self.outcome, Err(error) if *error != Error::Cancelled)
    }

    /// Cancelled before it finished.
    pub fn is_cancelled(&self) -> bool {
        matches!(&self.outcome, Err(Error::Cancelled))
    }

    /// A copy of the input that owns its own shared-memory references, to feed to a
    /// processor (a retry, say) while this handle keeps its copy.
    pub fn input_owned(&self) -> Result<In, Error> {
        self.input.try_clone().map(Owned::into_inner)
    }

    /// A copy of the output that owns its own shared-memory references, to feed to a
    /// processor; or the failure or cancellation.
    pub fn output_owned(&self) -> Result<Out, Error> {
        let output = self.outcome.as_ref().map_err(Error::clone)?;
        output.try_clone().map(Owned::into_inner)
    }

    /// The outcome, taking it out of the handle.
    pub fn into_result(self) -> Result<Owned<Out>, Error> {
        self.outcome
    }

    /// The input and the outcome, taking them out of the handle.
    pub fn into_parts(self) -> (Owned<In>, Result<Owned<Out>, Error>) {
        (self.input, self.outcome)
    }
}

impl<In: Task, Out: Task> fmt::Debug for ResultHandle<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ResultHandle");
        debug.field("id", &self.id);
        match &self.outcome {
            Ok(_) => debug.field("outcome", &"ok"),
            Err(error) => debug.field("outcome", error),
        };
        debug.finish_non_exhaustive()
    }
}
