//! Reading the store: safe beside a running writer, since WAL readers see
//! committed transactions only.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::schema::DB_FILE;
use crate::log::LogError;
use crate::record::{StoredRecord, TopicSummary};

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

/// Read-only access to the store (for `topics`, `tail`, `reconcile`, the
/// stage and tests). Safe to
/// use while `serve` is writing: WAL readers see committed transactions only.
pub struct EmbeddedReader {
    conn: Connection,
}

impl EmbeddedReader {
    /// The connection, for components that keep their own tables in the
    /// store (the stage's progress and dedup window).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

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
            "SELECT t.name, t.partitions, (SELECT COALESCE(SUM(o.next_offset - o.start_offset), 0) FROM partition_offsets o WHERE o.topic = t.name)
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

    /// The highest store id of any record (0 when empty), from the end of
    /// the table's B-tree: no scan. Ids only grow (retention never deletes
    /// the newest record), so every record committed after this read has a
    /// higher id.
    pub fn max_id(&self) -> Result<i64, LogError> {
        Ok(self
            .conn
            .prepare_cached("SELECT MAX(id) FROM records")?
            .query_row([], |r| r.get::<_, Option<i64>>(0))?
            .unwrap_or(0))
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
