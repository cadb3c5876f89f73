//! How a processor schedules its inputs: the seed's "separate" and "sequential"
//! processors become one [`Mode`] switch, plus limits.

use std::time::Duration;

/// How a processor runs the inputs fed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Inputs are independent and run in parallel on the stage's workers, batched as
    /// the stage is configured; results come back as they finish (the seed's "separate"
    /// processors).
    #[default]
    Separate,
    /// Inputs run strictly one after another, in the order they were fed: the next is
    /// dispatched only when the previous one has finished, and results come back in
    /// feed order (the seed's "sequential" processors).
    Sequential,
}

/// Settings of a processor. `Default` gives a separate processor named after its flow's
/// stages, without a per-input time limit.
#[derive(Debug, Clone, Default)]
pub struct ProcessorOptions {
    /// Separate (parallel) or sequential.
    pub mode: Mode,
    /// Longest time one input may take from dispatch to result; it then fails with
    /// [`crate::Error::Timeout`]. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Most inputs handed to the flow at once (the rest wait in the processor, where
    /// cancelling them is free). `None`: enough to keep every worker busy with full
    /// batches plus a full input queue. Sequential processors always use 1.
    pub max_in_flight: Option<usize>,
    /// Name shown in progress, summaries and errors. `None`: the flow's stage names.
    pub name: Option<String>,
}

/// What "no time limit" is handed to the flow as: far enough to never matter, near
/// enough for the runtime's timers to represent.
pub(crate) const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The in-flight limit when neither the options nor the stage's config say better.
pub(crate) const DEFAULT_IN_FLIGHT: usize = 256;
