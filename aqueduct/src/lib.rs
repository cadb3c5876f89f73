#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]

// Lets the macros' `::aqueduct::…` paths resolve inside this crate's own tests and doctests.
#[allow(unused_extern_crates)]
extern crate self as aqueduct;

pub mod arena {
    //! The process's shared-memory arena: size it before first use, read its usage.
    pub use crate::shm::arena::{configure, stats, CAPACITY_ENV, DEFAULT_CAPACITY};
    pub use crate::shm::ArenaStats;
}
mod config;
mod console;
mod error;
mod exec;
mod flow;
pub mod graph;
mod hash;
pub mod metrics;
mod platform;
mod progress;
mod shapes;
mod shm;
mod spin;
mod stage;
mod stats;
mod sync;
mod task;

pub use aqueduct_macros::{flow, handler, task};
pub use error::Error;
pub use flow::{Condition, Flow, FlowBuilder, FlowState, Link, SkipTo, Submission};
#[cfg(feature = "tower")]
pub use flow::{FlowFuture, FlowService};
pub use shapes::{InitFn, InitOutput, ResultAlias};
pub use shm::{Owned, ShmBytes, ShmHandle, ShmStr, ShmVec, ShmView};
pub use stage::{Isolation, Stage, StageConfig};
pub use stats::StageStats;
pub use task::{FieldLayout, NoPaddingBefore, NoTrailingPadding, Task, TaskField, TaskLayout};

#[doc(hidden)]
pub mod __private;
