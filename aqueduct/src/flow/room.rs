//! A caller's wait for room in the full first stage.
//!
//! With more callers than the first queue holds, every call waits for room, so the wait
//! costs next to nothing: the task stands in the queue's line (see
//! [`super::queue::QueueTx::stand_in_line`]) and goes in when room is made without its
//! caller being told, since the caller awaits its answer anyway. The end of the wait
//! (`until`, set by admission) is watched on the flow's deadline ticker, as the call's own
//! deadline is, and only then is the line looked at again. The boxed wait with a tokio
//! timer, a `Notify` and a wake-up per caller that this replaced took more than half of
//! W1's throughput with 1024 callers on a queue of 192.

use std::time::Duration;

use tokio::time::Instant;

use super::queue::Spot;

/// The first stage's line, whatever its tasks' type.
pub(super) trait Line: Send + Sync {
    /// Takes the task at `spot` out of the line (it is dropped); whether it was there.
    fn leave(&self, spot: Spot) -> bool;

    /// The first stage's name.
    fn stage(&self) -> &'static str;
}

/// A call's task standing in the first stage's line, until `until` at the latest. If
/// the call ends while the task still stands there, the task leaves the line.
pub(super) struct InLine<'a> {
    line: &'a dyn Line,
    spot: Spot,
    until: Instant,
    /// How long the caller will have waited at `until`.
    waited: Duration,
}

impl<'a> InLine<'a> {
    /// The task of a call made at `called`, standing at `spot` until `until`.
    pub(super) fn new(line: &'a dyn Line, spot: Spot, called: Instant, until: Instant) -> Self {
        Self {
            line,
            spot,
            until,
            waited: until.saturating_duration_since(called),
        }
    }

    /// When the wait for room ends.
    pub(super) fn until(&self) -> Instant {
        self.until
    }

    /// The call was answered, so its task went in: nothing to leave.
    pub(super) fn went_in(self) {
        std::mem::forget(self);
    }

    /// The wait's end has passed: the error that turns the call away if its task still
    /// stands in line (it leaves), `None` if the task went in meanwhile.
    pub(super) fn turned_away(self) -> Option<crate::Error> {
        // Left here, once, rather than again on drop.
        let this = std::mem::ManuallyDrop::new(self);
        this.line
            .leave(this.spot)
            .then(|| crate::Error::Overloaded {
                stage: this.line.stage(),
                waited: this.waited,
            })
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.line.leave(self.spot);
    }
}
