//! The formats in Redis: key names, the stream entry of a task, and a stored result.
//!
//! Every key of one deployment shares the hash tag `{prefix}`, so the Lua scripts that
//! touch several of them also run on a Redis Cluster (one slot).
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}:tasks` | stream | one entry per submitted task (fields below); consumer group `group` |
//! | `{p}:result:<id>` | string | the outcome of task `<id>`, set once (`SET NX`) |
//! | `{p}:done` | stream | one entry (`id`, `consumer`, `outcome`) per result stored, written in the same script as the result |
//! | `{p}:dead` | stream | entries given up on: the original fields plus `entry`, `deliveries`, `error` |
//! | `{p}:errors` | hash | entry id -> why its last attempt left it pending |
//! | `{p}:submitted:<id>` | string | marks an id as submitted, so a retried submit adds no second entry |
//! | `{p}:blob:<id>:<n>` | string | a payload above the inline limit, by reference |
//!
//! A task entry's fields: `id` (the task id, also the idempotency key), `deadline` (Unix
//! ms), `fp` (the layout fingerprint, decimal), `type` (the task type's name, for error
//! messages), `task` (its bytes, handles zeroed), `payloads` (see [`put_entry_payloads`]).

use crate::codec::{CodecError, Payload, Reader};

/// Key names for one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    tag: String,
}

impl Keys {
    /// The keys of deployment `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            tag: format!("{{{prefix}}}"),
        }
    }
    /// The task stream.
    pub fn tasks(&self) -> String {
        format!("{}:tasks", self.tag)
    }
    /// The stored outcome of `id`.
    pub fn result(&self, id: &str) -> String {
        format!("{}:result:{id}", self.tag)
    }
    /// The stream of stored results.
    pub fn done(&self) -> String {
        format!("{}:done", self.tag)
    }
    /// The dead-letter stream.
    pub fn dead(&self) -> String {
        format!("{}:dead", self.tag)
    }
    /// The last error per pending entry.
    pub fn errors(&self) -> String {
        format!("{}:errors", self.tag)
    }
    /// The submitted marker of `id`.
    pub fn submitted(&self, id: &str) -> String {
        format!("{}:submitted:{id}", self.tag)
    }
    /// Payload `n` of task `id`, stored by reference.
    pub fn blob(&self, id: &str, n: usize) -> String {
        format!("{}:blob:{id}:{n}", self.tag)
    }
}

/// A payload as it sits in a stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPayload {
    /// The bytes themselves.
    Inline(Payload),
    /// The key of a string holding them.
    Blob {
        /// Handle offset in the task.
        offset: usize,
        /// The blob's key.
        key: String,
    },
}

/// `[u32 count] ([u32 offset][u32 kind] (0: [u64 len][bytes] | 1: [u32 len][key]))*`.
pub fn put_entry_payloads(out: &mut Vec<u8>, payloads: &[EntryPayload]) {
    out.extend_from_slice(&(payloads.len() as u32).to_le_bytes());
    for p in payloads {
        match p {
            EntryPayload::Inline(p) => {
                out.extend_from_slice(&(p.offset as u32).to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&(p.bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(&p.bytes);
            }
            EntryPayload::Blob { offset, key } => {
                out.extend_from_slice(&(*offset as u32).to_le_bytes());
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key.as_bytes());
            }
        }
    }
}

/// Reads what [`put_entry_payloads`] wrote.
pub fn read_entry_payloads(bytes: &[u8]) -> Result<Vec<EntryPayload>, CodecError> {
    let mut r = Reader::new(bytes);
    let count = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let offset = r.u32()? as usize;
        match r.u32()? {
            0 => {
                let len = usize::try_from(r.u64()?)
                    .map_err(|_| CodecError::Payloads("payload length overflows".into()))?;
                out.push(EntryPayload::Inline(Payload {
                    offset,
                    bytes: r.take(len)?.to_vec(),
                }));
            }
            1 => {
                let len = r.u32()? as usize;
                let key = String::from_utf8(r.take(len)?.to_vec())
                    .map_err(|_| CodecError::Payloads("blob key is not UTF-8".into()))?;
                out.push(EntryPayload::Blob { offset, key });
            }
            kind => return Err(CodecError::Payloads(format!("payload kind {kind}"))),
        }
    }
    if !r.rest().is_empty() {
        return Err(CodecError::Payloads("trailing bytes".into()));
    }
    Ok(out)
}

/// Tags of a stored result: `[u8 tag]` then, for `OK`, `[u64 fingerprint][u32 len][task
/// bytes][payloads]` (payloads always inline); for `ERROR`, the message (UTF-8); for
/// `EXPIRED`, nothing.
pub const RESULT_OK: u8 = 0;
/// A handler error.
pub const RESULT_ERROR: u8 = 1;
/// The deadline passed before the task ran.
pub const RESULT_EXPIRED: u8 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_payloads_round_trip_and_reject_junk() {
        let payloads = vec![
            EntryPayload::Inline(Payload {
                offset: 8,
                bytes: vec![1, 2, 3],
            }),
            EntryPayload::Blob {
                offset: 32,
                key: "{p}:blob:x:1".into(),
            },
        ];
        let mut out = Vec::new();
        put_entry_payloads(&mut out, &payloads);
        assert_eq!(read_entry_payloads(&out).unwrap(), payloads);
        out.push(0);
        assert!(read_entry_payloads(&out).is_err());
        assert!(read_entry_payloads(&[1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0]).is_err());
        assert_eq!(Keys::new("p").tasks(), "{p}:tasks");
    }
}
