//! The embedded log: a SQLite database in WAL mode with `synchronous=FULL`,
//! so a committed transaction has been fsynced to the WAL before anyone is
//! told it is durable. Derived work (the stage's commits, retention) runs at
//! `synchronous=NORMAL` and rides the next ingest fsync: see the writer loop.
//!
//! One writer thread owns the connection and does **group commit**: it takes
//! the first waiting append, then every other append already queued (up to a
//! bound), and commits them in one transaction. Under concurrent load many
//! messages share one fsync; a lone message is committed at once, with no
//! artificial delay. Derived work waits in a queue of its own, which the
//! writer serves only when no ingest append waits.
//!
//! - [`schema`]: the tables;
//! - [`writer`]: the writer thread's transactions;
//! - [`header_json`]: the headers column;
//! - [`reader`]: read-only access beside a running writer;
//! - [`queue`]: ingest appends before derived work;
//! - [`lock`]: one process per role per data directory.

mod header_json;
pub mod lock;
mod queue;
mod reader;
pub mod retention;
mod schema;
mod writer;

use std::path::PathBuf;
use std::sync::Mutex;
use std::thread::JoinHandle;

use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use queue::{Next, Queues};
pub use reader::EmbeddedReader;
pub use schema::DB_FILE;
use schema::SCHEMA;
use writer::WriterState;

use super::{Log, LogError};
use crate::record::{Position, Record};

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

/// Derived appends (the stage's batches, retention steps) that may wait for
/// the writer: one stage and one retention sweep each keep one in flight.
const DERIVED_QUEUE_DEPTH: usize = 16;

/// Work another component commits in the same transaction as an append's
/// records: the stage's cursor, outcome counts and dedup entries. What makes
/// the embedded stage exactly-once without the store knowing the stage.
pub type TxnWork = Box<dyn FnOnce(&Connection) -> Result<(), rusqlite::Error> + Send>;

struct Append {
    records: Vec<Record>,
    work: Option<TxnWork>,
    reply: oneshot::Sender<Result<Vec<Position>, String>>,
}

/// The writer's two queues, sending side (see [`queue`]).
#[derive(Clone)]
struct Senders {
    ingest: mpsc::Sender<Append>,
    derived: mpsc::Sender<Append>,
}

pub struct EmbeddedLog {
    tx: Mutex<Option<Senders>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Signalled after each ingest commit, so an in-process stage picks new
    /// records up at once instead of on its next poll.
    appended: std::sync::Arc<tokio::sync::Notify>,
    /// Ingest commits so far: how an in-process stage tells that ingest is
    /// busy, and yields to it.
    ingest_commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the store under `data_dir` and starts the writer.
    pub fn open(cfg: EmbeddedConfig) -> Result<Self, LogError> {
        if cfg.partitions == 0 {
            return Err(LogError::Config("partitions must be at least 1".into()));
        }
        std::fs::create_dir_all(&cfg.data_dir)?;
        let mut conn = Connection::open(cfg.data_dir.join(DB_FILE))?;
        // A `transform --data-dir` process may share the file with `serve`.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Lets retention give freed pages back to the filesystem. Takes
        // effect only on a new file (before its first table); an older store
        // reuses freed pages but keeps its size until a `VACUUM`.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The WAL is truncated back to this after a checkpoint instead of
        // keeping its high-water size for ever.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.execute_batch(SCHEMA)?;
        schema::upgrade(&mut conn)?;
        let mut state = WriterState::load(&conn, cfg.partitions)?;
        let (ingest_tx, ingest_rx) = mpsc::channel::<Append>(cfg.queue_depth.max(1));
        let (derived_tx, derived_rx) = mpsc::channel::<Append>(DERIVED_QUEUE_DEPTH);
        let mut queues = Queues::new(ingest_rx, derived_rx);
        let max_batch = cfg.max_batch_records.max(1);
        let appended = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = appended.clone();
        let ingest_commits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let commits = ingest_commits.clone();
        let writer = std::thread::Builder::new()
            .name("hl7bridge-store".into())
            .spawn(move || {
                let mut conn = conn;
                while let Some(next) = queues.next() {
                    match next {
                        Next::Ingest(first) => {
                            let mut n = first.records.len();
                            let mut group = vec![first];
                            while n < max_batch {
                                let Some(more) = queues.more_ingest() else {
                                    break;
                                };
                                n += more.records.len();
                                group.push(more);
                            }
                            tracing::trace!(appends = group.len(), records = n, "group commit");
                            crate::internal_events::GroupCommitted {
                                appends: group.len(),
                            }
                            .emit();
                            state.commit_and_reply(&mut conn, group);
                            commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            notify.notify_one();
                        }
                        // Work beside the records can fail on its own (the
                        // stage's cursor moved), so it gets its own
                        // transaction: never a reason to NAK ingest.
                        Next::Derived(a) => {
                            // Derived work (the stage's outputs, cursor and
                            // dedup entries; a retention step) is done again
                            // from the durable raw log after a crash. So it
                            // commits without an fsync of its own. Its WAL
                            // frames become durable with the next ingest
                            // commit, whose fsync covers every frame before
                            // it, so a crash loses a suffix of derived
                            // commits, never a hole, and never an ACKed
                            // message. (If NORMAL cannot be set, it commits
                            // at FULL: slower, as safe.)
                            let _ = set_synchronous(&conn, SyncMode::Normal);
                            state.commit_and_reply(&mut conn, vec![a]);
                            if let Err(e) = set_synchronous(&conn, SyncMode::Full) {
                                // No ingest commit may run at NORMAL: stop the
                                // writer, so every append gets an error (AE/CE).
                                tracing::error!(error = %e, "cannot set the store back to synchronous=FULL; the writer stops");
                                return;
                            }
                        }
                    }
                }
            })?;
        Ok(Self {
            tx: Mutex::new(Some(Senders {
                ingest: ingest_tx,
                derived: derived_tx,
            })),
            writer: Mutex::new(Some(writer)),
            appended,
            ingest_commits,
        })
    }

    /// Runs one step of a retention sweep in the writer's own transaction,
    /// after the ingest appends waiting (derived work).
    pub fn retention_step(
        &self,
        policy: std::sync::Arc<retention::Policy>,
        mut sweep: retention::Sweep,
        now_ms: i64,
    ) -> BoxFuture<'static, Result<(retention::Step, retention::Sweep), LogError>> {
        let (tx, rx) = oneshot::channel();
        let work: TxnWork = Box::new(move |conn| {
            let step = retention::step(conn, &policy, now_ms, &mut sweep)?;
            let _ = tx.send((step, sweep));
            Ok(())
        });
        let done = self.submit(Vec::new(), Some(work));
        async move {
            done.await?;
            rx.await.map_err(|_| LogError::Closed)
        }
        .boxed()
    }

    /// How many ingest commits (appends without stage work) have run.
    pub fn ingest_commits(&self) -> u64 {
        self.ingest_commits
            .load(std::sync::atomic::Ordering::Relaxed)
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

#[derive(Clone, Copy)]
enum SyncMode {
    Full,
    Normal,
}

/// Sets `synchronous` with a cached statement: the writer switches it
/// twice per derived commit, and `pragma_update` parses it every time.
fn set_synchronous(conn: &Connection, mode: SyncMode) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(match mode {
        SyncMode::Full => "PRAGMA synchronous = FULL",
        SyncMode::Normal => "PRAGMA synchronous = NORMAL",
    })?
    .execute([])
    .map(|_| ())
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl EmbeddedLog {
    /// Appends `records` and runs `work` in the same transaction: both
    /// commit, or neither does.
    pub fn append_with(
        &self,
        records: Vec<Record>,
        work: TxnWork,
    ) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        self.submit(records, Some(work))
    }

    fn submit(
        &self,
        records: Vec<Record>,
        work: Option<TxnWork>,
    ) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        let tx = self.tx.lock().ok().and_then(|t| t.clone());
        async move {
            let tx = tx.ok_or(LogError::Closed)?;
            let tx = if work.is_some() {
                tx.derived
            } else {
                tx.ingest
            };
            let (reply, rx) = oneshot::channel();
            tx.send(Append {
                records,
                work,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::partitioner::partition_for_key;
    use crate::record::TopicSummary;
    use bytes::Bytes;

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
