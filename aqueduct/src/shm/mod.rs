//! Shared memory: an arena of blocks in a sealed memfd that variable-size task data
//! (`ShmBytes`, `ShmStr`, `ShmVec<T>`) lives in, so that a task crosses threads and
//! processes as a few handle bytes and its payload is never copied.
//!
//! Ownership: every task value in the runtime's custody owns one reference per handle it
//! holds. The runtime retains and releases these at stage boundaries; the caller's
//! [`crate::Owned`] result releases them when dropped. Blocks are written once, when
//! created, and are immutable afterwards; readers hold a reference through [`ShmView`],
//! so a block can never be reused while it is being read.

pub mod arena;
mod buddy;
mod buffers;
mod handle;
pub(crate) mod memfd;
pub(crate) mod ownership;
pub(crate) mod scratch;
mod view;

pub use arena::ArenaStats;
pub use buffers::{ShmBytes, ShmStr, ShmVec};
pub use handle::ShmHandle;
pub use view::ShmView;
