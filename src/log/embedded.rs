//! The embedded log: a SQLite database in WAL mode with `synchronous=FULL`,
//! so a committed transaction has been fsynced to the WAL before anyone is
//! told it is durable.
//!
//! One writer thread owns the connection and does **group commit**: it takes
//! the first waiting append, then every other append already queued (up to a
//! bound), and commits them in one transaction. Under concurrent load many
//! messages share one fsync; a lone message is committed at once, with no
//! artificial delay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::partitioner::partition_for_key;
use super::{Log, LogError, Position, Record};

pub const DB_FILE: &str = "hl7bridge.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics (
    name        TEXT PRIMARY KEY,
    partitions  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    id           INTEGER PRIMARY KEY,
    topic        TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    offset       INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    key          TEXT,
    headers      TEXT    NOT NULL,
    value        BLOB    NOT NULL
);
-- The next offset of each partition, written in the same transaction as the
-- records. The single writer assigns offsets, so they are unique and dense by
-- construction; a (topic, partition, offset) index would add one hot leaf
-- page per partition to every commit, and this table is one page.
-- `tail` walks ids in order and filters by topic.
CREATE TABLE IF NOT EXISTS partition_offsets (
    topic        TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    next_offset  INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
-- The streaming stage's progress: the store id of the last input record it
-- has fully handled, committed in the same transaction as its outputs.
CREATE TABLE IF NOT EXISTS stage_cursors (
    grp          TEXT    PRIMARY KEY,
    last_id      INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
);
-- How many input records had each outcome (resources, no_content, duplicate, dead).
CREATE TABLE IF NOT EXISTS stage_outcomes (
    grp          TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (grp, outcome)
) WITHOUT ROWID;
-- The sender-duplicate window: (facility, MSH-10, SHA-256 of the bytes) and
-- the input record that first carried it.
CREATE TABLE IF NOT EXISTS dedup (
    sender       TEXT    NOT NULL,
    control_id   TEXT    NOT NULL,
    digest       BLOB    NOT NULL,
    source       TEXT    NOT NULL,
    seen_ms      INTEGER NOT NULL,
    PRIMARY KEY (sender, control_id, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_seen ON dedup (seen_ms);
";

#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    /// Partitions for topics created from now on.
    pub partitions: u32,
    /// Most records one group commit may hold.
    pub max_batch_records: usize,
    /// Appends that may wait for the writer; further appends wait to enqueue.
    pub queue_depth: usize,
}

impl EmbeddedConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            partitions: 6,
            max_batch_records: 4096,
            queue_depth: 1024,
        }
    }
}

/// What the streaming stage commits with its outputs, in the same
/// transaction: that is what makes the embedded stage exactly-once.
#[derive(Debug, Clone, Default)]
pub struct StageCommit {
    pub group: String,
    /// The cursor this batch started from; the commit fails if another
    /// instance moved it meanwhile, so two stages can never both emit.
    pub prev_id: i64,
    /// Store id of the last input record handled.
    pub last_id: i64,
    pub seen: Vec<Seen>,
    pub outcomes: Vec<(&'static str, u64)>,
    /// Forget dedup entries older than this (milliseconds since the epoch).
    pub prune_before_ms: Option<i64>,
}

/// One dedup-window entry.
#[derive(Debug, Clone)]
pub struct Seen {
    pub sender: String,
    pub control_id: String,
    pub digest: Vec<u8>,
    /// `topic/partition/offset` of the input record.
    pub source: String,
    pub seen_ms: i64,
}

struct Append {
    records: Vec<Record>,
    stage: Option<StageCommit>,
    reply: oneshot::Sender<Result<Vec<Position>, String>>,
}

pub struct EmbeddedLog {
    tx: Mutex<Option<mpsc::Sender<Append>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Signalled after each ingest commit, so an in-process stage picks new
    /// records up at once instead of on its next poll.
    appended: std::sync::Arc<tokio::sync::Notify>,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the store under `data_dir` and starts the writer.
    pub fn open(cfg: EmbeddedConfig) -> Result<Self, LogError> {
        if cfg.partitions == 0 {
            return Err(LogError::Config("partitions must be at least 1".into()));
        }
        std::fs::create_dir_all(&cfg.data_dir)?;
        let conn = Connection::open(cfg.data_dir.join(DB_FILE))?;
        // A `transform --data-dir` process may share the file with `serve`.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        let mut state = WriterState::load(&conn, cfg.partitions)?;
        let (tx, mut rx) = mpsc::channel::<Append>(cfg.queue_depth.max(1));
        let max_batch = cfg.max_batch_records.max(1);
        let appended = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = appended.clone();
        let writer = std::thread::Builder::new()
            .name("hl7bridge-store".into())
            .spawn(move || {
                let mut conn = conn;
                while let Some(first) = rx.blocking_recv() {
                    let mut n = first.records.len();
                    let mut group = vec![first];
                    while n < max_batch {
                        match rx.try_recv() {
                            Ok(more) => {
                                n += more.records.len();
                                group.push(more);
                            }
                            Err(_) => break,
                        }
                    }
                    // A stage commit can fail on its own (its cursor moved), so it
                    // gets its own transaction: never a reason to NAK ingest.
                    let (stage, plain): (Vec<_>, Vec<_>) =
                        group.into_iter().partition(|a| a.stage.is_some());
                    if !plain.is_empty() {
                        tracing::trace!(appends = plain.len(), records = n, "group commit");
                        state.commit_and_reply(&mut conn, plain);
                        notify.notify_one();
                    }
                    for a in stage {
                        state.commit_and_reply(&mut conn, vec![a]);
                    }
                }
            })?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            appended,
        })
    }

    /// Resolves after the next commit of appended records (or at once if one
    /// happened since the last call).
    pub fn appended(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.appended.clone()
    }

    /// Stops the writer after it has committed everything already queued.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl EmbeddedLog {
    /// Appends the stage's outputs and advances its cursor in one transaction.
    pub fn commit_stage(
        &self,
        records: Vec<Record>,
        stage: StageCommit,
    ) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        self.submit(records, Some(stage))
    }

    fn submit(
        &self,
        records: Vec<Record>,
        stage: Option<StageCommit>,
    ) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        let tx = self.tx.lock().ok().and_then(|t| t.clone());
        async move {
            let tx = tx.ok_or(LogError::Closed)?;
            let (reply, rx) = oneshot::channel();
            tx.send(Append {
                records,
                stage,
                reply,
            })
            .await
            .map_err(|_| LogError::Closed)?;
            match rx.await {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(e)) => Err(LogError::Commit(e)),
                Err(_) => Err(LogError::Closed),
            }
        }
        .boxed()
    }
}

impl Log for EmbeddedLog {
    fn append(&self, records: Vec<Record>) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        self.submit(records, None)
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

/// Offsets and partition counts, owned by the writer thread.
struct WriterState {
    default_partitions: u32,
    partitions: HashMap<String, u32>,
    next_offset: HashMap<(String, i32), i64>,
    round_robin: u32,
}

impl WriterState {
    fn load(conn: &Connection, default_partitions: u32) -> Result<Self, rusqlite::Error> {
        let mut partitions = HashMap::new();
        let mut stmt = conn.prepare("SELECT name, partitions FROM topics")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))? {
            let (name, n) = row?;
            partitions.insert(name, n);
        }
        let mut next_offset = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT topic, partition, MAX(offset) FROM records GROUP BY topic, partition",
        )?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            let (t, p, o) = row?;
            next_offset.insert((t, p), o + 1);
        }
        Ok(Self {
            default_partitions,
            partitions,
            next_offset,
            round_robin: 0,
        })
    }

    fn commit_and_reply(&mut self, conn: &mut Connection, group: Vec<Append>) {
        match self.commit(conn, &group) {
            Ok(mut positions) => {
                for a in group.into_iter().rev() {
                    let mine = positions.split_off(positions.len() - a.records.len());
                    let _ = a.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, appends = group.len(), "store commit failed");
                for a in group {
                    let _ = a.reply.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Commits every record of the group in one transaction. Offsets advance
    /// only if the commit succeeds.
    fn commit(
        &mut self,
        conn: &mut Connection,
        group: &[Append],
    ) -> Result<Vec<Position>, rusqlite::Error> {
        // IMMEDIATE: take the write lock first, so what is read below (offsets,
        // topics) is current even if another process (`transform --data-dir`,
        // `reconcile --repair`) wrote to the same file since our last commit.
        // BEGIN and COMMIT are cached statements: `Connection::transaction`
        // parses and plans both again for every group (profiled).
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let written = self
            .write(conn, group)
            .and_then(|w| conn.prepare_cached("COMMIT")?.execute([]).map(|_| w));
        match written {
            Ok((positions, next, new_topics)) => {
                self.next_offset.extend(next);
                self.partitions.extend(new_topics);
                Ok(positions)
            }
            Err(e) => {
                // Nothing of the group is kept; the error goes to every append.
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }

    /// The statements of one group commit, inside its transaction.
    #[allow(clippy::type_complexity)]
    fn write(
        &mut self,
        conn: &Connection,
        group: &[Append],
    ) -> Result<(Vec<Position>, Vec<((String, i32), i64)>, Vec<(String, u32)>), rusqlite::Error>
    {
        let mut new_topics: Vec<(String, u32)> = Vec::new();
        // Next offset of each (topic, partition) this group wrote to; a group
        // touches few of them, so a list beats a map.
        let mut next: Vec<((String, i32), i64)> = Vec::new();
        let mut positions = Vec::with_capacity(group.iter().map(|a| a.records.len()).sum());
        let mut headers = String::with_capacity(1024);
        {
            let mut insert = conn.prepare_cached(
                "INSERT INTO records (topic, partition, offset, timestamp_ms, key, headers, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in group.iter().flat_map(|a| &a.records) {
                let n = match self.partitions.get(&r.topic).copied() {
                    Some(n) => n,
                    None => match new_topics.iter().find(|(t, _)| *t == r.topic) {
                        Some((_, n)) => *n,
                        None => {
                            conn.execute(
                                "INSERT OR IGNORE INTO topics (name, partitions) VALUES (?1, ?2)",
                                params![r.topic, self.default_partitions],
                            )?;
                            // Another process may have created it first, with its count.
                            let n: u32 = conn.query_row(
                                "SELECT partitions FROM topics WHERE name = ?1",
                                params![r.topic],
                                |row| row.get(0),
                            )?;
                            new_topics.push((r.topic.clone(), n));
                            n
                        }
                    },
                };
                let partition = match (r.partition, &r.key) {
                    (Some(p), _) if p >= 0 && (p as u32) < n => p as u32,
                    (Some(p), _) => {
                        return Err(rusqlite::Error::ToSqlConversionFailure(
                            format!(
                                "partition {p} does not exist in {} ({n} partitions)",
                                r.topic
                            )
                            .into(),
                        ))
                    }
                    (None, Some(k)) => partition_for_key(k.as_bytes(), n),
                    (None, None) => {
                        self.round_robin = self.round_robin.wrapping_add(1);
                        self.round_robin % n
                    }
                } as i32;
                let slot = next
                    .iter()
                    .position(|((t, p), _)| *p == partition && *t == r.topic);
                let offset = match slot {
                    Some(i) => next[i].1,
                    // Read inside the transaction rather than trusted from the
                    // cache: another writer process may have appended here.
                    None => conn
                        .prepare_cached(
                            "SELECT next_offset FROM partition_offsets WHERE topic = ?1 AND partition = ?2",
                        )?
                        .query_row(params![r.topic, partition], |row| row.get(0))
                        .optional()?
                        .unwrap_or_else(|| {
                            self.next_offset
                                .get(&(r.topic.clone(), partition))
                                .copied()
                                .unwrap_or(0)
                        }),
                };
                headers_json(&mut headers, &r.headers);
                insert.execute(params![
                    r.topic,
                    partition,
                    offset,
                    r.timestamp_ms,
                    r.key,
                    headers.as_str(),
                    &r.value[..]
                ])?;
                match slot {
                    Some(i) => next[i].1 = offset + 1,
                    None => next.push(((r.topic.clone(), partition), offset + 1)),
                }
                positions.push(Position {
                    topic: r.topic.clone(),
                    partition,
                    offset,
                });
            }
        }
        {
            let mut upsert = conn.prepare_cached(
                "INSERT INTO partition_offsets (topic, partition, next_offset) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            )?;
            for ((topic, partition), o) in &next {
                upsert.execute(params![topic, partition, o])?;
            }
        }
        for s in group.iter().filter_map(|a| a.stage.as_ref()) {
            apply_stage(conn, s)?;
        }
        Ok((positions, next, new_topics))
    }
}

/// The headers as the JSON array of `[name, value]` pairs that
/// `serde_json::to_string(&Vec<(String, String)>)` gives, written into a
/// buffer reused across the group (profiled: serde's serializer and its
/// allocation were a tenth of the writer's instructions per record).
fn headers_json(out: &mut String, headers: &[(String, String)]) {
    out.clear();
    out.push('[');
    for (i, (k, v)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        json_string(out, k);
        out.push(',');
        json_string(out, v);
        out.push(']');
    }
    out.push(']');
}

/// A JSON string literal, escaped as serde_json escapes it.
fn json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(off) = find_json_escape(&bytes[start..]) {
        let i = start + off;
        let b = bytes[i];
        // Every escaped byte is ASCII, so `i` is a char boundary.
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The index of the first byte JSON must escape (`"`, `\` or a control
/// character below 0x20), eight bytes per step: header values are mostly
/// plain text, so the common case is one copy of the whole value.
fn find_json_escape(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (LO * u64::from(b'"'));
        let backslash = x ^ (LO * u64::from(b'\\'));
        // Lowest flagged byte of each test is a true match (borrows only
        // flag bytes above one), so the lowest of the union is the first.
        let flagged = (quote.wrapping_sub(LO) & !quote
            | backslash.wrapping_sub(LO) & !backslash
            | x.wrapping_sub(LO * 0x20) & !x)
            & HI;
        if flagged != 0 {
            return Some(base + (flagged.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|i| base + i)
}

fn apply_stage(txn: &Connection, s: &StageCommit) -> Result<(), rusqlite::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let current: i64 = txn
        .query_row(
            "SELECT last_id FROM stage_cursors WHERE grp = ?1",
            params![s.group],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    if current != s.prev_id {
        return Err(rusqlite::Error::ToSqlConversionFailure(
            format!(
                "stage cursor of group {:?} moved from {} to {current} under this instance; is another transform running?",
                s.group, s.prev_id
            )
            .into(),
        ));
    }
    txn.execute(
        "INSERT INTO stage_cursors (grp, last_id, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (grp) DO UPDATE SET last_id = excluded.last_id, updated_ms = excluded.updated_ms",
        params![s.group, s.last_id, now],
    )?;
    let mut count = txn.prepare_cached(
        "INSERT INTO stage_outcomes (grp, outcome, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (grp, outcome) DO UPDATE SET count = count + excluded.count",
    )?;
    for (outcome, n) in &s.outcomes {
        count.execute(params![s.group, outcome, *n as i64])?;
    }
    let mut seen = txn.prepare_cached(
        "INSERT INTO dedup (sender, control_id, digest, source, seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT DO UPDATE SET source = excluded.source, seen_ms = excluded.seen_ms",
    )?;
    for e in &s.seen {
        seen.execute(params![
            e.sender,
            e.control_id,
            e.digest,
            e.source,
            e.seen_ms
        ])?;
    }
    if let Some(before) = s.prune_before_ms {
        txn.execute("DELETE FROM dedup WHERE seen_ms < ?1", params![before])?;
    }
    Ok(())
}

/// A record as read back from the store.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub value: Bytes,
}

impl StoredRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub records: u64,
}

fn stored_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    let headers: String = r.get(6)?;
    Ok(StoredRecord {
        id: r.get(0)?,
        topic: r.get(1)?,
        partition: r.get(2)?,
        offset: r.get(3)?,
        timestamp_ms: r.get(4)?,
        key: r.get(5)?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        value: Bytes::from(r.get::<_, Vec<u8>>(7)?),
    })
}

/// Read-only access to the store (for `topics`, `tail` and tests). Safe to
/// use while `serve` is writing: WAL readers see committed transactions only.
pub struct EmbeddedReader {
    conn: Connection,
}

impl EmbeddedReader {
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        let path = data_dir.join(DB_FILE);
        if !path.exists() {
            return Err(LogError::Config(format!(
                "no hl7bridge store at {}",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    pub fn topics(&self) -> Result<Vec<TopicSummary>, LogError> {
        let mut stmt = self.conn.prepare(
            "SELECT t.name, t.partitions, (SELECT COALESCE(SUM(o.next_offset), 0) FROM partition_offsets o WHERE o.topic = t.name)
             FROM topics t ORDER BY t.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TopicSummary {
                name: r.get(0)?,
                partitions: r.get(1)?,
                records: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records of `topic` with store id greater than `after_id`, in write order.
    pub fn read(
        &self,
        topic: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, topic, partition, offset, timestamp_ms, key, headers, value FROM records
             WHERE id > ?2 AND topic = ?1 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![topic, after_id, limit as i64], stored_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records of any of `topics` with store id greater than `after_id`, in write order.
    pub fn read_topics(
        &self,
        topics: &[String],
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        self.read_many(topics, after_id, limit, true)
    }

    fn read_many(
        &self,
        topics: &[String],
        after_id: i64,
        limit: usize,
        values: bool,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let list = serde_json::to_string(topics).unwrap_or_else(|_| "[]".into());
        let mut stmt = self.conn.prepare_cached(if values {
            "SELECT id, topic, partition, offset, timestamp_ms, key, headers, value FROM records
             WHERE id > ?2 AND topic IN (SELECT value FROM json_each(?1)) ORDER BY id LIMIT ?3"
        } else {
            "SELECT id, topic, partition, offset, timestamp_ms, key, headers, X'' FROM records
             WHERE id > ?2 AND topic IN (SELECT value FROM json_each(?1)) ORDER BY id LIMIT ?3"
        })?;
        let rows = stmt.query_map(params![list, after_id, limit as i64], stored_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many records of `topics` come after store id `after_id`: the stage's lag.
    pub fn count_after(&self, topics: &[String], after_id: i64) -> Result<u64, LogError> {
        let list = serde_json::to_string(topics).unwrap_or_else(|_| "[]".into());
        Ok(self.conn.prepare_cached(
            "SELECT COUNT(*) FROM records WHERE id > ?2 AND topic IN (SELECT value FROM json_each(?1))",
        )?
        .query_row(params![list, after_id], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Where the stage of `group` resumes: the last input id it committed (0 if none).
    pub fn stage_cursor(&self, group: &str) -> Result<i64, LogError> {
        Ok(self
            .conn
            .query_row(
                "SELECT last_id FROM stage_cursors WHERE grp = ?1",
                params![group],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Outcome counts of the stage of `group`.
    pub fn stage_outcomes(&self, group: &str) -> Result<Vec<(String, u64)>, LogError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT outcome, count FROM stage_outcomes WHERE grp = ?1 ORDER BY outcome",
        )?;
        let rows = stmt.query_map(params![group], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The input record that first carried this (sender, control id, bytes)
    /// at or after `since_ms`, if any.
    pub fn seen(
        &self,
        sender: &str,
        control_id: &str,
        digest: &[u8],
        since_ms: i64,
    ) -> Result<Option<String>, LogError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT source FROM dedup WHERE sender = ?1 AND control_id = ?2 AND digest = ?3 AND seen_ms >= ?4",
            )?
            .query_row(params![sender, control_id, digest, since_ms], |r| r.get(0))
            .optional()?)
    }

    /// The highest store id of a topic (0 when empty): where `tail` starts when following.
    pub fn last_id(&self, topic: &str) -> Result<i64, LogError> {
        Ok(self
            .conn
            .query_row(
                "SELECT MAX(id) FROM records WHERE topic = ?1",
                params![topic],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten()
            .unwrap_or(0))
    }

    /// Like [`read_topics`](Self::read_topics) without the values (left
    /// empty): for walking headers, e.g. the provenance of outputs, without
    /// loading every payload.
    pub fn read_topics_meta(
        &self,
        topics: &[String],
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        self.read_many(topics, after_id, limit, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, key: Option<&str>, value: &'static [u8]) -> Record {
        Record {
            topic: topic.into(),
            key: key.map(Into::into),
            partition: None,
            headers: vec![("h".into(), "v".into())],
            timestamp_ms: 1,
            value: Bytes::from_static(value),
        }
    }

    #[test]
    fn headers_json_is_what_serde_json_writes() {
        let cases: Vec<Vec<(String, String)>> = vec![
            vec![],
            vec![("a".into(), "".into())],
            vec![
                ("hl7.control_id".into(), "C\"1\\2".into()),
                (
                    "x".into(),
                    "tab\tcr\rlf\nbs\u{8}ff\u{c}nul\u{0}us\u{1f}del\u{7f}".into(),
                ),
                ("unicode".into(), "Zoë HÔPITAL 漢字 🙂".into()),
            ],
        ];
        let mut cases = cases;
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', ' ', '\u{7f}', 'é'] {
            for at in 0..20 {
                let mut v: String = "abcdefghijklmnopqrstu".chars().take(20).collect();
                v.replace_range(at..at + 1, &special.to_string());
                cases.push(vec![("k".into(), v)]);
            }
        }
        let mut buf = String::new();
        for h in cases {
            headers_json(&mut buf, &h);
            assert_eq!(buf, serde_json::to_string(&h).unwrap());
            let back: Vec<(String, String)> = serde_json::from_str(&buf).unwrap();
            assert_eq!(back, h);
        }
    }

    #[tokio::test]
    async fn offsets_are_monotonic_per_partition_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        let p1 = log
            .append(vec![rec("t", Some("k"), b"a"), rec("t", Some("k"), b"b")])
            .await
            .unwrap();
        assert_eq!((p1[0].offset, p1[1].offset), (0, 1));
        assert_eq!(p1[0].partition, partition_for_key(b"k", 6) as i32);
        log.close();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        let p2 = log.append(vec![rec("t", Some("k"), b"c")]).await.unwrap();
        assert_eq!(p2[0].offset, 2);
        log.close();
        let r = EmbeddedReader::open(dir.path()).unwrap();
        let all = r.read("t", 0, 10).unwrap();
        assert_eq!(
            all.iter().map(|r| &r.value[..]).collect::<Vec<_>>(),
            vec![b"a", b"b", b"c"]
        );
        assert_eq!(all[0].headers, vec![("h".to_owned(), "v".to_owned())]);
        assert_eq!(
            r.topics().unwrap(),
            vec![TopicSummary {
                name: "t".into(),
                partitions: 6,
                records: 3
            }]
        );
    }

    #[tokio::test]
    async fn a_topics_partition_count_is_fixed_at_creation() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EmbeddedConfig::new(dir.path());
        cfg.partitions = 3;
        let log = EmbeddedLog::open(cfg.clone()).unwrap();
        log.append(vec![rec("t", Some("k"), b"a")]).await.unwrap();
        log.close();
        cfg.partitions = 12;
        let log = EmbeddedLog::open(cfg).unwrap();
        let p = log.append(vec![rec("t", Some("k"), b"b")]).await.unwrap();
        assert_eq!(p[0].partition, partition_for_key(b"k", 3) as i32);
    }

    /// `serve` and `transform --data-dir` (or `reconcile --repair`) are two
    /// writers on one file: offsets must stay unique and dense regardless.
    #[tokio::test]
    async fn two_writers_on_one_store_never_hand_out_the_same_offset() {
        let dir = tempfile::tempdir().unwrap();
        let a = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        let b = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        let mut offsets = Vec::new();
        for i in 0..10 {
            let w = if i % 3 == 0 { &a } else { &b };
            offsets.push(w.append(vec![rec("t", Some("k"), b"x")]).await.unwrap()[0].offset);
        }
        assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn null_keys_go_round_robin() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        let recs = (0..6).map(|_| rec("t", None, b"x")).collect();
        let p = log.append(recs).await.unwrap();
        let mut parts: Vec<i32> = p.iter().map(|p| p.partition).collect();
        parts.sort();
        assert_eq!(parts, vec![0, 1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn concurrent_appends_are_all_durable_with_distinct_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap());
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(vec![rec("t", Some("same"), b"x")])
                    .await
                    .unwrap()
            }));
        }
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.push(t.await.unwrap()[0].offset);
        }
        offsets.sort();
        assert_eq!(offsets, (0..16).collect::<Vec<_>>());
    }
}
