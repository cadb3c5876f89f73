//! How far a handler call of several tasks got, told as it goes: a per-task handler is
//! called once for a whole run or batch of tasks (its loop is in the shape adapters,
//! see [`crate::shapes`]), so only that loop knows which task runs now. A worker
//! process installs an [`Observer`] for each call; if the worker is lost mid-call, the
//! parent then knows which tasks finished (their results are already written), which
//! one was running, and which never began (they go again, not failed nor run twice).
//!
//! Anything else (a worker thread, a call nested in a handler) has no observer, and
//! costs one thread-local read per call.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

/// What a worker is told about the tasks of the handler call it runs.
pub(crate) trait Observer {
    /// A per-task loop starts: none of the call's tasks has begun yet, and each is now
    /// told of as it begins and ends.
    fn loop_starts(&self);
    /// The call's next task begins.
    fn task_begins(&self);
    /// The task that began last ended, with its output or its error.
    fn task_ended(&self, outcome: Result<&dyn Any, &str>);
    /// The per-task loop is over: whatever runs in the call from now on is not told of.
    fn loop_ended(&self);
}

thread_local! {
    /// The observer of the handler call this thread runs, until a per-task loop claims it.
    static OBSERVER: RefCell<Option<Rc<dyn Observer>>> = const { RefCell::new(None) };
}

/// Runs the handler call `call` with `observer` offered to its per-task loop.
pub(crate) fn observed<R>(observer: &Rc<dyn Observer>, call: impl FnOnce() -> R) -> R {
    /// Takes the offer back however the call ends (it catches panics, but a guard costs
    /// nothing and keeps a stale observer from the next call).
    struct Withdraw;
    impl Drop for Withdraw {
        fn drop(&mut self) {
            OBSERVER.with(|slot| slot.borrow_mut().take());
        }
    }
    OBSERVER.with(|slot| *slot.borrow_mut() = Some(observer.clone()));
    let _withdraw = Withdraw;
    call()
}

/// A per-task loop's hold on the observer of its call, if the call has one: claimed
/// once, so a loop nested in a handler is told nothing. Told that the loop ended when
/// dropped.
pub(crate) struct Claim(Option<Rc<dyn Observer>>);

impl Claim {
    /// Claims the call's observer, if any, and tells it the loop starts.
    pub(crate) fn take() -> Self {
        let observer = OBSERVER.with(|slot| slot.borrow_mut().take());
        if let Some(observer) = &observer {
            observer.loop_starts();
        }
        Self(observer)
    }

    /// Runs one task of the loop, telling the observer as it begins and ends.
    pub(crate) fn task<T: 'static>(
        &self,
        run: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let Some(observer) = &self.0 else {
            return run();
        };
        observer.task_begins();
        let result = run();
        let outcome = match &result {
            Ok(output) => Ok(output as &dyn Any),
            Err(message) => Err(message.as_str()),
        };
        observer.task_ended(outcome);
        result
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(observer) = self.0.take() {
            observer.loop_ended();
        }
    }
}
