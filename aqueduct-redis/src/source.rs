//! The consumer side: feed a host's flow from the stream, store each outcome once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aqueduct::{Error, Flow, Stage, Task};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::codec::{self, Payload};
use crate::submitter::{encode_ok, field};
use crate::wire::{self, EntryPayload, Keys};
use crate::{ensure_group, now_ms, RedisFlowError};

/// Stores the outcome under the task id only if none is stored, records it in the
/// results stream only then, and acks the entry either way: one visible result per id,
/// whichever attempt gets there first.
const COMMIT: &str = r"
local new = redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[6])
if new then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[4], 'consumer', ARGV[5], 'outcome', ARGV[7])
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
if new then return 1 end
return 0
";

/// Claims entries idle longer than `min_idle` (their consumer died, or left them pending
/// after a crash or timeout). One delivered more than `max_deliveries` times goes to the
/// dead-letter stream with its last error, and is acked; the rest are returned to run.
const CLAIM: &str = r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local live = {}
local dead = 0
for _, e in ipairs(r[2]) do
  if e and e[2] then
    local eid = e[1]
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], eid, eid, 1)
    local n = 0
    if p[1] then n = p[1][4] end
    if n > tonumber(ARGV[6]) then
      local err = redis.call('HGET', KEYS[3], eid)
      if not err then err = 'no error recorded' end
      local fields = {'entry', eid, 'deliveries', n, 'error', err}
      for i = 1, #e[2] do fields[#fields + 1] = e[2][i] end
      redis.call('XADD', KEYS[2], '*', unpack(fields))
      redis.call('XACK', KEYS[1], ARGV[1], eid)
      redis.call('HDEL', KEYS[3], eid)
      dead = dead + 1
    else
      live[#live + 1] = e
    end
  end
end
return {r[1], live, dead}
";

/// How a [`RedisSource`] reads, claims and stores.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The deployment's key prefix (the submitter's).
    pub prefix: String,
    /// The consumer group (default `aqueduct`).
    pub group: String,
    /// This consumer's name, unique in the group (e.g. host and pid).
    pub consumer: String,
    /// Most entries in flight at once (read and not yet stored or left pending).
    pub credits: usize,
    /// The first stage's queue capacity, if known: reads are also bounded by the room
    /// left in it (`capacity - Flow::stats()[0].queued`).
    pub first_stage_capacity: Option<usize>,
    /// The longest one attempt may run (it also ends at the task's deadline).
    pub run_timeout: Duration,
    /// An entry pending this long is claimed by whichever consumer looks next. Must be
    /// above `run_timeout + commit_retry`, so a live attempt is not claimed from under
    /// its consumer.
    pub claim_idle: Duration,
    /// How often to look for entries to claim.
    pub claim_interval: Duration,
    /// Deliveries after which an entry goes to the dead-letter stream instead.
    pub max_deliveries: u64,
    /// How long one `XREADGROUP` blocks waiting for entries.
    pub block: Duration,
    /// How long stored results live.
    pub result_ttl: Duration,
    /// How long to keep retrying the store of a finished task's outcome (Redis
    /// unreachable, restarting) before leaving the entry pending.
    pub commit_retry: Duration,
}

impl SourceConfig {
    /// Defaults: group `aqueduct`, 64 credits, attempts of at most 10 s, claim after 30 s
    /// idle (looked for every 5 s), 3 deliveries, results kept a day.
    pub fn new(prefix: impl Into<String>, consumer: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            group: "aqueduct".into(),
            consumer: consumer.into(),
            credits: 64,
            first_stage_capacity: None,
            run_timeout: Duration::from_secs(10),
            claim_idle: Duration::from_secs(30),
            claim_interval: Duration::from_secs(5),
            max_deliveries: 3,
            block: Duration::from_millis(100),
            result_ttl: Duration::from_secs(24 * 3600),
            commit_retry: Duration::from_secs(10),
        }
    }

    /// Credits from the flow's first stage `S`: its queue capacity plus one batch per
    /// worker, and reads bounded by the room in its queue.
    pub fn credits_for<S: Stage>(mut self) -> Self {
        let capacity = S::CONFIG.queue_capacity();
        self.credits = capacity + S::CONFIG.nprocs * S::CONFIG.batch_size;
        self.first_stage_capacity = Some(capacity);
        self
    }
}

/// Counters of one source, readable while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Entries read with `XREADGROUP`.
    pub read: u64,
    /// Entries claimed from other consumers (or this one) after `claim_idle`.
    pub claimed: u64,
    /// Outputs stored.
    pub ok: u64,
    /// Handler errors stored.
    pub failed: u64,
    /// Entries whose deadline had passed, stored as expired.
    pub expired: u64,
    /// Entries acked without running because their result was already stored.
    pub skipped: u64,
    /// Outcomes discarded because another attempt stored one first.
    pub discarded: u64,
    /// Entries refused for a foreign task layout (left pending for other consumers).
    pub refused: u64,
    /// Attempts that crashed, timed out or were stopped (left pending).
    pub left_pending: u64,
    /// Entries this consumer moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Redis commands that failed (and were retried).
    pub redis_errors: u64,
    /// The last refusal, in words.
    pub last_refusal: Option<String>,
}

#[derive(Default)]
struct Counters {
    read: AtomicU64,
    claimed: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
    skipped: AtomicU64,
    discarded: AtomicU64,
    refused: AtomicU64,
    left_pending: AtomicU64,
    dead_lettered: AtomicU64,
    redis_errors: AtomicU64,
    last_refusal: Mutex<Option<String>>,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> SourceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SourceStats {
            read: get(&self.read),
            claimed: get(&self.claimed),
            ok: get(&self.ok),
            failed: get(&self.failed),
            expired: get(&self.expired),
            skipped: get(&self.skipped),
            discarded: get(&self.discarded),
            refused: get(&self.refused),
            left_pending: get(&self.left_pending),
            dead_lettered: get(&self.dead_lettered),
            redis_errors: get(&self.redis_errors),
            last_refusal: self.last_refusal.lock().map(|r| r.clone()).unwrap_or(None),
        }
    }
}

/// Asks a running [`RedisSource::run`] to stop: it reads nothing more, lets every entry
/// it has read run to its outcome and stores it, stops the flow with `stop(true)`, and
/// returns.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Stops the source (idempotent).
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// Everything an attempt needs after its entry was admitted.
struct Shared {
    config: SourceConfig,
    keys: Keys,
    conn: ConnectionManager,
    commit: redis::Script,
    counters: Counters,
}

/// One host's consumer: reads entries of the task stream, runs them through `flow`, and
/// stores their outcomes. See the crate documentation for the protocol.
pub struct RedisSource<In: Task, Out: Task> {
    flow: Flow<In, Out>,
    shared: Arc<Shared>,
    read_conn: ConnectionManager,
    claim: redis::Script,
    stop: Arc<watch::Sender<bool>>,
}

impl<In: Task, Out: Task> std::fmt::Debug for RedisSource<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A stream entry: its id and fields.
type Entry = (String, Vec<(String, Value)>);

/// A parsed task entry.
struct TaskEntry {
    entry: String,
    id: String,
    deadline: u64,
    bytes: Vec<u8>,
    payloads: Vec<EntryPayload>,
}

enum Parsed {
    Run(TaskEntry),
    /// Not for this consumer: left pending for one with the producer's layout.
    Refuse(String),
    /// Never runnable anywhere: dead-lettered at once.
    Malformed(String),
}

impl<In: Task, Out: Task> RedisSource<In, Out> {
    /// Connects to `url` (two connections: one for blocking reads, one for the rest;
    /// both reconnect by themselves) and creates the group if missing.
    pub async fn new(
        url: &str,
        flow: Flow<In, Out>,
        config: SourceConfig,
    ) -> Result<Self, RedisFlowError> {
        if config.credits == 0 || config.max_deliveries == 0 {
            return Err(RedisFlowError::Config(
                "credits and max_deliveries must be at least 1".into(),
            ));
        }
        if config.claim_idle <= config.run_timeout + config.commit_retry {
            return Err(RedisFlowError::Config(format!(
                "claim_idle ({:?}) must exceed run_timeout + commit_retry ({:?}), or live attempts get claimed",
                config.claim_idle,
                config.run_timeout + config.commit_retry
            )));
        }
        let client = redis::Client::open(url)?;
        let manager_config = || {
            ConnectionManagerConfig::new()
                .set_response_timeout(config.block + Duration::from_secs(5))
                .set_connection_timeout(Duration::from_secs(1))
                .set_max_delay(500)
        };
        let mut conn = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
        let read_conn = ConnectionManager::new_with_config(client, manager_config()).await?;
        let keys = Keys::new(&config.prefix);
        ensure_group(&mut conn, &keys.tasks(), &config.group).await?;
        Ok(Self {
            flow,
            shared: Arc::new(Shared {
                config,
                keys,
                conn,
                commit: redis::Script::new(COMMIT),
                counters: Counters::default(),
            }),
            read_conn,
            claim: redis::Script::new(CLAIM),
            stop: Arc::new(watch::channel(false).0),
        })
    }

    /// A handle that stops [`RedisSource::run`].
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// The counters so far.
    pub fn stats(&self) -> SourceStats {
        self.shared.counters.snapshot()
    }

    /// Reads, runs and stores until stopped through a [`StopHandle`]; then runs what it
    /// has read to its outcome, stops the flow (`stop(true)`) and returns the counters. Redis errors
    /// are counted and retried, never returned: a restarted server is reconnected to.
    pub async fn run(&mut self) -> SourceStats {
        let mut attempts: JoinSet<()> = JoinSet::new();
        let mut stopped = self.stop.subscribe();
        let mut cursor = "0-0".to_string();
        let mut next_claim = Instant::now();
        loop {
            while attempts.try_join_next().is_some() {}
            if *stopped.borrow() {
                break;
            }
            let free = self.free(attempts.len());
            if free == 0 {
                tokio::select! {
                    _ = attempts.join_next() => {}
                    _ = stopped.changed() => {}
                }
                continue;
            }
            let got = if Instant::now() >= next_claim {
                next_claim = Instant::now() + self.shared.config.claim_interval;
                self.claim(&mut cursor, free).await
            } else {
                self.read(free).await
            };
            match got {
                Ok(entries) => self.admit(entries, &mut attempts).await,
                Err(e) => {
                    bump(&self.shared.counters.redis_errors, 1);
                    if e.code() == Some("NOGROUP") {
                        let mut conn = self.shared.conn.clone();
                        let keys = &self.shared.keys;
                        let _ =
                            ensure_group(&mut conn, &keys.tasks(), &self.shared.config.group).await;
                    }
                    // Back off before the next try (the connection reconnects meanwhile).
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stopped.changed() => {}
                    }
                }
            }
        }
        // Drain: every entry read runs to its outcome while the flow still takes tasks
        // (an attempt not yet in the flow's queue would be turned away by a stopping
        // flow and left pending for `claim_idle`), then the flow stops.
        while attempts.join_next().await.is_some() {}
        self.flow.stop(true).await;
        self.stats()
    }

    /// Entries this consumer may take now.
    fn free(&self, in_flight: usize) -> usize {
        let config = &self.shared.config;
        let mut free = config.credits.saturating_sub(in_flight);
        if let Some(capacity) = config.first_stage_capacity {
            let queued = self.flow.stats().first().map_or(0, |s| s.queued);
            free = free.min(capacity.saturating_sub(queued));
        }
        free
    }

    async fn read(&mut self, count: usize) -> Result<Vec<Entry>, redis::RedisError> {
        let config = &self.shared.config;
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&config.group)
            .arg(&config.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(config.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.shared.keys.tasks())
            .arg(">")
            .query_async(&mut self.read_conn)
            .await?;
        let entries: Vec<Entry> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|e| (e.id, e.map.into_iter().collect()))
            .collect();
        bump(&self.shared.counters.read, entries.len() as u64);
        Ok(entries)
    }

    async fn claim(
        &mut self,
        cursor: &mut String,
        count: usize,
    ) -> Result<Vec<Entry>, redis::RedisError> {
        let shared = &self.shared;
        let config = &shared.config;
        let reply: Value = self
            .claim
            .key(shared.keys.tasks())
            .key(shared.keys.dead())
            .key(shared.keys.errors())
            .arg(&config.group)
            .arg(&config.consumer)
            .arg(config.claim_idle.as_millis() as u64)
            .arg(cursor.as_str())
            .arg(count)
            .arg(config.max_deliveries)
            .invoke_async(&mut shared.conn.clone())
            .await?;
        let Value::Array(parts) = reply else {
            return Ok(Vec::new());
        };
        let mut parts = parts.into_iter();
        if let Some(next) = parts.next() {
            *cursor = redis::from_redis_value(&next).unwrap_or_else(|_| "0-0".into());
        }
        let mut entries = Vec::new();
        if let Some(Value::Array(claimed)) = parts.next() {
            for entry in claimed {
                if let Some(entry) = entry_of(entry) {
                    entries.push(entry);
                }
            }
        }
        if let Some(Value::Int(dead)) = parts.next() {
            bump(&shared.counters.dead_lettered, dead as u64);
        }
        bump(&shared.counters.claimed, entries.len() as u64);
        Ok(entries)
    }

    /// Sorts entries into refused, malformed, expired, already answered and runnable, and
    /// starts an attempt for each runnable one.
    async fn admit(&mut self, entries: Vec<Entry>, attempts: &mut JoinSet<()>) {
        if entries.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let counters = &shared.counters;
        let mut runnable = Vec::new();
        for (entry, fields) in entries {
            match parse::<In>(entry.clone(), &fields) {
                Parsed::Run(task) if task.deadline <= now_ms() => {
                    bump(&counters.expired, 1);
                    let value = vec![wire::RESULT_EXPIRED];
                    commit(&shared, &task, value, "expired").await;
                }
                Parsed::Run(task) => runnable.push(task),
                Parsed::Refuse(reason) => {
                    bump(&counters.refused, 1);
                    if let Ok(mut last) = counters.last_refusal.lock() {
                        *last = Some(reason.clone());
                    }
                    let _ = redis::cmd("HSET")
                        .arg(shared.keys.errors())
                        .arg(&entry)
                        .arg(&reason)
                        .exec_async(&mut shared.conn.clone())
                        .await;
                }
                Parsed::Malformed(reason) => {
                    dead_letter_now(&shared, &entry, &fields, &reason).await
                }
            }
        }
        if runnable.is_empty() {
            return;
        }
        // One round trip: which of these already have a result?
        let mut pipe = redis::pipe();
        for task in &runnable {
            pipe.exists(shared.keys.result(&task.id));
        }
        let exists: Vec<bool> = match pipe.query_async(&mut shared.conn.clone()).await {
            Ok(exists) => exists,
            Err(_) => {
                // Unknown: run them all; the commit keeps the first result anyway.
                bump(&counters.redis_errors, 1);
                vec![false; runnable.len()]
            }
        };
        for (task, done) in runnable.into_iter().zip(exists) {
            if done {
                bump(&counters.skipped, 1);
                let _ = redis::cmd("XACK")
                    .arg(shared.keys.tasks())
                    .arg(&shared.config.group)
                    .arg(&task.entry)
                    .exec_async(&mut shared.conn.clone())
                    .await;
                continue;
            }
            let owned = match resolve(&shared, &task).await {
                Ok(payloads) => match codec::join::<In>("task", &task.bytes, &payloads) {
                    Ok(owned) => owned,
                    Err(e) => {
                        let reason = format!("the task could not be decoded: {e}");
                        leave_pending(&shared, &task, &reason).await;
                        continue;
                    }
                },
                Err(reason) => {
                    leave_pending(&shared, &task, &reason).await;
                    continue;
                }
            };
            let flow = self.flow.clone();
            let shared = shared.clone();
            attempts.spawn(async move {
                let left = Duration::from_millis(task.deadline.saturating_sub(now_ms()));
                let timeout = left.min(shared.config.run_timeout);
                let result = flow.process_timeout(owned.into_inner(), timeout).await;
                let (value, outcome) = match result {
                    Ok(out) => match encode_ok(&*out) {
                        Ok(value) => (value, "ok"),
                        Err(e) => (
                            error_value(&format!("the output could not be encoded: {e}")),
                            "error",
                        ),
                    },
                    Err(e @ Error::Handler { .. }) => (error_value(&e.to_string()), "error"),
                    Err(e) => {
                        // Crashed, timed out, stopped, overloaded: another attempt may
                        // succeed, so the entry stays pending and is claimed again.
                        leave_pending(&shared, &task, &e.to_string()).await;
                        return;
                    }
                };
                bump(
                    if outcome == "ok" {
                        &shared.counters.ok
                    } else {
                        &shared.counters.failed
                    },
                    1,
                );
                commit(&shared, &task, value, outcome).await;
            });
        }
    }
}

fn error_value(message: &str) -> Vec<u8> {
    let mut value = vec![wire::RESULT_ERROR];
    value.extend_from_slice(message.as_bytes());
    value
}

/// An entry of the claim script's reply: `[id, [field, value, ...]]`.
fn entry_of(value: Value) -> Option<Entry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let mut parts = parts.into_iter();
    let id: String = redis::from_redis_value(&parts.next()?).ok()?;
    let Some(Value::Array(flat)) = parts.next() else {
        return None;
    };
    let mut fields = Vec::new();
    let mut flat = flat.into_iter();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        fields.push((redis::from_redis_value(&k).ok()?, v));
    }
    Some((id, fields))
}

fn bytes_field(fields: &[(String, Value)], name: &str) -> Option<Vec<u8>> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| redis::from_redis_value::<Vec<u8>>(v).ok())
}

fn parse<In: Task>(entry: String, fields: &[(String, Value)]) -> Parsed {
    let id = field(fields, "id");
    let (Ok(deadline), Ok(fp), Some(bytes), Some(payloads)) = (
        field(fields, "deadline").parse::<u64>(),
        field(fields, "fp").parse::<u64>(),
        bytes_field(fields, "task"),
        bytes_field(fields, "payloads"),
    ) else {
        return Parsed::Malformed(format!(
            "entry {entry} lacks one of the fields id, deadline, fp, task, payloads"
        ));
    };
    if id.is_empty() {
        return Parsed::Malformed(format!("entry {entry} has no task id"));
    }
    if fp != <In as Task>::FINGERPRINT {
        return Parsed::Refuse(format!(
            "refused entry {entry} (task {id}): it holds a `{}` with layout fingerprint {fp:#018x}, but this consumer's flow takes `{}` with fingerprint {:#018x}; the entry is left pending for a consumer built with the producer's task layout",
            field(fields, "type"),
            In::LAYOUT.name,
            <In as Task>::FINGERPRINT
        ));
    }
    match wire::read_entry_payloads(&payloads) {
        Ok(payloads) => Parsed::Run(TaskEntry {
            entry,
            id,
            deadline,
            bytes,
            payloads,
        }),
        Err(e) => Parsed::Malformed(format!("entry {entry}: {e}")),
    }
}

/// Fetches blob payloads.
async fn resolve(shared: &Shared, task: &TaskEntry) -> Result<Vec<Payload>, String> {
    let mut out = Vec::with_capacity(task.payloads.len());
    for p in &task.payloads {
        match p {
            EntryPayload::Inline(p) => out.push(p.clone()),
            EntryPayload::Blob { offset, key } => {
                let bytes: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut shared.conn.clone())
                    .await
                    .map_err(|e| format!("reading payload {key}: {e}"))?;
                let bytes = bytes.ok_or_else(|| format!("payload {key} is missing"))?;
                out.push(Payload {
                    offset: *offset,
                    bytes,
                });
            }
        }
    }
    Ok(out)
}

/// Records why an attempt did not finish; the entry stays pending.
async fn leave_pending(shared: &Shared, task: &TaskEntry, reason: &str) {
    bump(&shared.counters.left_pending, 1);
    let _ = redis::cmd("HSET")
        .arg(shared.keys.errors())
        .arg(&task.entry)
        .arg(reason)
        .exec_async(&mut shared.conn.clone())
        .await;
}

/// Stores `value` as `task`'s outcome unless one exists, and acks; retried while Redis
/// is unreachable, up to `commit_retry` (then the entry stays pending).
async fn commit(shared: &Shared, task: &TaskEntry, value: Vec<u8>, outcome: &str) {
    let keys = &shared.keys;
    let config = &shared.config;
    let give_up = Instant::now() + config.commit_retry;
    let mut pause = Duration::from_millis(20);
    loop {
        let mut call = shared.commit.prepare_invoke();
        call.key(keys.result(&task.id))
            .key(keys.done())
            .key(keys.tasks())
            .key(keys.errors());
        for p in &task.payloads {
            if let EntryPayload::Blob { key, .. } = p {
                call.key(key);
            }
        }
        call.arg(&config.group)
            .arg(&task.entry)
            .arg(&value)
            .arg(&task.id)
            .arg(&config.consumer)
            .arg(config.result_ttl.as_millis() as u64)
            .arg(outcome);
        match call.invoke_async::<i64>(&mut shared.conn.clone()).await {
            Ok(stored) => {
                if stored == 0 {
                    bump(&shared.counters.discarded, 1);
                }
                return;
            }
            Err(_) => {
                bump(&shared.counters.redis_errors, 1);
                if Instant::now() + pause > give_up {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Moves an entry that can never run to the dead-letter stream, and acks it.
async fn dead_letter_now(shared: &Shared, entry: &str, fields: &[(String, Value)], reason: &str) {
    let mut xadd = redis::cmd("XADD");
    xadd.arg(shared.keys.dead())
        .arg("*")
        .arg("entry")
        .arg(entry)
        .arg("error")
        .arg(reason);
    for (k, v) in fields {
        if let Ok(v) = redis::from_redis_value::<Vec<u8>>(v) {
            xadd.arg(k).arg(v);
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic()
        .add_command(xadd)
        .ignore()
        .cmd("XACK")
        .arg(shared.keys.tasks())
        .arg(&shared.config.group)
        .arg(entry)
        .ignore();
    match pipe.exec_async(&mut shared.conn.clone()).await {
        Ok(()) => bump(&shared.counters.dead_lettered, 1),
        Err(_) => bump(&shared.counters.redis_errors, 1),
    }
}
