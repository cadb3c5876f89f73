//! What a processor reports about itself: its lifecycle state and a snapshot of its
//! queues and counters, for progress displays and for callers deciding what to do.

/// Where a processor is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessorState {
    /// Accepting inputs.
    Running,
    /// `stop()` was called: no new inputs; a graceful stop is finishing pending ones.
    Stopping,
    /// Stopped; results not yet taken can still be taken.
    Stopped,
}

/// A snapshot of a processor's queues and lifetime counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorStatus {
    /// Running, stopping or stopped.
    pub state: ProcessorState,
    /// Inputs fed but not yet handed to the flow.
    pub queued: usize,
    /// Inputs handed to the flow and not finished.
    pub in_flight: usize,
    /// Finished results not yet taken.
    pub ready: usize,
    /// Inputs fed so far.
    pub fed: u64,
    /// Inputs processed successfully so far.
    pub ok: u64,
    /// Inputs failed so far.
    pub failed: u64,
    /// Inputs cancelled so far.
    pub cancelled: u64,
}

impl ProcessorStatus {
    /// Inputs fed and not finished: queued plus in flight.
    pub fn pending(&self) -> usize {
        self.queued + self.in_flight
    }
}
