//! Flows: typed chains of stages fed by `process()`.
//!
//! Per stage there is a bounded input queue and one async *runner* that takes an idle
//! worker, collects a batch for it (see [`batcher`]), drops tasks whose caller gave up or
//! whose deadline passed, and hands the batch to the stage's executor. Results go
//! straight to the next stage's queue, or to the caller for the last stage.
//!
//! While a stage is idle (nothing queued, its runner waiting with a free seat), a lone
//! task skips the queue and the runner: its caller (first stage) or the previous stage's
//! job takes the seat and dispatches it, with the same admission and delivery
//! ([`direct`], [`idle`], [`dispatch`]), and may tell the next stage's worker ahead
//! where the flow measures that it pays ([`expecting`]).

mod admission;
mod answer;
mod batcher;
mod builder;
mod chain;
mod condition;
mod control;
mod deadlines;
mod direct;
mod dispatch;
mod downstream;
mod envelope;
mod expecting;
mod handle;
mod idle;
mod job;
mod link;
mod observe;
mod pace;
mod precise_timer;
mod queue;
mod room;
mod runner;
#[cfg(feature = "metrics")]
mod sample;
mod seats;
#[cfg(feature = "tower")]
mod service;
mod start;

pub use builder::FlowBuilder;
pub use chain::{Chain, First, FirstIf, Then, ThenIf};
pub use condition::{Condition, SkipTo};
pub use handle::{Flow, FlowState, Submission};
pub use link::Link;
#[cfg(feature = "tower")]
pub use service::{FlowFuture, FlowService};
