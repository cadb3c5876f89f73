//! The callers' deadlines and the flow's halt, watched by the flow instead of one tokio
//! timer per call.
//!
//! A tokio timer per `process` call cost about a tenth of W1's throughput: each call
//! cloned the runtime's handle (a reference count every thread writes) and locked the
//! timer wheel twice, once to insert and once to remove its entry. Here a waiting call
//! registers on the notification of the millisecond its deadline falls in (one list
//! entry, on a shard of its thread's own), and one ticker task per flow wakes each
//! millisecond's callers as it passes: the same one-millisecond resolution as tokio's
//! timer, but on time (see [`PreciseTimer`]): a call's timeout ends it up to about a
//! millisecond late (its tick). The halt wakes them all, so a call waits on one
//! notification, not two.
//!
//! The ticker runs while calls are under way and sleeps once the flow has been idle for a
//! while; the first call after that wakes it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::precise_timer::PreciseTimer;
use crate::platform::clock;
use crate::sync::Padded;

/// How finely deadlines are told apart, in nanoseconds: a millisecond, tokio's timer
/// resolution too.
const TICK_NANOS: u64 = 1_000_000;

/// Milliseconds kept apart: a deadline further ahead shares its slot with earlier
/// rounds, and its caller is woken once per earlier round, to wait again.
const SLOTS: usize = 256;

/// Copies of the slots, one per group of threads, so that callers on different threads
/// do not contend for a slot's lock: more than the threads that usually call.
const SHARDS: usize = 4;

/// Ticks without a call under way before the ticker sleeps.
const IDLE_TICKS: u32 = 100;

pub(crate) struct Deadlines {
    /// Tick 0. A deadline belongs to the first tick at or after it.
    base: Instant,
    /// `SHARDS` runs of `SLOTS` notifications: tick `t`'s callers on shard `s` wait on
    /// `slots[s * SLOTS + t % SLOTS]`.
    slots: Box<[Notify]>,
    /// Every tick up to this one has passed and its callers were woken.
    passed: Padded<AtomicU64>,
    ticker: Padded<Ticker>,
}

/// Whether the ticker sleeps, and how it is woken.
struct Ticker {
    asleep: AtomicBool,
    /// The flow is gone: the ticker ends.
    closed: AtomicBool,
    wake: Notify,
}

/// A caller's registration: woken when its deadline's tick passes (or an earlier round
/// of its slot does) or the flow halts.
pub(crate) struct Watch<'a> {
    pub notified: Notified<'a>,
    pub tick: u64,
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        let base = Instant::now();
        Self {
            base,
            slots: (0..SHARDS * SLOTS).map(|_| Notify::new()).collect(),
            passed: Padded(AtomicU64::new(0)),
            ticker: Padded(Ticker {
                asleep: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake: Notify::new(),
            }),
        }
    }

    /// The notification that wakes a caller whose deadline is `deadline`. It need not be
    /// polled to be woken (see `notify_waiters`); the caller must still look at
    /// [`Deadlines::has_passed`] after polling it, for a tick that passed before.
    pub(crate) fn watch(&self, deadline: Instant) -> Watch<'_> {
        let tick = self.tick_of(deadline);
        let slot = shard() * SLOTS + (tick % SLOTS as u64) as usize;
        Watch {
            notified: self.slots[slot].notified(),
            tick,
        }
    }

    /// Whether `tick` has passed (and so every deadline in it).
    pub(crate) fn has_passed(&self, tick: u64) -> bool {
        self.passed.load(Ordering::Acquire) >= tick
    }

    /// Wakes every waiting caller (the flow halted: they look at its state).
    pub(crate) fn wake_all(&self) {
        for slot in self.slots.iter() {
            slot.notify_waiters();
        }
    }

    /// A call began (its count was raised with `SeqCst`): wakes the ticker if it sleeps.
    pub(crate) fn call_began(&self) {
        // Read first: the ticker sleeps rarely, and a write here would bounce the line
        // between the callers' cores.
        if self.ticker.asleep.load(Ordering::SeqCst)
            && self.ticker.asleep.swap(false, Ordering::SeqCst)
        {
            self.ticker.wake.notify_one();
        }
    }

    /// The flow is gone: the ticker ends.
    pub(crate) fn close(&self) {
        self.ticker.closed.store(true, Ordering::SeqCst);
        self.ticker.wake.notify_one();
    }

    /// The first tick at or after `at` (every call computes one: in `u64`, whose
    /// division by a constant is a multiplication, where `u128`'s is a library call).
    fn tick_of(&self, at: Instant) -> u64 {
        self.nanos_to(at).div_ceil(TICK_NANOS)
    }

    /// The last tick at or before `at`.
    fn ticks_by(&self, at: Instant) -> u64 {
        self.nanos_to(at) / TICK_NANOS
    }

    /// Nanoseconds from tick 0 to `at` (saturating: 584 years).
    fn nanos_to(&self, at: Instant) -> u64 {
        clock::nanos(at.saturating_duration_since(self.base))
    }

    /// Wakes the callers of every tick after `from` up to `to` (`to > from`).
    fn pass(&self, from: u64, to: u64) {
        // More than a round behind (the ticker slept): every slot once.
        let first = from.max(to.saturating_sub(SLOTS as u64)) + 1;
        for tick in first..=to {
            // Published before the wake-ups: a caller that registers after them sees it.
            self.passed.store(tick, Ordering::Release);
            let slot = (tick % SLOTS as u64) as usize;
            for shard in 0..SHARDS {
                self.slots[shard * SLOTS + slot].notify_waiters();
            }
        }
    }

    /// The ticker: passes ticks while calls are under way (`in_flight`, read with
    /// `SeqCst`), sleeps after [`IDLE_TICKS`] without one, ends when the flow is gone.
    pub(crate) async fn tick(&self, in_flight: impl Fn() -> usize) {
        let mut passed = self.ticks_by(Instant::now());
        let mut idle = 0;
        let mut timer = PreciseTimer::new();
        while !self.ticker.closed.load(Ordering::SeqCst) {
            let next = self.base + Duration::from_nanos((passed + 1).saturating_mul(TICK_NANOS));
            timer.arm(next);
            timer.elapsed().await;
            let now = self.ticks_by(Instant::now());
            if now > passed {
                self.pass(passed, now);
                passed = now;
            }
            idle = if in_flight() == 0 { idle + 1 } else { 0 };
            if idle < IDLE_TICKS {
                continue;
            }
            idle = 0;
            let woken = self.ticker.wake.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            // Announced, then looked again: a call beginning meanwhile either is seen
            // here or sees the announcement (and wakes this).
            self.ticker.asleep.store(true, Ordering::SeqCst);
            if in_flight() == 0 && !self.ticker.closed.load(Ordering::SeqCst) {
                woken.await;
            }
            self.ticker.asleep.store(false, Ordering::SeqCst);
        }
    }
}

/// The shard this thread's callers use: threads take them in turn.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}
