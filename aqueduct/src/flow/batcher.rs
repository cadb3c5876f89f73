//! Batch collection: after a batch's first task, take more until the batch is full or its
//! time is up. Uses the runtime's clock (kept to the microsecond by a [`PreciseTimer`]),
//! so tests can drive it with a paused clock.

use std::time::Duration;

use tokio::time::Instant;

use super::precise_timer::PreciseTimer;
use super::queue::QueueRx;
use crate::platform::clock;

/// Why a batch was flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// It reached its size.
    Full,
    /// Its batch timeout passed.
    Timeout,
    /// No batch timeout: it took what was queued.
    Immediate,
    /// The queue closed (the flow is stopping).
    Drain,
}

impl Flush {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Timeout => "timeout",
            Self::Immediate => "immediate",
            Self::Drain => "drain",
        }
    }
}

/// Fills a batch that starts with `first`, up to `max` items, and says why it stopped.
///
/// With `wait == 0` it takes only what is already queued (dynamic batching: small batches
/// at low load, full ones under load, no added latency). Otherwise it waits until
/// `wait` after the first task arrived (on `timer`), or until the batch is full.
pub(crate) async fn collect<T>(
    queue: &QueueRx<T>,
    first: T,
    max: usize,
    wait: Duration,
    timer: &mut PreciseTimer,
) -> (Vec<T>, Flush) {
    let mut batch = Vec::with_capacity(max.min(1024));
    batch.push(first);
    if wait.is_zero() {
        queue.take_up_to(max - 1, &mut batch);
        let flush = if batch.len() < max {
            Flush::Immediate
        } else {
            Flush::Full
        };
        return (batch, flush);
    }
    let deadline = clock::deadline(Instant::now(), wait);
    let mut armed = false;
    while batch.len() < max {
        if queue.take_up_to(max - batch.len(), &mut batch) != 0 {
            continue;
        }
        // Armed once per batch, and only for a batch that waits.
        if !armed {
            timer.arm(deadline);
            armed = true;
        }
        // Biased: a task that came by the deadline still goes in.
        tokio::select! {
            biased;
            item = queue.recv() => match item {
                Some(item) => batch.push(item),
                None => return (batch, Flush::Drain),
            },
            () = timer.elapsed() => return (batch, Flush::Timeout),
        }
    }
    (batch, Flush::Full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::queue;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        future.poll(&mut Context::from_waker(waker))
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_timeout_then_flushes_a_partial_batch() {
        let (tx, rx) = queue::bounded(1, 16);
        tx.send(0, 2).await.unwrap();
        let mut timer = PreciseTimer::new();
        let mut batch = pin!(collect(&rx, 1, 4, Duration::from_millis(50), &mut timer));
        assert!(
            poll_once(batch.as_mut()).is_pending(),
            "batch waits for more tasks"
        );
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(
            poll_once(batch.as_mut()).is_pending(),
            "still within the batch timeout"
        );
        tx.send(0, 3).await.unwrap();
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            batch.await,
            (vec![1, 2, 3], Flush::Timeout),
            "flushed at the timeout with what arrived"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_as_soon_as_the_batch_is_full() {
        let (tx, rx) = queue::bounded(1, 16);
        let mut timer = PreciseTimer::new();
        let mut batch = pin!(collect(&rx, 1, 3, Duration::from_secs(3600), &mut timer));
        assert!(poll_once(batch.as_mut()).is_pending());
        tx.send(0, 2).await.unwrap();
        tx.send(0, 3).await.unwrap();
        tx.send(0, 4).await.unwrap();
        let started = Instant::now();
        assert_eq!(batch.await, (vec![1, 2, 3], Flush::Full));
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no time passed: full batch flushed at once"
        );
        assert_eq!(
            rx.try_recv(),
            Some(4),
            "the extra task stays queued for the next batch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_timeout_takes_only_what_is_queued() {
        let (tx, rx) = queue::bounded(1, 16);
        tx.send(0, 2).await.unwrap();
        let mut timer = PreciseTimer::new();
        let mut batch = pin!(collect(&rx, 1, 8, Duration::ZERO, &mut timer));
        assert_eq!(
            poll_once(batch.as_mut()),
            Poll::Ready((vec![1, 2], Flush::Immediate)),
            "ready on first poll, no waiting"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timer_counts_from_the_first_task_not_from_idle_time() {
        let (tx, rx) = queue::bounded(1, 16);
        tokio::time::advance(Duration::from_secs(10)).await;
        let mut timer = PreciseTimer::new();
        let mut batch = pin!(collect(&rx, 1, 4, Duration::from_millis(20), &mut timer));
        assert!(
            poll_once(batch.as_mut()).is_pending(),
            "idle time before the first task does not count"
        );
        tokio::time::advance(Duration::from_millis(20)).await;
        drop(tx);
        assert_eq!(batch.await.0, vec![1]);
    }
}
