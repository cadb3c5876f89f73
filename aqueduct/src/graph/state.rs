//! A processor's bookkeeping, shared by its handles and the tasks that drive its inputs:
//! inputs waiting to be dispatched, inputs in the flow, finished results waiting to be
//! taken, and the counters behind [`ProcessorStatus`].
//!
//! Inputs are dispatched to the flow only up to an in-flight limit, in feed order; the
//! rest wait here, so cancelling them is free and they never reach the flow. Each dispatched input is one
//! `Flow::process` call, driven by its own runtime task from a *slot* that cancelling
//! empties on the spot: dropping the call closes its reply channel at once, so a flow
//! that has not yet handed the input to a worker drops it unrun (see the flow runner's
//! `admit`), without racing the runtime's scheduling of an abort.

use crate::sync::lock;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::backlog::{Backlog, Queued};
use super::handle::{InputId, ResultHandle};
use super::options::Mode;
use super::status::{ProcessorState, ProcessorStatus};
use crate::flow::Flow;
use crate::shm::Owned;
use crate::{Error, Task};

type Outcome<Out> = Result<Owned<Out>, Error>;
type Work<Out> = Pin<Box<dyn Future<Output = Outcome<Out>> + Send>>;
type Slot<Out> = Arc<Mutex<Option<Work<Out>>>>;

/// An input in the flow.
struct Running<In: Task, Out: Task> {
    kept: Owned<In>,
    slot: Slot<Out>,
    abort: AbortHandle,
}

struct Book<In: Task, Out: Task> {
    state: ProcessorState,
    next_id: u64,
    queued: Backlog<In>,
    running: HashMap<u64, Running<In, Out>>,
    ready: VecDeque<ResultHandle<In, Out>>,
    fed: u64,
    ok: u64,
    failed: u64,
    cancelled: u64,
}

impl<In: Task, Out: Task> Book<In, Out> {
    fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.running.is_empty()
    }

    fn finish(&mut self, handle: ResultHandle<In, Out>) {
        if handle.is_ok() {
            self.ok += 1;
        } else if handle.is_cancelled() {
            self.cancelled += 1;
        } else {
            self.failed += 1;
        }
        self.ready.push_back(handle);
    }
}

/// Gives every processor a distinct key, which is what makes a graph keep one node per
/// processor however often it is added.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Shared<In: Task, Out: Task> {
    pub key: u64,
    pub name: String,
    pub mode: Mode,
    pub flow: Flow<In, Out>,
    timeout: Duration,
    limit: usize,
    book: Mutex<Book<In, Out>>,
    /// Wakes async waiters (and graph runs) on every change.
    pub notify: Arc<Notify>,
    /// Wakes blocking waiters on every change.
    changed: Condvar,
}

impl<In: Task, Out: Task> Shared<In, Out> {
    pub(crate) fn new(
        flow: Flow<In, Out>,
        name: String,
        mode: Mode,
        timeout: Duration,
        limit: usize,
    ) -> Self {
        let limit = match mode {
            Mode::Separate => limit.max(1),
            Mode::Sequential => 1,
        };
        Self {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            name,
            mode,
            flow,
            timeout,
            limit,
            book: Mutex::new(Book {
                state: ProcessorState::Running,
                next_id: 0,
                queued: Backlog::new(),
                running: HashMap::new(),
                ready: VecDeque::new(),
                fed: 0,
                ok: 0,
                failed: 0,
                cancelled: 0,
            }),
            notify: Arc::new(Notify::new()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book<In, Out>> {
        lock(&self.book)
    }

    fn wake(&self) {
        self.notify.notify_waiters();
        self.changed.notify_all();
    }

    /// Queues `task` at `priority`, kept twice: once for the flow and once for the
    /// result handle. If it is refused, it is dropped with its shared memory.
    pub(crate) fn feed(
        self: &Arc<Self>,
        task: Owned<In>,
        priority: usize,
    ) -> Result<InputId, Error> {
        let lanes = self.flow.priorities();
        if priority >= lanes {
            return Err(Error::InvalidPriority { priority, lanes });
        }
        let kept = task.try_clone()?;
        let mut book = self.lock();
        if book.state != ProcessorState::Running {
            return Err(Error::NotRunning);
        }
        let id = book.next_id;
        book.next_id += 1;
        book.fed += 1;
        book.queued.push(Queued {
            id,
            task,
            kept,
            priority,
        });
        self.pump(&mut book);
        drop(book);
        self.wake();
        Ok(InputId(id))
    }

    /// Dispatches queued inputs while there is room in flight: the highest priority
    /// first, in feed order within a priority.
    fn pump(self: &Arc<Self>, book: &mut Book<In, Out>) {
        while book.running.len() < self.limit {
            let Some(queued) = book.queued.pop_next() else {
                break;
            };
            let priority = queued.priority;
            let (flow, timeout, task) = (self.flow.clone(), self.timeout, queued.task);
            // `task` stays owned until the call runs, so a call dropped before its first
            // poll would still release the input's shared memory.
            let mut work: Work<Out> =
                Box::pin(async move { flow.process_owned(task, timeout, priority).await });
            if let Poll::Ready(outcome) = self.start(&mut work) {
                // Refused at once (the flow is stopped, say): finished already.
                book.finish(ResultHandle::new(InputId(queued.id), queued.kept, outcome));
                continue;
            }
            let slot: Slot<Out> = Arc::new(Mutex::new(Some(work)));
            let (shared, driven, id) = (Arc::clone(self), Arc::clone(&slot), queued.id);
            let join = self.flow.runtime().spawn(async move {
                if let Some(outcome) = drive(&driven).await {
                    shared.complete(id, outcome);
                }
            });
            book.running.insert(
                id,
                Running {
                    kept: queued.kept,
                    slot,
                    abort: join.abort_handle(),
                },
            );
        }
    }

    /// Polls a new call once, here and now, before its driving task is spawned: that
    /// first poll puts the input into the flow's queue, so inputs enter the flow in
    /// the order they are dispatched (spawned tasks start in no particular order).
    /// The driving task polls again as soon as it starts, with its own waker, so
    /// nothing is lost by this poll's waker doing nothing.
    fn start(&self, work: &mut Work<Out>) -> Poll<Outcome<Out>> {
        let _runtime = self.flow.runtime().enter();
        let waker = Waker::from(Arc::new(NoWake));
        work.as_mut().poll(&mut Context::from_waker(&waker))
    }

    fn complete(self: &Arc<Self>, id: u64, outcome: Outcome<Out>) {
        let mut book = self.lock();
        // Absent: cancelled while finishing; the outcome is dropped (and released).
        if let Some(running) = book.running.remove(&id) {
            book.finish(ResultHandle::new(InputId(id), running.kept, outcome));
            self.pump(&mut book);
            drop(book);
            self.wake();
        }
    }

    /// Cancels one pending input; `false` if it is not pending (finished, or unknown).
    pub(crate) fn cancel(self: &Arc<Self>, id: InputId) -> bool {
        let mut book = self.lock();
        let handle = if let Some(queued) = book.queued.remove(id.0) {
            cancelled(queued.id, queued.kept)
        } else if let Some(running) = book.running.remove(&id.0) {
            let handle = halt(id.0, running);
            self.pump(&mut book);
            handle
        } else {
            return false;
        };
        book.finish(handle);
        drop(book);
        self.wake();
        true
    }

    /// Cancels every pending input; returns how many.
    pub(crate) fn cancel_all(&self) -> usize {
        let mut book = self.lock();
        let mut handles: Vec<_> = book
            .running
            .drain()
            .map(|(id, running)| halt(id, running))
            .collect();
        handles.extend(
            book.queued
                .drain()
                .map(|queued| cancelled(queued.id, queued.kept)),
        );
        handles.sort_by_key(ResultHandle::id);
        let count = handles.len();
        handles.into_iter().for_each(|handle| book.finish(handle));
        drop(book);
        self.wake();
        count
    }

    pub(crate) fn take_ready(&self) -> Vec<ResultHandle<In, Out>> {
        self.lock().ready.drain(..).collect()
    }

    /// Nothing queued, in flight or ready.
    pub(crate) fn is_drained(&self) -> bool {
        let book = self.lock();
        book.is_idle() && book.ready.is_empty()
    }

    /// Moves from running to stopping; `false` if it was not running.
    pub(crate) fn begin_stop(&self) -> bool {
        let mut book = self.lock();
        if book.state != ProcessorState::Running {
            return false;
        }
        book.state = ProcessorState::Stopping;
        true
    }

    /// Starts a stop (see [`Self::begin_stop`]); whether it goes on. With another stop
    /// under way, a graceful one adds nothing and a kill goes on, cutting it short.
    pub(crate) fn stop_goes_on(&self, graceful: bool) -> bool {
        self.begin_stop() || !graceful
    }

    pub(crate) fn set_stopped(&self) {
        self.lock().state = ProcessorState::Stopped;
        self.wake();
    }

    /// Cancels everything and drops unread results: the last user handle is gone.
    pub(crate) fn abandon(&self) {
        self.begin_stop();
        self.cancel_all();
        let unread = std::mem::take(&mut self.lock().ready);
        drop(unread);
    }

    pub(crate) fn status(&self) -> ProcessorStatus {
        let book = self.lock();
        ProcessorStatus {
            state: book.state,
            queued: book.queued.len(),
            in_flight: book.running.len(),
            ready: book.ready.len(),
            fed: book.fed,
            ok: book.ok,
            failed: book.failed,
            cancelled: book.cancelled,
        }
    }

    /// The next finished result; `None` once nothing is pending or ready.
    pub(crate) async fn next(&self) -> Option<ResultHandle<In, Out>> {
        self.wait(next_ready).await
    }

    pub(crate) fn next_blocking(&self) -> Option<ResultHandle<In, Out>> {
        self.wait_blocking(next_ready)
    }

    /// Waits until nothing is queued or in flight.
    pub(crate) async fn idle(&self) {
        self.wait(|book| book.is_idle().then_some(())).await;
    }

    pub(crate) fn idle_blocking(&self) {
        self.wait_blocking(|book| book.is_idle().then_some(()));
    }

    /// The results of exactly `ids`, in id order, leaving other results in place.
    pub(crate) async fn collect(&self, ids: &[InputId]) -> Vec<ResultHandle<In, Out>> {
        let mut picker = Picker::new(ids);
        self.wait(|book| picker.pick(book)).await;
        picker.into_sorted()
    }

    pub(crate) fn collect_blocking(&self, ids: &[InputId]) -> Vec<ResultHandle<In, Out>> {
        let mut picker = Picker::new(ids);
        self.wait_blocking(|book| picker.pick(book));
        picker.into_sorted()
    }

    /// The results of those of `ids` that are ready now, in id order.
    pub(crate) fn collect_now(&self, ids: &[InputId]) -> Vec<ResultHandle<In, Out>> {
        let mut picker = Picker::new(ids);
        picker.pick(&mut self.lock());
        picker.into_sorted()
    }

    async fn wait<R>(&self, mut check: impl FnMut(&mut Book<In, Out>) -> Option<R>) -> R {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(found) = check(&mut self.lock()) {
                return found;
            }
            notified.await;
        }
    }

    fn wait_blocking<R>(&self, mut check: impl FnMut(&mut Book<In, Out>) -> Option<R>) -> R {
        let mut book = self.lock();
        loop {
            if let Some(found) = check(&mut book) {
                return found;
            }
            book = self
                .changed
                .wait(book)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

fn next_ready<In: Task, Out: Task>(
    book: &mut Book<In, Out>,
) -> Option<Option<ResultHandle<In, Out>>> {
    match book.ready.pop_front() {
        Some(handle) => Some(Some(handle)),
        None if book.is_idle() => Some(None),
        None => None,
    }
}

/// Gathers the results of a known set of inputs out of the ready queue.
struct Picker<In: Task, Out: Task> {
    wanted: HashSet<u64>,
    got: Vec<ResultHandle<In, Out>>,
}

impl<In: Task, Out: Task> Picker<In, Out> {
    fn new(ids: &[InputId]) -> Self {
        Self {
            wanted: ids.iter().map(|id| id.0).collect(),
            got: Vec::with_capacity(ids.len()),
        }
    }

    fn pick(&mut self, book: &mut Book<In, Out>) -> Option<()> {
        if book.ready.iter().any(|h| self.wanted.contains(&h.id().0)) {
            for handle in std::mem::take(&mut book.ready) {
                if self.wanted.remove(&handle.id().0) {
                    self.got.push(handle);
                } else {
                    book.ready.push_back(handle);
                }
            }
        }
        self.wanted.is_empty().then_some(())
    }

    fn into_sorted(mut self) -> Vec<ResultHandle<In, Out>> {
        self.got.sort_by_key(ResultHandle::id);
        self.got
    }
}

fn cancelled<In: Task, Out: Task>(id: u64, kept: Owned<In>) -> ResultHandle<In, Out> {
    ResultHandle::new(InputId(id), kept, Err(Error::Cancelled))
}

/// Stops an input in the flow: its call is dropped now, its driving task ends.
fn halt<In: Task, Out: Task>(id: u64, running: Running<In, Out>) -> ResultHandle<In, Out> {
    let work = lock(&running.slot).take();
    drop(work);
    running.abort.abort();
    cancelled(id, running.kept)
}

/// The waker of a call's first poll: the driving task's first poll follows anyway.
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// Polls the call in `slot` to completion; `None` if it was taken out (cancelled).
async fn drive<Out: Task>(slot: &Slot<Out>) -> Option<Outcome<Out>> {
    poll_fn(|cx| {
        let mut slot = lock(slot);
        let Some(work) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        match work.as_mut().poll(cx) {
            Poll::Ready(outcome) => {
                *slot = None;
                Poll::Ready(Some(outcome))
            }
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
