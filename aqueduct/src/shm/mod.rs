//! Shared memory: an arena of blocks in a sealed memfd that variable-size task data
//! (`ShmBytes`, `ShmStr`, `ShmVec<T>`) lives in, so that a task crosses threads and
//! processes as a few handle bytes and its payload is never copied.
//!
//! Ownership: every task value in the runtime's custody owns one reference per handle it
//! holds, expressed by carrying it as an [`Owned`], which releases them when dropped;
//! raw references are taken and released only at the handler call ([`ownership`]) and
//! where a task crosses to a worker process. Blocks are written once, when
//! created, and are immutable afterwards; readers hold a reference through [`ShmView`],
//! so a block can never be reused while it is being read.

pub mod arena;
mod buddy;
mod buffers;
mod handle;
pub(crate) mod memfd;
pub(crate) mod owned;
pub(crate) mod ownership;
pub(crate) mod scratch;
mod view;

pub use arena::ArenaStats;
pub use buffers::{ShmBytes, ShmStr, ShmVec};
pub use handle::ShmHandle;
pub use owned::Owned;
pub use view::ShmView;
