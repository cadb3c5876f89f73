//! What a worker process records of the request it runs, as it goes: which of its
//! tasks have begun, and each result as soon as it is known, for the parent to read if
//! the worker is lost mid-request (see [`super::results::take_lost`]).

use std::any::Any;
use std::cell::Cell;
use std::marker::PhantomData;

use super::channel::Region;
use super::wire::{self, Geometry, Outcome};
use crate::progress::Observer;
use crate::Stage;

/// What a worker records of the request it runs as it goes, so that if it is lost
/// mid-request the parent can tell its tasks apart (see [`wire::begun`]): those whose
/// results are written, those that may have run, and those that never began, which go
/// again rather than fail or run twice.
///
/// Before each handler call, the call's tasks are recorded as begun. A per-task
/// handler's loop (one call for a whole run of tasks, see [`crate::progress`]) then
/// narrows that to the tasks it has begun, and its results are written as each task
/// ends rather than after the call.
pub(super) struct RequestProgress<S> {
    ctl: &'static Region,
    geometry: Geometry,
    lane: Cell<usize>,
    seq: Cell<u64>,
    /// The request's tasks before the running call, and to its end.
    call_start: Cell<usize>,
    call_end: Cell<usize>,
    /// The running call's next task to begin, while a per-task loop tells of them.
    next: Cell<usize>,
    /// The request's first `written` results are written. A per-task loop writes each
    /// result as its task ends while they follow on from these (until one cannot be: an
    /// output of another type than the stage's, from a hand-written handler).
    written: Cell<usize>,
    _stage: PhantomData<fn() -> S>,
}

impl<S: Stage> RequestProgress<S> {
    pub(super) fn new(ctl: &'static Region, geometry: Geometry) -> Self {
        Self {
            ctl,
            geometry,
            lane: Cell::new(0),
            seq: Cell::new(0),
            call_start: Cell::new(0),
            call_end: Cell::new(0),
            next: Cell::new(0),
            written: Cell::new(0),
            _stage: PhantomData,
        }
    }

    /// Request `seq`, in `lane`, starts.
    pub(super) fn start(&self, lane: usize, seq: u64) {
        self.lane.set(lane);
        self.seq.set(seq);
        self.call_end.set(0);
        self.written.set(0);
    }

    /// A handler call of the request's next `count` tasks starts.
    pub(super) fn call_begins(&self, count: usize) {
        let start = self.call_end.get();
        self.call_start.set(start);
        self.call_end.set(start + count);
        self.set_begun(start + count);
    }

    /// Writes result `index` of the request, unless it was written as its task ended.
    pub(super) fn result(&self, index: usize, outcome: Outcome<'_>) {
        if index < self.written.get() {
            return;
        }
        wire::write_result(
            self.ctl,
            &self.geometry,
            self.lane.get(),
            self.seq.get(),
            index,
            outcome,
        );
        self.written.set(index + 1);
    }

    fn set_begun(&self, begun: usize) {
        let (lane, seq) = (self.lane.get(), self.seq.get());
        wire::set_begun(self.ctl, &self.geometry, lane, seq, begun);
    }
}

impl<S: Stage> Observer for RequestProgress<S> {
    fn loop_starts(&self) {
        let start = self.call_start.get();
        self.next.set(start);
        self.set_begun(start);
    }

    fn task_begins(&self) {
        self.set_begun((self.next.get() + 1).min(self.call_end.get()));
    }

    fn task_ended(&self, outcome: Result<&dyn Any, &str>) {
        let index = self.next.get();
        self.next.set(index + 1);
        if index != self.written.get() || index >= self.call_end.get() {
            return;
        }
        let outcome = match outcome {
            Ok(output) => match output.downcast_ref::<S::Output>() {
                Some(output) => Outcome::Output(bytemuck::bytes_of(output)),
                // Not written, so no later task's result is written as it ends either.
                None => return,
            },
            Err(message) => Outcome::Error(message),
        };
        self.result(index, outcome);
    }

    fn loop_ended(&self) {
        self.set_begun(self.call_end.get());
    }
}
