//! A stage's seats: one place per dispatch a worker may hold (the one it runs, and for a
//! pipelined stage one waiting behind it). The runner takes a free seat before it
//! collects a batch, so batches form only when a worker can take them.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A place for one dispatch on a worker: the one it runs, or (`behind`) the one waiting
/// behind that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seat {
    pub worker: usize,
    pub behind: bool,
}

/// The stage's seats: free ones wait in a queue; the runner knows how many there are in
/// all, so it can tell when every batch in flight has come home.
pub(super) struct Seats {
    total: usize,
    home: Arc<Home>,
    free: async_channel::Receiver<Seat>,
}

/// Where seats come back to, from jobs and from the watchers of down workers.
pub(super) struct Home {
    queue: async_channel::Sender<Seat>,
    /// Seats set aside while their worker is down.
    down: AtomicUsize,
    /// Signalled whenever a seat comes back.
    settled: Notify,
}

impl Home {
    pub(super) fn put(&self, seat: Seat) {
        // Never full: it holds every seat there is.
        let _ = self.queue.try_send(seat);
        self.settled.notify_one();
    }
}

impl Seats {
    pub(super) fn new(total: usize) -> Self {
        let (queue, free) = async_channel::bounded(total.max(1));
        Self {
            total,
            home: Arc::new(Home {
                queue,
                down: AtomicUsize::new(0),
                settled: Notify::new(),
            }),
            free,
        }
    }

    /// Seats in all, free or not.
    pub(super) fn total(&self) -> usize {
        self.total
    }

    pub(super) fn home(&self) -> Arc<Home> {
        self.home.clone()
    }

    pub(super) fn put(&self, seat: Seat) {
        self.home.put(seat);
    }

    /// Sets `seat` aside until `up` resolves (its worker is back), then frees it.
    pub(super) fn set_aside(&self, seat: Seat, up: impl Future<Output = ()> + Send + 'static) {
        let home = self.home();
        home.down.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            up.await;
            home.down.fetch_sub(1, Ordering::SeqCst);
            home.put(seat);
        });
    }

    /// Resolves when a seat next comes back.
    pub(super) async fn settled(&self) {
        self.home.settled.notified().await;
    }

    pub(super) async fn take(&self) -> Option<Seat> {
        self.free.recv().await.ok()
    }

    /// Whether no batch is in flight: every seat is free, parked or set aside.
    pub(super) fn all_home(&self, parked: usize) -> bool {
        self.free.len() + parked + self.home.down.load(Ordering::SeqCst) >= self.total
    }
}
