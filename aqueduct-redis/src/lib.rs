//! Scale-out for aqueduct flows: the same flow on N machines, fed through a Redis Streams
//! consumer group.
//!
//! - [`Submitter`] appends tasks to a stream (`XADD ... MAXLEN ~`), each with a unique id
//!   that is also its idempotency key, a deadline, its layout fingerprint and its bytes,
//!   and reads outcomes back.
//! - [`RedisSource`] runs on every host, next to that host's [`aqueduct::Flow`]: it reads
//!   only as many entries as it has credits for, refuses entries of a foreign layout,
//!   skips expired and already-answered ones, runs the rest through the flow, and stores
//!   each outcome once (`SET NX` in a Lua script that also acks). Entries whose attempt
//!   crashed or timed out stay pending; any host claims them back after `claim_idle`
//!   (`XAUTOCLAIM`), and after `max_deliveries` they go to a dead-letter stream.
//!
//! Delivery guarantee: execution is at-least-once (a consumer that dies after running a
//! task but before storing its result makes another host run it again), and the visible
//! result is exactly-once per task id (the first stored outcome wins; later ones are
//! discarded). A handler with side effects must make them idempotent, keyed by the task
//! id. The formats are in [`wire`].

pub mod codec;
mod server;
mod source;
mod submitter;
pub mod wire;

pub use server::{server_for_tests, LocalServer};
pub use source::{RedisSource, SourceConfig, SourceStats, StopHandle};
pub use submitter::{Completion, DeadLetter, Outcome, Submitted, Submitter};

/// A task's id: unique per task, and the idempotency key of its result.
pub type TaskId = String;

/// What can go wrong talking to Redis or decoding what it holds.
#[derive(Debug, thiserror::Error)]
pub enum RedisFlowError {
    /// A Redis command failed (connection lost, server error).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored value could not be decoded.
    #[error("decoding: {0}")]
    Codec(#[from] codec::CodecError),
    /// A stored result was written for another task layout.
    #[error("the stored result of `{id}` has layout fingerprint {found:#018x}, but `{name}` has {expected:#018x}: it was written by a consumer built with another task layout")]
    Layout {
        /// The task id.
        id: String,
        /// The output type.
        name: &'static str,
        /// Its fingerprint.
        expected: u64,
        /// The stored one.
        found: u64,
    },
    /// A setting was rejected.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Creates the consumer group (and the stream) if missing.
pub(crate) async fn ensure_group(
    conn: &mut redis::aio::ConnectionManager,
    stream: &str,
    group: &str,
) -> Result<(), redis::RedisError> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}
