//! The embedded stage's progress, kept in the store beside the records it
//! describes: per group, the store id of the last input fully handled and
//! how many inputs had each outcome. Written in the same transaction as the
//! outputs (through the store's [`TxnWork`] hook), which is what makes the
//! embedded stage exactly-once with no recovery logic at all.

use rusqlite::{params, Connection, OptionalExtension};

use super::dedup::{self, Seen};
use super::now_ms;
use crate::log::embedded::TxnWork;

/// The stage's tables; created by the stage when it starts.
pub const SCHEMA: &str = "
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
";

/// What the stage commits with one batch of outputs.
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

impl StageCommit {
    /// The commit as work for the store's writer, run inside the
    /// transaction that appends the batch's outputs.
    pub fn into_work(self) -> TxnWork {
        Box::new(move |txn| self.apply(txn))
    }

    /// Cached statements throughout: while the stage yields to busy ingest
    /// this runs once per 32 inputs, and at one message at a time (C=1)
    /// once per input.
    fn apply(&self, txn: &Connection) -> Result<(), rusqlite::Error> {
        // The stage created its tables before its first batch.
        let current: i64 = txn
            .prepare_cached("SELECT last_id FROM stage_cursors WHERE grp = ?1")?
            .query_row(params![self.group], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        if current != self.prev_id {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!(
                    "stage cursor of group {:?} moved from {} to {current} under this instance; is another transform running?",
                    self.group, self.prev_id
                )
                .into(),
            ));
        }
        txn.prepare_cached(
            "INSERT INTO stage_cursors (grp, last_id, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (grp) DO UPDATE SET last_id = excluded.last_id, updated_ms = excluded.updated_ms",
        )?
        .execute(params![self.group, self.last_id, now_ms()])?;
        let mut count = txn.prepare_cached(
            "INSERT INTO stage_outcomes (grp, outcome, count) VALUES (?1, ?2, ?3)
             ON CONFLICT (grp, outcome) DO UPDATE SET count = count + excluded.count",
        )?;
        for (outcome, n) in &self.outcomes {
            count.execute(params![self.group, outcome, *n as i64])?;
        }
        dedup::remember(txn, &self.seen, self.prune_before_ms)
    }
}

/// The stage's tables and the dedup window's, for a store that has none yet.
pub fn create_tables(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(dedup::SCHEMA)
}

/// False until a stage has run on this store (a `serve --no-transform`
/// store, read by `reconcile`).
fn has_tables(conn: &Connection) -> Result<bool, rusqlite::Error> {
    conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'stage_cursors'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Where the stage of `group` resumes: the last input id it committed (0 if none).
pub fn cursor(conn: &Connection, group: &str) -> Result<i64, rusqlite::Error> {
    if !has_tables(conn)? {
        return Ok(0);
    }
    Ok(conn
        .query_row(
            "SELECT last_id FROM stage_cursors WHERE grp = ?1",
            params![group],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Outcome counts of the stage of `group`, by outcome name.
pub fn outcomes(conn: &Connection, group: &str) -> Result<Vec<(String, u64)>, rusqlite::Error> {
    if !has_tables(conn)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT outcome, count FROM stage_outcomes WHERE grp = ?1 ORDER BY outcome",
    )?;
    let rows = stmt.query_map(params![group], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}
