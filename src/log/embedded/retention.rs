//! Retention on the embedded store, as Kafka has it: records older than
//! their topic class's age, or beyond its byte cap, are deleted, oldest
//! first. Two records are never deleted:
//! - a raw record the stage has not processed yet (its store id is above
//!   the lowest stage cursor), since its FHIR would be lost;
//! - a dead-letter record younger than the dead-letter age: someone has to
//!   look at it, so the DLQ has an age and no byte cap.
//!
//! A sweep runs as work in the store writer's own transactions (the
//! [`TxnWork`](super::TxnWork) hook), a bounded number of records at a time,
//! so ingest commits queue behind at most one short delete. Within a
//! partition only a prefix is ever deleted, so a partition's retained
//! offsets stay dense from its start offset up (what `tail`, `reconcile` and
//! Kafka consumers expect of a log).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

/// The topic classes retention tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Raw,
    Fhir,
    Dlq,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Raw, Class::Fhir, Class::Dlq];

    pub fn label(self) -> &'static str {
        match self {
            Class::Raw => "raw",
            Class::Fhir => "fhir",
            Class::Dlq => "dlq",
        }
    }
}

/// Which class a topic is in, from the two prefixes: `hl7v2.dlq` and
/// `fhir.dlq` are DLQ, other `hl7v2.*` raw, other `fhir.*` FHIR. Topics of
/// neither prefix are never deleted.
#[derive(Debug, Clone)]
pub struct Classifier {
    raw_prefix: String,
    fhir_prefix: String,
}

impl Classifier {
    pub fn new(raw_prefix: &str, fhir_prefix: &str) -> Self {
        Self {
            raw_prefix: raw_prefix.into(),
            fhir_prefix: fhir_prefix.into(),
        }
    }

    pub fn class(&self, topic: &str) -> Option<Class> {
        // The longer prefix first: `fhir.` could itself start with `hl7v2.`.
        let mut prefixes = [
            (&self.raw_prefix, Class::Raw),
            (&self.fhir_prefix, Class::Fhir),
        ];
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let (rest, class) = prefixes
            .iter()
            .find_map(|(p, c)| topic.strip_prefix(p.as_str()).map(|rest| (rest, *c)))?;
        Some(if rest == crate::topics::DLQ {
            Class::Dlq
        } else {
            class
        })
    }
}

/// How long, and how many bytes, one class keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Delete records older than this; `None` keeps them forever.
    pub max_age: Option<Duration>,
    /// Delete the oldest records while the class holds more record bytes
    /// than this; `None` for no cap.
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub classes: Classifier,
    pub raw: Limits,
    pub fhir: Limits,
    /// The DLQ's age. It has no byte cap: a size cap could delete a dead
    /// letter nobody has looked at yet.
    pub dlq_max_age: Option<Duration>,
}

impl Policy {
    fn limits(&self, class: Class) -> Limits {
        match class {
            Class::Raw => self.raw,
            Class::Fhir => self.fhir,
            Class::Dlq => Limits {
                max_age: self.dlq_max_age,
                max_bytes: None,
            },
        }
    }

    /// Whether any limit is set at all.
    pub fn is_active(&self) -> bool {
        [self.raw, self.fhir]
            .iter()
            .any(|l| l.max_age.is_some() || l.max_bytes.is_some())
            || self.dlq_max_age.is_some()
    }
}

/// Where a sweep is: the store id it resumes after, and the partitions in
/// which it has kept a record (nothing after that record may go, or the
/// partition would get a hole).
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    pub after: i64,
    blocked: HashSet<(String, i32)>,
    /// Set when the sweep reached the end of the store, or records younger
    /// than every age with no class over its cap.
    pub done: bool,
}

/// What one step of a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Records deleted, by class.
    pub deleted: HashMap<Class, u64>,
    /// Record bytes deleted, by class.
    pub deleted_bytes: HashMap<Class, u64>,
}

/// Records one step looks at; deletes are at most this many too. At about
/// 2 KB a record that is a few MB of pages per transaction: a short pause
/// for ingest, and a sweep still moves a million records a minute.
pub const STEP_RECORDS: usize = 2_000;

/// Record bytes per class, from the per-partition counters the writer keeps.
pub fn class_bytes(
    conn: &Connection,
    classes: &Classifier,
) -> Result<HashMap<Class, u64>, rusqlite::Error> {
    let mut out: HashMap<Class, u64> = Class::ALL.iter().map(|c| (*c, 0)).collect();
    let mut stmt = conn.prepare_cached(
        "SELECT topic, COALESCE(SUM(bytes), 0) FROM partition_offsets GROUP BY topic",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (topic, bytes) = row?;
        if let Some(c) = classes.class(&topic) {
            *out.entry(c).or_default() += bytes.max(0) as u64;
        }
    }
    Ok(out)
}

/// The highest store id every stage has processed: raw records at or below
/// it may go. No stage cursor at all keeps every raw record.
fn stage_floor(conn: &Connection) -> Result<i64, rusqlite::Error> {
    let has_table: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stage_cursors'",
            [],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if !has_table {
        return Ok(0);
    }
    Ok(conn
        .query_row("SELECT MIN(last_id) FROM stage_cursors", [], |r| {
            r.get::<_, Option<i64>>(0)
        })?
        .unwrap_or(0))
}

/// One step of a sweep, inside the writer's transaction: looks at up to
/// [`STEP_RECORDS`] records after where the sweep is, deletes those past
/// their class's limits, and moves each partition's start offset.
pub fn step(
    conn: &Connection,
    policy: &Policy,
    now_ms: i64,
    sweep: &mut Sweep,
) -> Result<Step, rusqlite::Error> {
    let floor = stage_floor(conn)?;
    // The newest record stays, whatever its age: a new record's id is the
    // highest id plus one, so deleting the newest could hand out an id
    // again, one at or below the stage's cursor, and the stage would never
    // read that input.
    let newest: i64 =
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM records", [], |r| r.get(0))?;
    let mut bytes = class_bytes(conn, &policy.classes)?;
    let cutoff = |class: Class| {
        policy
            .limits(class)
            .max_age
            .map(|age| now_ms.saturating_sub(age.as_millis() as i64))
    };
    // Records younger than every age, with no class over its cap: nothing
    // from here on can go, so the sweep is over.
    let youngest_cutoff = Class::ALL
        .iter()
        .map(|c| cutoff(*c))
        .try_fold(i64::MAX, |m, c| c.map(|c| m.min(c)));
    let over_cap = |bytes: &HashMap<Class, u64>, class: Class| {
        policy
            .limits(class)
            .max_bytes
            .is_some_and(|cap| bytes.get(&class).copied().unwrap_or(0) > cap)
    };

    let mut out = Step::default();
    let mut victims: Vec<i64> = Vec::new();
    // Per partition: the next start offset and bytes removed, and whether a
    // record was kept (then nothing after it in that partition goes).
    let mut moved: HashMap<(String, i32), (i64, i64)> = HashMap::new();
    let mut last_seen = sweep.after;
    let mut seen = 0usize;
    let mut stopped_young = false;
    {
        let mut rows = conn.prepare_cached(
            "SELECT id, topic, partition, offset, timestamp_ms,
                    length(value) + length(CAST(headers AS BLOB)) + COALESCE(length(CAST(key AS BLOB)), 0)
             FROM records WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut q = rows.query(params![sweep.after, STEP_RECORDS as i64])?;
        while let Some(r) = q.next()? {
            seen += 1;
            let id: i64 = r.get(0)?;
            last_seen = id;
            let topic: String = r.get(1)?;
            let partition: i32 = r.get(2)?;
            let offset: i64 = r.get(3)?;
            let ts: i64 = r.get(4)?;
            let size: i64 = r.get(5)?;
            if let Some(youngest) = youngest_cutoff {
                if ts >= youngest && !Class::ALL.iter().any(|c| over_cap(&bytes, *c)) {
                    stopped_young = true;
                    break;
                }
            }
            let Some(class) = policy.classes.class(&topic) else {
                continue;
            };
            let key = (topic, partition);
            if sweep.blocked.contains(&key) {
                continue;
            }
            let expired = cutoff(class).is_some_and(|c| ts < c);
            let unprocessed = class == Class::Raw && id > floor;
            if unprocessed || id >= newest || !(expired || over_cap(&bytes, class)) {
                sweep.blocked.insert(key);
                continue;
            }
            victims.push(id);
            let slot = moved.entry(key).or_insert((0, 0));
            slot.0 = offset + 1;
            slot.1 += size;
            if let Some(b) = bytes.get_mut(&class) {
                *b = b.saturating_sub(size as u64);
            }
            *out.deleted.entry(class).or_default() += 1;
            *out.deleted_bytes.entry(class).or_default() += size as u64;
        }
    }
    sweep.after = last_seen;
    sweep.done = stopped_young || seen < STEP_RECORDS;
    let mut delete = conn.prepare_cached("DELETE FROM records WHERE id = ?1")?;
    for id in &victims {
        delete.execute(params![id])?;
    }
    let mut advance = conn.prepare_cached(
        "UPDATE partition_offsets SET start_offset = MAX(start_offset, ?3), bytes = MAX(bytes - ?4, 0)
         WHERE topic = ?1 AND partition = ?2",
    )?;
    for ((topic, partition), (start, size)) in &moved {
        advance.execute(params![topic, partition, start, size])?;
    }
    // Gives the freed pages back to the filesystem (a no-op on a store made
    // before incremental vacuum; see `open`).
    if !victims.is_empty() {
        // Each step of this pragma frees one page: it must run to the end.
        let mut vacuum = conn.prepare_cached("PRAGMA incremental_vacuum")?;
        let mut rows = vacuum.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::embedded::{EmbeddedConfig, EmbeddedLog, EmbeddedReader};
    use crate::log::Log;
    use crate::record::Record;
    use bytes::Bytes;
    use std::sync::Arc;

    const DAY_MS: i64 = 86_400_000;
    const NOW: i64 = 100 * DAY_MS;

    fn rec(topic: &str, age_days: i64, value: &'static [u8]) -> Record {
        Record {
            topic: topic.into(),
            key: Some("MRN-1".into()),
            partition: Some(0),
            headers: vec![],
            timestamp_ms: NOW - age_days * DAY_MS,
            value: Bytes::from_static(value),
        }
    }

    fn policy(raw: Limits, fhir: Limits, dlq_days: u64) -> Arc<Policy> {
        Arc::new(Policy {
            classes: Classifier::new("hl7v2.", "fhir."),
            raw,
            fhir,
            dlq_max_age: Some(Duration::from_secs(dlq_days * 86_400)),
        })
    }

    /// A young record written last: retention never deletes the newest
    /// record (its id must not be handed out again), so the tests that
    /// expect every old record to go end with one of these.
    fn newest() -> Record {
        rec("fhir.patient", 0, b"young")
    }

    /// FHIR kept 7 days, dead letters 30, raw forever.
    fn fhir_for_7_days() -> Arc<Policy> {
        policy(
            Limits::default(),
            Limits {
                max_age: days(7),
                max_bytes: None,
            },
            30,
        )
    }

    /// Raw kept 7 days, FHIR forever, dead letters 30.
    fn raw_for_7_days() -> Arc<Policy> {
        policy(
            Limits {
                max_age: days(7),
                max_bytes: None,
            },
            Limits::default(),
            30,
        )
    }

    fn days(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n * 86_400))
    }

    /// Runs a whole sweep; returns records deleted per class.
    async fn sweep(log: &EmbeddedLog, policy: &Arc<Policy>) -> HashMap<Class, u64> {
        let mut at = Sweep::default();
        let mut deleted = HashMap::new();
        loop {
            let (step, next) = log.retention_step(policy.clone(), at, NOW).await.unwrap();
            for (c, n) in step.deleted {
                *deleted.entry(c).or_default() += n;
            }
            if next.done {
                return deleted;
            }
            at = next;
        }
    }

    fn offsets(dir: &std::path::Path, topic: &str) -> Vec<i64> {
        let r = EmbeddedReader::open(dir).unwrap();
        r.read(topic, 0, 100_000)
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect()
    }

    fn set_stage_cursor(dir: &std::path::Path, last_id: i64) {
        let c = rusqlite::Connection::open(dir.join(crate::log::embedded::DB_FILE)).unwrap();
        c.execute_batch(crate::stage::progress::SCHEMA).unwrap();
        c.execute(
            "INSERT OR REPLACE INTO stage_cursors (grp, last_id, updated_ms) VALUES ('g', ?1, 0)",
            params![last_id],
        )
        .unwrap();
    }

    #[tokio::test]
    async fn old_raw_records_go_only_once_the_stage_has_processed_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        // Six raw records, all older than the 7-day age: store ids 1..=6.
        log.append((0..6).map(|_| rec("hl7v2.oru", 10, b"MSH|x")).collect())
            .await
            .unwrap();
        let p = raw_for_7_days();

        // No stage has run: every raw record stays, whatever its age.
        assert_eq!(sweep(&log, &p).await.get(&Class::Raw), None);
        assert_eq!(offsets(dir.path(), "hl7v2.oru"), vec![0, 1, 2, 3, 4, 5]);

        // The stage has processed ids 1..=4: those four go, the rest stay,
        // and the partition's retained offsets stay dense from its new start.
        set_stage_cursor(dir.path(), 4);
        assert_eq!(sweep(&log, &p).await.get(&Class::Raw), Some(&4));
        assert_eq!(offsets(dir.path(), "hl7v2.oru"), vec![4, 5]);
        let topics = EmbeddedReader::open(dir.path()).unwrap().topics().unwrap();
        assert_eq!(topics[0].records, 2, "the topic counts what is retained");

        // New records continue the partition's offsets.
        let p2 = log
            .append(vec![rec("hl7v2.oru", 0, b"MSH|y")])
            .await
            .unwrap();
        assert_eq!(p2[0].offset, 6);
    }

    #[tokio::test]
    async fn the_newest_record_stays_so_a_store_id_is_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        // Three raw records past the age, all processed: store ids 1..=3.
        log.append((0..3).map(|_| rec("hl7v2.oru", 10, b"MSH|x")).collect())
            .await
            .unwrap();
        set_stage_cursor(dir.path(), 3);
        let p = raw_for_7_days();
        // Deleting id 3 too would make the next record id 1 again, below
        // the stage's cursor, where the stage would never read it.
        assert_eq!(sweep(&log, &p).await.get(&Class::Raw), Some(&2));
        log.append(vec![rec("hl7v2.oru", 0, b"MSH|y")])
            .await
            .unwrap();
        let r = EmbeddedReader::open(dir.path()).unwrap();
        let after_cursor = r.read_topics(&["hl7v2.oru".into()], 3, 10).unwrap();
        assert_eq!(after_cursor.len(), 1, "the new record is after the cursor");
        assert_eq!(after_cursor[0].id, 4);
    }

    #[tokio::test]
    async fn a_byte_cap_deletes_the_oldest_records_until_the_class_fits() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        // Ten FHIR records of 100 value bytes (+ 2 header bytes "[]" + 5 key bytes).
        const V: &[u8] = &[b'x'; 100];
        log.append((0..10).map(|_| rec("fhir.observation", 0, V)).collect())
            .await
            .unwrap();
        let cap = 4 * 107;
        let p = policy(
            Limits::default(),
            Limits {
                max_age: None,
                max_bytes: Some(cap),
            },
            30,
        );
        let before = class_bytes(log_conn(dir.path()).connection(), &p.classes).unwrap();
        assert_eq!(before[&Class::Fhir], 10 * 107);
        assert_eq!(sweep(&log, &p).await.get(&Class::Fhir), Some(&6));
        assert_eq!(offsets(dir.path(), "fhir.observation"), vec![6, 7, 8, 9]);
        let after = class_bytes(log_conn(dir.path()).connection(), &p.classes).unwrap();
        assert_eq!(after[&Class::Fhir], cap);
    }

    fn log_conn(dir: &std::path::Path) -> EmbeddedReader {
        EmbeddedReader::open(dir).unwrap()
    }

    #[tokio::test]
    async fn dead_letters_go_by_their_own_age_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        log.append(vec![
            rec("hl7v2.dlq", 40, b"old"),
            rec("fhir.dlq", 40, b"old"),
            rec("hl7v2.dlq", 10, b"young"),
            rec("fhir.observation", 10, b"obs"),
            newest(),
        ])
        .await
        .unwrap();
        // FHIR keeps 7 days and the DLQ 30: the 10-day-old dead letter stays.
        let p = fhir_for_7_days();
        let deleted = sweep(&log, &p).await;
        assert_eq!(deleted.get(&Class::Dlq), Some(&2));
        assert_eq!(deleted.get(&Class::Fhir), Some(&1));
        assert_eq!(offsets(dir.path(), "hl7v2.dlq"), vec![1]);
        assert_eq!(offsets(dir.path(), "fhir.dlq"), Vec::<i64>::new());
    }

    #[tokio::test]
    async fn a_sweep_longer_than_one_step_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        let n = STEP_RECORDS * 2 + 10;
        // Two steps and a bit of expired records.
        log.append((0..n).map(|_| rec("fhir.encounter", 9, b"e")).collect())
            .await
            .unwrap();
        log.append(vec![newest()]).await.unwrap();
        let p = fhir_for_7_days();
        assert_eq!(sweep(&log, &p).await.get(&Class::Fhir), Some(&(n as u64)));
        assert!(offsets(dir.path(), "fhir.encounter").is_empty());
    }

    #[tokio::test]
    async fn in_a_partition_nothing_after_a_kept_record_goes() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        // Timestamps are arrival times and can step back (another writer
        // process, a clock change): a younger record before an older one.
        log.append(vec![
            rec("fhir.encounter", 9, b"a"),
            rec("fhir.encounter", 1, b"b"),
            rec("fhir.encounter", 9, b"c"),
        ])
        .await
        .unwrap();
        let p = fhir_for_7_days();
        sweep(&log, &p).await;
        assert_eq!(
            offsets(dir.path(), "fhir.encounter"),
            vec![1, 2],
            "no hole at offset 1"
        );
    }

    #[tokio::test]
    async fn deleted_space_goes_back_to_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        const V: &[u8] = &[b'x'; 4000];
        log.append((0..500).map(|_| rec("fhir.observation", 9, V)).collect())
            .await
            .unwrap();
        log.append(vec![newest()]).await.unwrap();
        let pages = |dir: &std::path::Path| -> (i64, i64) {
            let c = log_conn(dir);
            let c = c.connection();
            (
                c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap(),
                c.query_row("PRAGMA freelist_count", [], |r| r.get(0))
                    .unwrap(),
            )
        };
        let (before, _) = pages(dir.path());
        let p = fhir_for_7_days();
        assert_eq!(sweep(&log, &p).await.get(&Class::Fhir), Some(&500));
        let (after, free) = pages(dir.path());
        assert_eq!(free, 0, "no free page is left in the file");
        assert!(after * 4 < before, "{before} pages before, {after} after");
    }

    #[tokio::test]
    async fn a_store_from_before_retention_gets_its_byte_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
            log.append(vec![rec("fhir.patient", 0, b"0123456789")])
                .await
                .unwrap();
        }
        // As an earlier version left it: no counters.
        let c = rusqlite::Connection::open(dir.path().join(crate::log::embedded::DB_FILE)).unwrap();
        c.execute_batch("UPDATE partition_offsets SET bytes = NULL")
            .unwrap();
        drop(c);
        let _log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        let classes = Classifier::new("hl7v2.", "fhir.");
        let bytes = class_bytes(log_conn(dir.path()).connection(), &classes).unwrap();
        assert_eq!(bytes[&Class::Fhir], 10 + 2 + 5);
    }

    #[test]
    fn topics_fall_into_raw_fhir_and_dead_letter_classes() {
        let c = Classifier::new("hl7v2.", "fhir.");
        assert_eq!(c.class("hl7v2.oru"), Some(Class::Raw));
        assert_eq!(c.class("hl7v2.dlq"), Some(Class::Dlq));
        assert_eq!(c.class("fhir.observation"), Some(Class::Fhir));
        assert_eq!(c.class("fhir.dlq"), Some(Class::Dlq));
        assert_eq!(c.class("other.topic"), None);
        // A FHIR prefix inside the raw one is still FHIR.
        let nested = Classifier::new("hl7v2.", "hl7v2.fhir.");
        assert_eq!(nested.class("hl7v2.fhir.patient"), Some(Class::Fhir));
        assert_eq!(nested.class("hl7v2.adt"), Some(Class::Raw));
    }
}
