//! A flow's lifecycle state, shared by its handles and runners.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::deadlines::Deadlines;
use super::expecting::Expecting;
use crate::sync::{Counted, Padded};

/// Where a flow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowState {
    /// Accepting tasks.
    Running,
    /// `stop()` was called; no new tasks are accepted, accepted ones may still finish.
    Stopping,
    /// Every stage has shut down (or was halted).
    Stopped,
}

pub(crate) struct Control {
    state: AtomicU8,
    /// `process` calls under way: the flow's load, as runners see it. Every call writes
    /// it twice: on a line of its own, away from what every call only reads.
    in_flight: Padded<AtomicUsize>,
    /// Set when the flow halts without finishing its tasks; runners look at it.
    halted: AtomicBool,
    /// Wakes whoever awaits the halt (see [`Control::halted`]).
    halt: Notify,
    /// Wakes the callers waiting for an answer when their deadline passes or the flow
    /// halts.
    deadlines: Deadlines,
    /// Whether lone calls tell each next stage ahead, as measured.
    expecting: Expecting,
}

impl Control {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU8::new(FlowState::Running as u8),
            in_flight: Padded(AtomicUsize::new(0)),
            halted: AtomicBool::new(false),
            halt: Notify::new(),
            deadlines: Deadlines::new(),
            expecting: Expecting::new(),
        }
    }

    /// Whether lone calls tell each next stage ahead (see `expecting`).
    pub(crate) fn expecting(&self) -> &Expecting {
        &self.expecting
    }

    /// Counts a `process` call until the returned guard drops.
    pub(crate) fn enter(&self) -> Counted<'_> {
        // Counted first (`SeqCst`, with the load in `in_flight`): the deadlines' ticker
        // sleeps only when it sees no call, or the call sees it asleep and wakes it.
        let call = Counted::new(&self.in_flight);
        self.deadlines.call_began();
        call
    }

    /// `process` calls under way now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// What wakes waiting callers at their deadline or the halt.
    pub(crate) fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// Runs the deadlines' ticker (see `deadlines`) until [`Control::close`].
    pub(crate) async fn tick(&self) {
        self.deadlines.tick(|| self.in_flight()).await;
    }

    /// The flow is gone: its deadlines' ticker ends.
    pub(crate) fn close(&self) {
        self.deadlines.close();
    }

    pub(crate) fn state(&self) -> FlowState {
        match self.state.load(Ordering::Acquire) {
            state if state == FlowState::Running as u8 => FlowState::Running,
            state if state == FlowState::Stopping as u8 => FlowState::Stopping,
            _ => FlowState::Stopped,
        }
    }

    /// Moves from running to stopping; `false` if the flow was not running.
    pub(crate) fn begin_stop(&self) -> bool {
        self.state
            .compare_exchange(
                FlowState::Running as u8,
                FlowState::Stopping as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Starts a stop (see [`Control::begin_stop`]); whether it goes on. With another stop
    /// under way, a graceful one adds nothing, and one that does not wait goes on,
    /// cutting it short (or ending a graceful stop whose caller gave up on it).
    pub(crate) fn stop_goes_on(&self, graceful: bool) -> bool {
        self.begin_stop() || !graceful
    }

    pub(crate) fn set_stopped(&self) {
        self.state
            .store(FlowState::Stopped as u8, Ordering::Release);
    }

    pub(crate) fn halt(&self) {
        self.halted.store(true, Ordering::Release);
        self.halt.notify_waiters();
        self.deadlines.wake_all();
    }

    pub(crate) fn is_halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    /// Resolves once the flow has halted.
    pub(crate) async fn halted(&self) {
        let mut halt = std::pin::pin!(self.halt.notified());
        // Registered before the look: a halt after it wakes this one.
        halt.as_mut().enable();
        if !self.is_halted() {
            halt.await;
        }
    }
}
