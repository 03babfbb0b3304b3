//! Sender duplicates: interface engines resend a message when an ACK is lost,
//! and the bridge stores both copies (it cannot know the first ACK was lost).
//! The stage emits a message only once per (sending facility, MSH-10, exact
//! bytes) within the dedup window. A resend with other bytes is a correction,
//! not a duplicate, and is emitted.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::Source;
use crate::headers as h;
use crate::record::WithHeaders;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub sender: String,
    pub control_id: String,
    pub digest: [u8; 32],
}

/// The dedup key of an input record; `None` when it has no control ID
/// (nothing then identifies a resend).
pub fn key(src: &Source<'_>) -> Option<DedupKey> {
    let control_id = src.header(h::CONTROL_ID).filter(|c| !c.is_empty())?;
    Some(DedupKey {
        sender: src.header(h::SENDING_FACILITY).unwrap_or("").to_owned(),
        control_id: control_id.to_owned(),
        digest: Sha256::digest(src.value).into(),
    })
}

/// One entry of the dedup window: a key and the input record that first
/// carried it (`topic/partition/offset`).
#[derive(Debug, Clone)]
pub struct Seen {
    pub key: DedupKey,
    pub source: String,
    pub seen_ms: i64,
}

/// The window's table, the same on both backends: in the embedded store
/// beside the records, and in the Kafka stage's local working copy.
pub const SCHEMA: &str = "
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

/// The record that first carried `key` at or after `since_ms`.
pub fn first_seen(
    conn: &Connection,
    key: &DedupKey,
    since_ms: i64,
) -> Result<Option<String>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT source FROM dedup WHERE sender = ?1 AND control_id = ?2 AND digest = ?3 AND seen_ms >= ?4",
    )?
    .query_row(
        params![key.sender, key.control_id, &key.digest[..], since_ms],
        |r| r.get(0),
    )
    .optional()
}

/// Records entries, and forgets those older than `prune_before_ms`. Runs
/// inside the caller's transaction.
pub fn remember(
    conn: &Connection,
    entries: &[Seen],
    prune_before_ms: Option<i64>,
) -> Result<(), rusqlite::Error> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO dedup (sender, control_id, digest, source, seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT DO UPDATE SET source = excluded.source, seen_ms = excluded.seen_ms",
    )?;
    for e in entries {
        insert.execute(params![
            e.key.sender,
            e.key.control_id,
            &e.key.digest[..],
            e.source,
            e.seen_ms
        ])?;
    }
    if let Some(before) = prune_before_ms {
        conn.execute("DELETE FROM dedup WHERE seen_ms < ?1", [before])?;
    }
    Ok(())
}

/// The Kafka stage's local working copy of its dedup window, in
/// `<data-dir>/dedup.db`: a disk-backed map that keeps memory bounded for a
/// long window. The window itself lives in the dedup changelog topic
/// (`stage::kafka::changelog`); the copy is emptied when a session starts and
/// refilled from the changelog on every partition assignment, so losing the
/// file, or a member with another data directory, changes no decision.
pub struct DedupStore {
    conn: Connection,
}

pub const DB_FILE: &str = "dedup.db";

impl DedupStore {
    pub fn open(path: &std::path::Path) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A process crash keeps every commit; a power loss may forget the
        // last few entries, which at worst re-emits a resend (same ids).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Forgets every entry (a new session restores what it owns from Kafka).
    pub fn clear(&mut self) -> Result<(), rusqlite::Error> {
        self.conn.execute("DELETE FROM dedup", []).map(|_| ())
    }

    pub fn first_seen(
        &self,
        key: &DedupKey,
        since_ms: i64,
    ) -> Result<Option<String>, rusqlite::Error> {
        first_seen(&self.conn, key, since_ms)
    }

    /// Records delivered entries in one transaction.
    pub fn remember(
        &mut self,
        entries: &[Seen],
        prune_before_ms: Option<i64>,
    ) -> Result<(), rusqlite::Error> {
        let txn = self.conn.transaction()?;
        remember(&txn, entries, prune_before_ms)?;
        txn.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src<'a>(headers: &'a [(String, String)], value: &'a [u8]) -> Source<'a> {
        Source {
            topic: "hl7v2.adt",
            partition: 0,
            offset: 0,
            key: None,
            headers,
            value,
        }
    }

    fn hs(fac: &str, cid: &str) -> Vec<(String, String)> {
        vec![
            (h::SENDING_FACILITY.into(), fac.into()),
            (h::CONTROL_ID.into(), cid.into()),
        ]
    }

    #[test]
    fn same_sender_control_id_and_bytes_is_the_same_key() {
        let a = hs("F", "1");
        assert_eq!(key(&src(&a, b"x")), key(&src(&a, b"x")));
    }

    #[test]
    fn other_bytes_other_facility_or_other_control_id_is_another_key() {
        let a = hs("F", "1");
        assert_ne!(key(&src(&a, b"x")), key(&src(&a, b"y")));
        assert_ne!(key(&src(&a, b"x")), key(&src(&hs("G", "1"), b"x")));
        assert_ne!(key(&src(&a, b"x")), key(&src(&hs("F", "2"), b"x")));
    }

    #[test]
    fn the_store_names_the_first_record_and_forgets_outside_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DedupStore::open(&dir.path().join(DB_FILE)).unwrap();
        let hs = hs("F", "1");
        let k = key(&src(&hs, b"x")).unwrap();
        assert_eq!(s.first_seen(&k, 0).unwrap(), None);
        let seen = Seen {
            key: k.clone(),
            source: "t/0/5".into(),
            seen_ms: 1_000,
        };
        let seen_again = seen.clone();
        s.remember(&[seen], None).unwrap();
        assert_eq!(s.first_seen(&k, 0).unwrap().as_deref(), Some("t/0/5"));
        assert_eq!(s.first_seen(&k, 1_001).unwrap(), None, "outside the window");
        s.remember(&[], Some(1_500)).unwrap();
        assert_eq!(s.first_seen(&k, 0).unwrap(), None, "pruned");
        s.remember(&[seen_again], None).unwrap();
        s.clear().unwrap();
        assert_eq!(s.first_seen(&k, 0).unwrap(), None, "cleared");
    }

    #[test]
    fn no_control_id_means_no_dedup() {
        assert_eq!(key(&src(&hs("F", ""), b"x")), None);
        assert_eq!(key(&src(&[], b"x")), None);
    }
}
