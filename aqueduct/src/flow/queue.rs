//! A stage's input queue: one bounded lane per priority (`FlowBuilder::priorities`).
//!
//! The stage's runner takes the first task of a batch from the highest non-empty lane and
//! fills the batch from the highest lanes first, so a queued urgent task overtakes queued
//! normal ones at every stage (a batch already running is not pre-empted). A lower lane is
//! never starved: each time a batch starts from a higher lane while it holds tasks, it is
//! *passed over* once, and a lane passed over [`FAIR_SHARE`] times starts the next batch.
//! So a waiting low-priority task starts within `FAIR_SHARE` batches per lane above it.
//!
//! With one lane (the default) this is one `async_channel` and costs nothing more.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_channel::{Receiver, SendError, Sender, TrySendError};
use tokio::sync::Notify;

/// How many batches may start from higher lanes while a lower lane holds tasks, before
/// the lower lane starts one.
pub(crate) const FAIR_SHARE: u32 = 8;

/// A queue of `lanes` lanes of `capacity` tasks each.
pub(crate) fn bounded<T>(lanes: usize, capacity: usize) -> (QueueTx<T>, QueueRx<T>) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes.max(1))
        .map(|_| async_channel::bounded(capacity))
        .unzip();
    let arrived = Arc::new(Notify::new());
    let tx = QueueTx {
        shared: Arc::new(Senders {
            lanes: senders.into(),
            arrived: arrived.clone(),
        }),
    };
    let rx = QueueRx {
        passed_over: receivers.iter().map(|_| AtomicU32::new(0)).collect(),
        lanes: receivers.into(),
        arrived,
    };
    (tx, rx)
}

/// The sending side; clones share the lanes. The queue closes when the last is dropped.
#[doc(hidden)]
pub struct QueueTx<T> {
    shared: Arc<Senders<T>>,
}

struct Senders<T> {
    lanes: Box<[Sender<T>]>,
    /// Wakes the receiver of a queue of several lanes (it cannot wait on all at once),
    /// and a receiver waiting for tasks without taking one (see [`QueueRx::ready`]).
    arrived: Arc<Notify>,
}

impl<T> Drop for Senders<T> {
    fn drop(&mut self) {
        // The lanes close with their senders; a receiver waiting for an arrival must
        // look again to see it.
        self.lanes.iter().for_each(|lane| {
            lane.close();
        });
        self.arrived.notify_one();
    }
}

impl<T> std::fmt::Debug for QueueTx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueTx")
            .field("lanes", &self.shared.lanes.len())
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
    fn lane(&self, priority: usize) -> &Sender<T> {
        let lanes = &self.shared.lanes;
        &lanes[priority.min(lanes.len() - 1)]
    }

    fn arrived(&self) {
        self.shared.arrived.notify_one();
    }

    /// Queues `item` in the lane of `priority` if it has room.
    pub(crate) fn try_send(&self, priority: usize, item: T) -> Result<(), TrySendError<T>> {
        self.lane(priority).try_send(item)?;
        self.arrived();
        Ok(())
    }

    /// Queues `item` in the lane of `priority`, waiting for room. (Tries first without
    /// the wait's future and listener: a lane with room is the common case.)
    pub(crate) async fn send(&self, priority: usize, item: T) -> Result<(), SendError<T>> {
        let lane = self.lane(priority);
        match lane.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Closed(item)) => return Err(SendError(item)),
            Err(TrySendError::Full(item)) => lane.send(item).await?,
        }
        self.arrived();
        Ok(())
    }

    /// Whether the lane of `priority` is full.
    pub(crate) fn is_full(&self, priority: usize) -> bool {
        self.lane(priority).is_full()
    }

    /// Closes every lane: nothing more can be sent; what is queued can still be taken.
    pub(crate) fn close(&self) {
        self.shared.lanes.iter().for_each(|lane| {
            lane.close();
        });
        self.shared.arrived.notify_one();
    }
}

/// The receiving side, used by the stage's runner alone (clones for counting only).
pub(crate) struct QueueRx<T> {
    lanes: Box<[Receiver<T>]>,
    arrived: Arc<Notify>,
    /// Per lane: batches started from a higher lane while this one held tasks.
    passed_over: Box<[AtomicU32]>,
}

impl<T> QueueRx<T> {
    /// Tasks queued in all lanes.
    pub(crate) fn len(&self) -> usize {
        self.lanes.iter().map(Receiver::len).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lanes.iter().all(Receiver::is_empty)
    }

    /// A counter of the queued tasks, for statistics.
    pub(crate) fn counter(&self) -> impl Fn() -> usize + Send + Sync + 'static
    where
        T: Send + 'static,
    {
        let lanes = self.lanes.clone();
        move || lanes.iter().map(Receiver::len).sum()
    }

    /// A queued task, from the highest non-empty lane (for filling a batch).
    pub(crate) fn try_recv(&self) -> Option<T> {
        self.lanes
            .iter()
            .rev()
            .find_map(|lane| lane.try_recv().ok())
    }

    /// The first task of a batch: from a lane passed over too often, else from the
    /// highest non-empty lane. `None` once every lane is closed and empty.
    pub(crate) async fn recv(&self) -> Option<T> {
        if let [only] = &*self.lanes {
            return only.recv().await.ok();
        }
        loop {
            if let Some(item) = self.take_first() {
                return Some(item);
            }
            if !self.ready().await {
                return None;
            }
        }
    }

    /// Resolves once a task is queued (`true`), or every lane is closed and empty
    /// (`false`), without taking a task.
    pub(crate) async fn ready(&self) -> bool {
        if !self.is_empty() {
            return true;
        }
        loop {
            let arrived = self.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            // Registered before looking, so an arrival in between is not missed.
            arrived.as_mut().enable();
            if !self.is_empty() {
                return true;
            }
            if self.lanes.iter().all(|lane| lane.is_closed()) {
                return false;
            }
            arrived.await;
        }
    }

    fn take_first(&self) -> Option<T> {
        for (lane, passed) in self.lanes.iter().zip(&*self.passed_over) {
            if passed.load(Ordering::Relaxed) >= FAIR_SHARE {
                passed.store(0, Ordering::Relaxed);
                if let Ok(item) = lane.try_recv() {
                    return Some(item);
                }
            }
        }
        let (index, item) = self
            .lanes
            .iter()
            .enumerate()
            .rev()
            .find_map(|(index, lane)| lane.try_recv().ok().map(|item| (index, item)))?;
        self.passed_over[index].store(0, Ordering::Relaxed);
        for (lane, passed) in self.lanes[..index].iter().zip(&*self.passed_over) {
            if !lane.is_empty() {
                passed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some(item)
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
}
