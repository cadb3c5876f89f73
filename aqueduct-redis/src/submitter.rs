//! The producer side: append tasks, read outcomes back.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aqueduct::{Owned, Task};
use redis::aio::ConnectionManager;
use redis::Value;

use crate::codec::{self, Reader};
use crate::wire::{self, EntryPayload, Keys};
use crate::{ensure_group, now_ms, RedisFlowError, TaskId};

/// The longest timeout a task is given, in milliseconds (about 30 years): past it a
/// deadline or a blob's expiry would overflow, in Rust or in Redis.
const FAR_AHEAD_MS: u64 = 30 * 365 * 86_400_000;

/// XADD only if the id was never submitted: a client that retries a submit (say after a
/// lost reply) with the same id adds no second entry.
const SUBMIT: &str = r"
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
end
return false
";

/// What [`Submitter::submit_with_id`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Appended as this stream entry.
    New(String),
    /// The id was submitted before; nothing was added.
    Duplicate,
}

/// The outcome stored for a task.
#[derive(Debug)]
pub enum Outcome<Out: Task> {
    /// The flow's output, its payloads copied into this process's arena.
    Ok(Owned<Out>),
    /// A handler failed the task (`aqueduct::Error::Handler`'s text); it is not retried.
    Failed(String),
    /// The deadline passed before a consumer ran it.
    Expired,
}

/// One entry of the results stream: a result was stored for `id` by `consumer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The task id.
    pub id: TaskId,
    /// The consumer that stored it.
    pub consumer: String,
    /// `ok`, `error` or `expired`.
    pub outcome: String,
}

/// An entry given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The task id (empty if the entry had none).
    pub id: TaskId,
    /// The original stream entry id.
    pub entry: String,
    /// Times it was delivered.
    pub deliveries: u64,
    /// The last attempt's error.
    pub error: String,
}

/// Appends `In` tasks for the consumers of deployment `prefix`, and reads their `Out`
/// outcomes. Cheap to clone; clones share one multiplexed connection.
pub struct Submitter<In: Task, Out: Task> {
    conn: ConnectionManager,
    keys: Keys,
    script: Arc<redis::Script>,
    seed: u64,
    counter: Arc<AtomicU64>,
    timeout: Duration,
    inline_limit: usize,
    max_len: usize,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In: Task, Out: Task> Clone for Submitter<In, Out> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            keys: self.keys.clone(),
            script: self.script.clone(),
            seed: self.seed,
            counter: self.counter.clone(),
            timeout: self.timeout,
            inline_limit: self.inline_limit,
            max_len: self.max_len,
            _types: PhantomData,
        }
    }
}

impl<In: Task, Out: Task> std::fmt::Debug for Submitter<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter")
            .field("stream", &self.keys.tasks())
            .finish_non_exhaustive()
    }
}

impl<In: Task, Out: Task> Submitter<In, Out> {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`, `redis+unix:///path/sock`) and
    /// creates the stream and consumer group `group` if missing, so that entries added
    /// before the first consumer starts are delivered to it.
    pub async fn connect(url: &str, prefix: &str, group: &str) -> Result<Self, RedisFlowError> {
        let client = redis::Client::open(url)?;
        let mut conn = ConnectionManager::new(client).await?;
        let keys = Keys::new(prefix);
        ensure_group(&mut conn, &keys.tasks(), group).await?;
        Ok(Self {
            conn,
            keys,
            script: Arc::new(redis::Script::new(SUBMIT)),
            seed: RandomState::new().hash_one(now_ms()),
            counter: Arc::new(AtomicU64::new(0)),
            timeout: Duration::from_secs(60),
            inline_limit: 64 * 1024,
            max_len: 1_000_000,
            _types: PhantomData,
        })
    }

    /// The deadline given to tasks submitted with [`Submitter::submit`]: now plus this
    /// (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Payloads up to this many bytes travel inside the stream entry; larger ones are
    /// stored under their own key (expiring an hour after the deadline) and the entry
    /// carries the key. Default 64 KiB.
    pub fn inline_limit(mut self, bytes: usize) -> Self {
        self.inline_limit = bytes;
        self
    }

    /// The stream's approximate cap (`XADD MAXLEN ~`, default 1 000 000). Trimming can
    /// drop entries not yet processed: keep it far above the backlog.
    pub fn max_len(mut self, entries: usize) -> Self {
        self.max_len = entries;
        self
    }

    /// The key names of this deployment.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A fresh task id: 64 random bits of this submitter and a counter.
    pub fn new_id(&self) -> TaskId {
        format!(
            "{:016x}-{}",
            self.seed,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Appends `task` under a new id, with the default deadline; returns the id.
    pub async fn submit(&self, task: &In) -> Result<TaskId, RedisFlowError> {
        let id = self.new_id();
        self.submit_with_id(&id, task, self.timeout).await?;
        Ok(id)
    }

    /// Appends `task` under `id` (retries of a submit reuse it), to be run within
    /// `timeout` from now. The task's payloads are copied out; the caller keeps `task`.
    pub async fn submit_with_id(
        &self,
        id: &str,
        task: &In,
        timeout: Duration,
    ) -> Result<Submitted, RedisFlowError> {
        // A timeout too long to mean anything (`Duration::MAX` for "no limit") is the
        // longest Redis accepts for an expiry, not an overflow.
        let timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .min(FAR_AHEAD_MS);
        let deadline = now_ms() + timeout_ms;
        let (bytes, payloads) = codec::split(task)?;
        let mut conn = self.conn.clone();
        let blob_ttl = timeout_ms + 3_600_000;
        let mut entry_payloads = Vec::with_capacity(payloads.len());
        for (n, p) in payloads.into_iter().enumerate() {
            if p.bytes.len() <= self.inline_limit {
                entry_payloads.push(EntryPayload::Inline(p));
            } else {
                let key = self.keys.blob(id, n);
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&p.bytes)
                    .arg("PX")
                    .arg(blob_ttl)
                    .exec_async(&mut conn)
                    .await?;
                entry_payloads.push(EntryPayload::Blob {
                    offset: p.offset,
                    key,
                });
            }
        }
        let mut payload_bytes = Vec::new();
        wire::put_entry_payloads(&mut payload_bytes, &entry_payloads);
        let entry: Option<String> = self
            .script
            .key(self.keys.tasks())
            .key(self.keys.submitted(id))
            .arg(self.max_len)
            .arg(blob_ttl)
            .arg("id")
            .arg(id)
            .arg("deadline")
            .arg(deadline)
            .arg("fp")
            .arg(<In as Task>::FINGERPRINT)
            .arg("type")
            .arg(In::LAYOUT.name)
            .arg("task")
            .arg(bytes)
            .arg("payloads")
            .arg(payload_bytes)
            .invoke_async(&mut conn)
            .await?;
        Ok(entry.map_or(Submitted::Duplicate, Submitted::New))
    }

    /// The outcome of `id`, if one is stored yet.
    pub async fn result(&self, id: &str) -> Result<Option<Outcome<Out>>, RedisFlowError> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.keys.result(id))
            .query_async(&mut self.conn.clone())
            .await?;
        value.map(|v| decode_result::<Out>(id, &v)).transpose()
    }

    /// Every result stored so far, in the order they were stored (the results stream).
    pub async fn results(&self) -> Result<Vec<Completion>, RedisFlowError> {
        let entries = xrange_all(&mut self.conn.clone(), &self.keys.done()).await?;
        Ok(entries
            .into_iter()
            .map(|(_, fields)| Completion {
                id: field(&fields, "id"),
                consumer: field(&fields, "consumer"),
                outcome: field(&fields, "outcome"),
            })
            .collect())
    }

    /// Every entry in the dead-letter stream.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, RedisFlowError> {
        let entries = xrange_all(&mut self.conn.clone(), &self.keys.dead()).await?;
        Ok(entries
            .into_iter()
            .map(|(_, fields)| DeadLetter {
                id: field(&fields, "id"),
                entry: field(&fields, "entry"),
                deliveries: field(&fields, "deliveries").parse().unwrap_or(0),
                error: field(&fields, "error"),
            })
            .collect())
    }
}

/// Decodes a stored result.
pub(crate) fn decode_result<Out: Task>(
    id: &str,
    value: &[u8],
) -> Result<Outcome<Out>, RedisFlowError> {
    let mut r = Reader::new(value);
    let tag = r.take(1)?[0];
    match tag {
        wire::RESULT_OK => {
            let found = r.u64()?;
            if found != <Out as Task>::FINGERPRINT {
                return Err(RedisFlowError::Layout {
                    id: id.to_string(),
                    name: Out::LAYOUT.name,
                    expected: <Out as Task>::FINGERPRINT,
                    found,
                });
            }
            let len = r.u32()? as usize;
            let bytes = r.take(len)?;
            let payloads = r.payloads()?;
            Ok(Outcome::Ok(codec::join("result", bytes, &payloads)?))
        }
        wire::RESULT_ERROR => Ok(Outcome::Failed(
            String::from_utf8_lossy(r.rest()).into_owned(),
        )),
        wire::RESULT_EXPIRED => Ok(Outcome::Expired),
        other => Err(codec::CodecError::Payloads(format!("result tag {other}")).into()),
    }
}

/// Encodes a successful output.
pub(crate) fn encode_ok<Out: Task>(out: &Out) -> Result<Vec<u8>, codec::CodecError> {
    let (bytes, payloads) = codec::split(out)?;
    let mut value = vec![wire::RESULT_OK];
    value.extend_from_slice(&<Out as Task>::FINGERPRINT.to_le_bytes());
    value.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    value.extend_from_slice(&bytes);
    codec::put_payloads(&mut value, &payloads);
    Ok(value)
}

type Fields = Vec<(String, Value)>;

/// Every entry of a stream, in pages of 1000.
pub(crate) async fn xrange_all(
    conn: &mut ConnectionManager,
    key: &str,
) -> Result<Vec<(String, Fields)>, RedisFlowError> {
    let mut out = Vec::new();
    let mut start = "-".to_string();
    loop {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        let n = reply.ids.len();
        for entry in reply.ids {
            start = format!("({}", entry.id);
            out.push((entry.id, entry.map.into_iter().collect()));
        }
        if n < 1000 {
            return Ok(out);
        }
    }
}

/// A field of an entry as text (empty if missing).
pub(crate) fn field(fields: &[(String, Value)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| redis::from_redis_value::<String>(v).ok())
        .unwrap_or_default()
}
