//! The embedded store's tables: topics, records and each partition's next
//! offset. Other components keep their own tables in the same file and
//! create them themselves (the stage's progress and dedup window live in
//! `stage::progress` and `stage::dedup`).

/// The store's file in the data directory.
pub const DB_FILE: &str = "hl7bridge.db";

pub(super) const SCHEMA: &str = "
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
";
