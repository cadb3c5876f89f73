//! A stage's input queue: one bounded lane per priority (`FlowBuilder::priorities`).
//!
//! The stage's runner takes the first task of a batch from the highest non-empty lane and
//! fills the batch from the highest lanes first, so a queued urgent task overtakes queued
//! normal ones at every stage (a batch already running is not pre-empted). A lower lane is
//! never starved: each time a batch starts from a higher lane while it holds tasks, it is
//! *passed over* once, and a lane passed over [`FAIR_SHARE`] times starts the next batch.
//! So a waiting low-priority task starts within `FAIR_SHARE` batches per lane above it.
//!
//! The lanes sit behind one lock, so that a batch of tasks goes in ([`QueueTx::send_all`],
//! a job delivering its results) and comes out ([`QueueRx::take_up_to`], the runner
//! filling a batch) for one lock and one wake-up, not one each per task: under load the
//! queues between stages carry every task of a flow, and their per-task cost was a tenth
//! of the parent's time in a pipeline of no-op stages.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use tokio::sync::Notify;

use crate::sync::lock;

/// How many batches may start from higher lanes while a lower lane holds tasks, before
/// the lower lane starts one.
pub(crate) const FAIR_SHARE: u32 = 8;

/// The most priority lanes a flow may have: every take looks through the lanes, and
/// each stage keeps a queue per lane.
pub(crate) const MAX_LANES: usize = 256;

/// Why a task was not queued without waiting; the task comes back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// Its lane is full.
    Full(T),
    /// The queue is closed.
    Closed(T),
}

/// The queue was closed: the task comes back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed<T>(pub T);

/// A queue of `lanes` lanes of `capacity` tasks each.
pub(crate) fn bounded<T>(lanes: usize, capacity: usize) -> (QueueTx<T>, QueueRx<T>) {
    let lanes = lanes.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(Lanes {
            lanes: (0..lanes).map(|_| VecDeque::new()).collect(),
            lines: (0..lanes).map(|_| VecDeque::new()).collect(),
            next_ticket: 0,
            passed_over: vec![0; lanes].into(),
            closed: false,
        }),
        capacity: capacity.max(1),
        queued: AtomicUsize::new(0),
        arrived: Notify::new(),
    });
    let tx = QueueTx {
        shared: Arc::new(Senders(shared.clone())),
    };
    (tx, QueueRx { shared })
}

/// What the two sides share.
struct Shared<T> {
    state: Mutex<Lanes<T>>,
    /// Tasks each lane holds at most.
    capacity: usize,
    /// Tasks queued in all lanes; written under the lock, read without it.
    queued: AtomicUsize,
    /// Wakes the receiver waiting for a task.
    arrived: Notify,
}

struct Lanes<T> {
    lanes: Box<[VecDeque<T>]>,
    /// Per lane: the senders waiting for room, first come first. A sender arriving while
    /// a lane has a line joins it: room goes to senders in the order they came, so a
    /// caller that waited is never overtaken by one that did not (a graph processor's
    /// inputs enter in feed order).
    lines: Box<[VecDeque<InLine<T>>]>,
    next_ticket: u64,
    /// Per lane: batches started from a higher lane while this one held tasks.
    passed_over: Box<[u32]>,
    closed: bool,
}

impl<T> Lanes<T> {
    fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    /// The lane of `priority`.
    fn lane(&self, priority: usize) -> usize {
        priority.min(self.lanes.len() - 1)
    }

    /// Whether a sender arriving now may queue in `lane` at once: it has room, and
    /// nobody is waiting for room in it.
    fn open_to_newcomers(&self, lane: usize, capacity: usize) -> bool {
        self.lanes[lane].len() < capacity && self.lines[lane].is_empty()
    }

    /// Moves the tasks of the senders whose turn has come into their lanes: from the
    /// front of each line, as many as the lane has room for, each marked as gone in.
    /// Done by whoever made the room, under the lock, so the lane is refilled at once;
    /// the senders that wait for their turn are woken (once each, to return) through
    /// what this gives back, once the lock is released, so that a run of wake-ups does
    /// not hold every other sender and the runner behind the lock.
    #[must_use = "the admitted senders must be woken, after the lock is released"]
    fn admit_waiting(&mut self, capacity: usize, queued: &AtomicUsize) -> Wakeups {
        let mut admitted = Wakeups(Vec::new());
        // Closed: nothing more goes in; the waiting senders take their tasks back.
        if self.closed {
            return admitted;
        }
        for (lane, line) in self.lanes.iter_mut().zip(&mut *self.lines) {
            while lane.len() < capacity {
                let Some(waiting) = line.pop_front() else {
                    break;
                };
                lane.push_back(waiting.item);
                queued.fetch_add(1, Ordering::Release);
                if let Some(turn) = waiting.turn {
                    turn.admitted.store(true, Ordering::Release);
                    admitted.0.push(turn);
                }
            }
        }
        admitted
    }
}

/// Senders waiting for their turn, to be woken once the queue's lock is released: those
/// whose tasks went in, or (as the queue closes) those that take their tasks back.
struct Wakeups(Vec<Arc<Turn>>);

impl Wakeups {
    fn wake(self) {
        self.0.iter().for_each(|turn| turn.waker.wake());
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A sender waiting for room: its ticket, its task, and its own wake-up, if it waits
/// for its turn (see [`QueueTx::stand_in_line`] for one that does not).
struct InLine<T> {
    ticket: u64,
    item: T,
    turn: Option<Arc<Turn>>,
}

/// How a sender waiting for room learns that its task went in, or that the queue closed
/// with the task still in line, without taking the queue's lock.
#[derive(Default)]
struct Turn {
    admitted: AtomicBool,
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl<T> Shared<T> {
    /// Closes the queue: nothing more can be sent; what is queued can still be taken.
    /// Returns the tasks that stood in line without a wait of their own (see
    /// [`QueueTx::stand_in_line`]), for the closer to answer.
    fn close(&self) -> Vec<T> {
        let mut state = lock(&self.state);
        state.closed = true;
        // Every sender waiting for its turn takes its task back; the others' tasks
        // leave the line here.
        let mut turns = Wakeups(Vec::new());
        let mut unclaimed = Vec::new();
        for line in state.lines.iter_mut() {
            for waiting in std::mem::take(line) {
                match waiting.turn {
                    Some(turn) => {
                        turn.closed.store(true, Ordering::Release);
                        turns.0.push(turn.clone());
                        line.push_back(InLine {
                            turn: Some(turn),
                            ..waiting
                        });
                    }
                    None => unclaimed.push(waiting.item),
                }
            }
        }
        drop(state);
        turns.wake();
        // So must the receiver.
        self.arrived.notify_one();
        self.arrived.notify_waiters();
        unclaimed
    }
}

/// The sending side; clones share the lanes. The queue closes when the last is dropped.
#[doc(hidden)]
pub struct QueueTx<T> {
    shared: Arc<Senders<T>>,
}

/// The senders' share: closes the queue when the last sender goes.
struct Senders<T>(Arc<Shared<T>>);

impl<T> Drop for Senders<T> {
    fn drop(&mut self) {
        // Nobody is left to answer for the tasks in line: they drop (their callers
        // learn it from their answer channels).
        drop(self.0.close());
    }
}

impl<T> std::fmt::Debug for QueueTx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueTx")
            .field("capacity", &self.shared.0.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> QueueTx<T> {
    fn queue(&self) -> &Shared<T> {
        &self.shared.0
    }

    /// Queues `item` in the lane of `priority` if it has room.
    pub(crate) fn try_send(&self, priority: usize, item: T) -> Result<(), TrySendError<T>> {
        let queue = self.queue();
        let mut state = lock(&queue.state);
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        let lane = state.lane(priority);
        if !state.open_to_newcomers(lane, queue.capacity) {
            return Err(TrySendError::Full(item));
        }
        state.lanes[lane].push_back(item);
        queue.queued.fetch_add(1, Ordering::Release);
        drop(state);
        queue.arrived.notify_one();
        Ok(())
    }

    /// Queues `item` in the lane of `priority`, waiting for room.
    pub(crate) async fn send(&self, priority: usize, item: T) -> Result<(), Closed<T>> {
        match self.try_send(priority, item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(item)) => Err(Closed(item)),
            Err(TrySendError::Full(item)) => self.join_line(priority, item)?.await,
        }
    }

    /// Queues every item, each in the lane of its priority (`priority_of`), in order,
    /// waiting for room where a lane is full. Those that fit go in under one lock, with
    /// one wake-up for the receiver. A closed queue drops the items not yet queued.
    pub(crate) async fn send_all(
        &self,
        items: impl IntoIterator<Item = T>,
        priority_of: impl Fn(&T) -> usize,
    ) {
        let queue = self.queue();
        let mut items = items.into_iter();
        let mut blocked = None;
        let mut sent = 0;
        {
            let mut state = lock(&queue.state);
            if state.closed {
                return;
            }
            for item in items.by_ref() {
                let lane = state.lane(priority_of(&item));
                if !state.open_to_newcomers(lane, queue.capacity) {
                    blocked = Some(item);
                    break;
                }
                state.lanes[lane].push_back(item);
                sent += 1;
            }
            queue.queued.fetch_add(sent, Ordering::Release);
        }
        if sent != 0 {
            queue.arrived.notify_one();
        }
        // A full lane: the rest go one at a time, in order, as room is made.
        if let Some(blocked) = blocked {
            Box::pin(async move {
                for item in std::iter::once(blocked).chain(items) {
                    let priority = priority_of(&item);
                    if self.send(priority, item).await.is_err() {
                        return;
                    }
                }
            })
            .await;
        }
    }

    /// Puts `item` at the back of its lane's line, to go into the lane when its turn
    /// comes (see [`Lanes::admit_waiting`]); the wait is the returned future, which
    /// gives the task back if the queue closes first. Dropping it leaves the line.
    pub(crate) fn join_line(&self, priority: usize, item: T) -> Result<RoomWait<'_, T>, Closed<T>> {
        let turn = Arc::new(Turn::default());
        let spot = self.enter_line(priority, item, Some(turn.clone()))?;
        Ok(RoomWait {
            queue: self.queue(),
            spot,
            turn,
        })
    }

    /// Whether a task of `priority` would have to wait for room (its lane is full, or
    /// others wait for room in it).
    pub(crate) fn is_full(&self, priority: usize) -> bool {
        let queue = self.queue();
        let state = lock(&queue.state);
        !state.open_to_newcomers(state.lane(priority), queue.capacity)
    }

    /// Closes every lane: nothing more can be sent; what is queued can still be taken.
    /// Returns the tasks that stood in line (see [`QueueTx::stand_in_line`]), for the
    /// closer to answer.
    pub(crate) fn close(&self) -> Vec<T> {
        self.queue().close()
    }

    /// Puts `item` at the back of its lane's line, to go into the lane when its turn
    /// comes, like [`QueueTx::join_line`], but without a wait: nobody is told when it
    /// goes in. For a sender that waits for something else anyway (a caller, for its
    /// answer), so that many callers waiting for room cost no wake-up, future or timer
    /// each. The sender that gives up takes its task out with [`QueueTx::leave_line`];
    /// a task still in line when the queue closes comes back from [`QueueTx::close`].
    pub(crate) fn stand_in_line(&self, priority: usize, item: T) -> Result<Spot, Closed<T>> {
        self.enter_line(priority, item, None)
    }

    /// Puts `item` at the back of its lane's line, with `turn` to tell it when it goes
    /// in (if any), and lets in whoever room was made for meanwhile (this sender too).
    fn enter_line(
        &self,
        priority: usize,
        item: T,
        turn: Option<Arc<Turn>>,
    ) -> Result<Spot, Closed<T>> {
        let queue = self.queue();
        let mut state = lock(&queue.state);
        if state.closed {
            return Err(Closed(item));
        }
        let lane = state.lane(priority);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.lines[lane].push_back(InLine { ticket, item, turn });
        // Room made since the sender found the lane full is not lost.
        let admitted = state.admit_waiting(queue.capacity, &queue.queued);
        let went_in = !matches!(state.lines[lane].back(), Some(last) if last.ticket == ticket);
        drop(state);
        if went_in || !admitted.is_empty() {
            queue.arrived.notify_one();
        }
        admitted.wake();
        Ok(Spot { lane, ticket })
    }

    /// Takes the task at `spot` out of its line: `Some` if it was still waiting there,
    /// `None` if it went into the lane (or came back when the queue closed).
    pub(crate) fn leave_line(&self, spot: Spot) -> Option<T> {
        let mut state = lock(&self.queue().state);
        let left = take_out(&mut state, spot);
        drop(state);
        left
    }
}

/// A sender's wait for room in a lane's line (a job delivering into a full next stage;
/// a flow's callers stand in line instead, see [`QueueTx::stand_in_line`]): resolves
/// once its task went in, or gives the task back if the queue closed first. Small and
/// polled in place, with a waker slot rather than a `Notify`. A wait dropped before the
/// task went in leaves the line, and the task is dropped with it.
#[must_use = "the task waits in line only while this is kept"]
pub(crate) struct RoomWait<'a, T> {
    queue: &'a Shared<T>,
    spot: Spot,
    turn: Arc<Turn>,
}

/// Where a task stands in its lane's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spot {
    lane: usize,
    ticket: u64,
}

/// Takes the entry at `spot` out of its line, if it is still there. A line is in ticket
/// order (senders join at the back; entries leave from anywhere, keeping the order), so
/// it is found by bisection: with many callers waiting, a scan per sender made waiting
/// for room quadratic.
fn take_out<T>(state: &mut Lanes<T>, spot: Spot) -> Option<T> {
    let line = &mut state.lines[spot.lane];
    let at = line
        .binary_search_by_key(&spot.ticket, |waiting| waiting.ticket)
        .ok()?;
    line.remove(at).map(|waiting| waiting.item)
}

impl<T> Future for RoomWait<'_, T> {
    type Output = Result<(), Closed<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let turn = &*self.turn;
        // Registered before the second look, so a word given in between wakes it.
        for look in 0..2 {
            if turn.admitted.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            if turn.closed.load(Ordering::Acquire) {
                let mut state = lock(&self.queue.state);
                if let Some(item) = take_out(&mut state, self.spot) {
                    return Poll::Ready(Err(Closed(item)));
                }
            }
            if look == 0 {
                turn.waker.register(cx.waker());
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for RoomWait<'_, T> {
    fn drop(&mut self) {
        // Wakeups (the common end): the entry left the line when its task went in.
        if self.turn.admitted.load(Ordering::Acquire) {
            return;
        }
        let mut state = lock(&self.queue.state);
        let left = take_out(&mut state, self.spot);
        drop(state);
        drop(left);
    }
}

/// The receiving side, used by the stage's runner alone (clones for counting only).
pub(crate) struct QueueRx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueRx<T> {
    /// Tasks queued in all lanes.
    pub(crate) fn len(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A counter of the queued tasks, for statistics.
    pub(crate) fn counter(&self) -> impl Fn() -> usize + Send + Sync + 'static
    where
        T: Send + 'static,
    {
        let shared = self.shared.clone();
        move || shared.queued.load(Ordering::Acquire)
    }

    /// Senders waiting for room, in all lanes (the tests' look at a queue).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.shared.state)
            .lines
            .iter()
            .map(VecDeque::len)
            .sum()
    }

    /// A queued task, from the highest non-empty lane (the tests' look at a queue).
    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<T> {
        // Through the runner's own way of taking tasks, so the tests see that path.
        let mut one = Vec::with_capacity(1);
        self.take_up_to(1, &mut one);
        one.pop()
    }

    /// Moves up to `max` queued tasks into `batch`, from the highest lanes first (for
    /// filling a batch), under one lock; how many.
    pub(crate) fn take_up_to(&self, max: usize, batch: &mut Vec<T>) -> usize {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        let mut taken = 0;
        for lane in state.lanes.iter_mut().rev() {
            let count = lane.len().min(max - taken);
            batch.extend(lane.drain(..count));
            taken += count;
            if taken == max {
                break;
            }
        }
        shared.queued.fetch_sub(taken, Ordering::Release);
        if taken != 0 {
            let admitted = state.admit_waiting(shared.capacity, &shared.queued);
            drop(state);
            admitted.wake();
        }
        taken
    }

    /// The first task of a batch: from a lane passed over too often, else from the
    /// highest non-empty lane. `None` once the queue is closed and empty.
    pub(crate) async fn recv(&self) -> Option<T> {
        loop {
            if let Some(item) = self.take_first() {
                return Some(item);
            }
            if !self.ready().await {
                return None;
            }
        }
    }

    /// Resolves once a task is queued (`true`), or the queue is closed and empty
    /// (`false`), without taking a task.
    pub(crate) async fn ready(&self) -> bool {
        let shared = &*self.shared;
        loop {
            let arrived = shared.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            // Registered before looking, so an arrival in between is not missed.
            arrived.as_mut().enable();
            {
                let state = lock(&shared.state);
                if state.len() != 0 {
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            arrived.await;
        }
    }

    fn take_first(&self) -> Option<T> {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        let Lanes {
            lanes, passed_over, ..
        } = &mut *state;
        let mut taken = None;
        for (lane, passed) in lanes.iter_mut().zip(passed_over.iter_mut()) {
            if *passed >= FAIR_SHARE {
                *passed = 0;
                if let Some(item) = lane.pop_front() {
                    taken = Some(item);
                    break;
                }
            }
        }
        if taken.is_none() {
            let index = (0..lanes.len()).rev().find(|&i| !lanes[i].is_empty())?;
            taken = lanes[index].pop_front();
            passed_over[index] = 0;
            for (lane, passed) in lanes[..index].iter().zip(passed_over.iter_mut()) {
                if !lane.is_empty() {
                    *passed += 1;
                }
            }
        }
        shared.queued.fetch_sub(1, Ordering::Release);
        let admitted = state.admit_waiting(shared.capacity, &shared.queued);
        drop(state);
        admitted.wake();
        taken
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        // Nobody takes from the queue any more: it closes, and what it held is dropped
        // now (each task's caller is told), not when the last sender goes; so are the
        // tasks that stood in line.
        let unclaimed = self.shared.close();
        let held: Vec<VecDeque<T>> = {
            let mut state = lock(&self.shared.state);
            let held = state.lanes.iter_mut().map(std::mem::take).collect();
            self.shared.queued.store(0, Ordering::Release);
            held
        };
        drop(held);
        drop(unclaimed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_highest_lane_goes_first() {
        let (tx, rx) = bounded(3, 8);
        tx.try_send(0, "low").unwrap();
        tx.try_send(2, "high").unwrap();
        tx.try_send(1, "mid").unwrap();
        assert_eq!(rx.recv().await, Some("high"));
        assert_eq!(rx.try_recv(), Some("mid"));
        assert_eq!(rx.try_recv(), Some("low"));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_low_lane_starts_a_batch_after_being_passed_over_fair_share_times() {
        let (tx, rx) = bounded(2, 64);
        tx.try_send(0, 0).unwrap();
        for n in 1..=20 {
            tx.try_send(1, n).unwrap();
        }
        let mut firsts = Vec::new();
        for _ in 0..=FAIR_SHARE {
            firsts.push(rx.recv().await.unwrap());
        }
        assert_eq!(
            firsts.iter().position(|&first| first == 0),
            Some(FAIR_SHARE as usize),
            "{firsts:?}"
        );
    }

    #[tokio::test]
    async fn ready_waits_for_a_task_without_taking_it_and_sees_the_queue_close() {
        let (tx, rx) = bounded::<u32>(1, 4);
        let waiting = tokio::spawn(async move { (rx.ready().await, rx) });
        tokio::task::yield_now().await;
        tx.send(0, 7).await.unwrap();
        let (ready, rx) = waiting.await.unwrap();
        assert!(ready);
        assert_eq!(rx.try_recv(), Some(7), "still queued");
        let waiting = tokio::spawn(async move { rx.ready().await });
        tokio::task::yield_now().await;
        drop(tx);
        assert!(!waiting.await.unwrap(), "closed and empty");
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_an_arrival_in_any_lane_and_by_closing() {
        let (tx, rx) = bounded::<u32>(2, 4);
        let waiting = tokio::spawn(async move { (rx.recv().await, rx) });
        tokio::task::yield_now().await;
        tx.send(0, 7).await.unwrap();
        let (first, rx) = waiting.await.unwrap();
        assert_eq!(first, Some(7));
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiting.await.unwrap(), None);
    }

    #[tokio::test]
    async fn take_up_to_fills_from_the_highest_lanes_first_and_makes_room() {
        let (tx, rx) = bounded(2, 2);
        tx.try_send(0, "low 1").unwrap();
        tx.try_send(0, "low 2").unwrap();
        tx.try_send(1, "high").unwrap();
        assert_eq!(tx.try_send(0, "low 3"), Err(TrySendError::Full("low 3")));
        let mut batch = Vec::new();
        assert_eq!(rx.take_up_to(2, &mut batch), 2);
        assert_eq!(batch, ["high", "low 1"]);
        assert_eq!(rx.len(), 1);
        tx.try_send(0, "low 3").unwrap();
        assert_eq!(rx.take_up_to(8, &mut batch), 2);
        assert_eq!(batch, ["high", "low 1", "low 2", "low 3"]);
        assert!(rx.is_empty());
    }

    #[tokio::test]
    async fn send_all_queues_what_fits_then_waits_for_room_in_order() {
        let (tx, rx) = bounded(1, 2);
        let sending = tokio::spawn(async move {
            tx.send_all([1, 2, 3, 4, 5], |_| 0).await;
            tx
        });
        let mut taken = Vec::new();
        while taken.len() < 5 {
            let first = rx.recv().await.unwrap();
            taken.push(first);
            rx.take_up_to(8, &mut taken);
        }
        assert_eq!(taken, [1, 2, 3, 4, 5]);
        drop(sending.await.unwrap());
        assert_eq!(rx.recv().await, None, "closed with its last sender");
    }

    #[tokio::test]
    async fn a_sender_waiting_for_room_gets_its_task_back_when_the_queue_closes() {
        let (tx, rx) = bounded(1, 1);
        tx.try_send(0, 1).unwrap();
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(0, 2).await })
        };
        tokio::task::yield_now().await;
        tx.close();
        assert_eq!(waiting.await.unwrap(), Err(Closed(2)));
        assert_eq!(
            rx.recv().await,
            Some(1),
            "what was queued can still be taken"
        );
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_dropped_receiver_closes_the_queue_and_drops_what_it_held() {
        let (tx, rx) = bounded(1, 4);
        let held = Arc::new(());
        tx.try_send(0, held.clone()).unwrap();
        drop(rx);
        assert_eq!(Arc::strong_count(&held), 1, "the queued item was dropped");
        assert!(matches!(
            tx.try_send(0, held.clone()),
            Err(TrySendError::Closed(_))
        ));
    }

    #[tokio::test]
    async fn senders_waiting_for_room_go_first_come_first_served() {
        let (tx, rx) = bounded(1, 1);
        tx.try_send(0, 1).unwrap();
        let first = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(0, 2).await })
        };
        // Until the first sender waits in line.
        while !tx.is_full(0) || rx.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(rx.try_recv(), Some(1), "room for one");
        // The waiting sender was woken but has not run yet: a newcomer must not take its
        // room.
        assert_eq!(tx.try_send(0, 3), Err(TrySendError::Full(3)));
        let second = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(0, 3).await })
        };
        first.await.unwrap().unwrap();
        assert_eq!(rx.recv().await, Some(2));
        second.await.unwrap().unwrap();
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn a_task_standing_in_line_goes_in_when_room_is_made_unless_it_left() {
        let (tx, rx) = bounded(1, 1);
        tx.try_send(0, 1).unwrap();
        let second = tx.stand_in_line(0, 2).unwrap();
        let third = tx.stand_in_line(0, 3).unwrap();
        let fourth = tx.stand_in_line(0, 4).unwrap();
        assert_eq!(rx.waiting(), 3);
        assert_eq!(tx.leave_line(third), Some(3), "still in line: taken out");
        assert_eq!(tx.leave_line(third), None, "taken out once");
        assert_eq!(rx.try_recv(), Some(1));
        // Room was made: the first in line went in, with no wait of its own to wake.
        assert_eq!(tx.leave_line(second), None, "it went in");
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(4), "the one that left was skipped");
        assert_eq!(tx.leave_line(fourth), None);
        assert_eq!(rx.waiting(), 0);
    }

    #[tokio::test]
    async fn closing_gives_back_the_tasks_standing_in_line_and_wakes_those_waiting() {
        let (tx, rx) = bounded(1, 1);
        tx.try_send(0, 1).unwrap();
        let standing = tx.stand_in_line(0, 2).unwrap();
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(0, 3).await })
        };
        while rx.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(tx.close(), [2], "for the closer to answer");
        assert_eq!(
            waiting.await.unwrap(),
            Err(Closed(3)),
            "the waiting sender takes its task back"
        );
        assert_eq!(tx.leave_line(standing), None);
        assert_eq!(rx.try_recv(), Some(1), "what was queued can still be taken");
        assert_eq!(tx.stand_in_line(0, 5), Err(Closed(5)));
    }

    #[tokio::test]
    async fn a_sender_that_stops_waiting_lets_the_next_in_line_go() {
        let (tx, rx) = bounded(1, 1);
        tx.try_send(0, 1).unwrap();
        let gives_up = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(0, 2).await })
        };
        while rx.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let next = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(0, 3).await })
        };
        while rx.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        gives_up.abort();
        assert!(gives_up.await.unwrap_err().is_cancelled());
        assert_eq!(rx.try_recv(), Some(1));
        next.await.unwrap().unwrap();
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.waiting(), 0);
    }
}
