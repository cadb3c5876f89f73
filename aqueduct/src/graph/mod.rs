//! Offline dataflow graphs of processors, for pushing a data set through several stages
//! with a plain call rather than serving requests.
//!
//! - A [`Processor`] wraps a started flow (usually one `#[handler]` stage): feed it many
//!   inputs at any time, receive a [`ResultHandle`] for each as it finishes, cancel
//!   pending inputs, stop it gracefully or kill it. It runs inputs independently in
//!   parallel ([`Mode::Separate`]) or strictly one after another ([`Mode::Sequential`]).
//! - A [`Graph`] connects processors with typed converters (fan-out, fan-in, cycles) and
//!   runs until nothing is pending anywhere, with a guard against endless cycles.
//! - [`Processor::run`] / [`Processor::run_one`] and [`Graph::run`] have `*_blocking`
//!   twins for code that is not async.
//!
//! This is the seed's `batch_processor` library: `feed_new` is [`Processor::feed`],
//! `get_ready` is [`Processor::take_ready`], `BatchProcessorsGraph` is [`Graph`],
//! `add_connected_processors` is [`Graph::connect`], `run_batch_processors_graph`,
//! `run_batch_processor` and `run_batch_processor_single` are [`Graph::run`],
//! [`Processor::run`] and [`Processor::run_one`].

mod backlog;
mod builder;
mod handle;
mod node;
mod options;
mod processor;
mod progress;
mod results;
mod run;
mod state;
mod status;

pub use builder::{Graph, DEFAULT_MAX_ROUNDS};
pub use handle::{InputId, ResultHandle};
pub use options::{Mode, ProcessorOptions};
pub use processor::{BlockingResults, Processor, ProcessorBuilder};
pub use progress::Progress;
pub use results::{GraphResults, ProcessorSummary};
pub use status::{ProcessorState, ProcessorStatus};
