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
-- `start_offset` is the first offset retention has left (the log start
-- offset), `bytes` the record bytes held (value, headers and key), which
-- retention's byte caps and the store_bytes gauge read without a scan.
CREATE TABLE IF NOT EXISTS partition_offsets (
    topic        TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    next_offset  INTEGER NOT NULL,
    start_offset INTEGER NOT NULL DEFAULT 0,
    bytes        INTEGER,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
";

/// Brings a store made by an earlier version up to [`SCHEMA`]: adds the
/// retention columns, and counts the bytes already held, once, in one scan.
/// Runs under the write lock, so a second writer process cannot add
/// records between the scan and the count.
pub(super) fn upgrade(conn: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
    let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let columns: Vec<String> = txn
        .prepare("SELECT name FROM pragma_table_info('partition_offsets')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !columns.iter().any(|c| c == "start_offset") {
        txn.execute_batch(
            "ALTER TABLE partition_offsets ADD COLUMN start_offset INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    if !columns.iter().any(|c| c == "bytes") {
        txn.execute_batch("ALTER TABLE partition_offsets ADD COLUMN bytes INTEGER")?;
    }
    let uncounted: bool = txn.query_row(
        "SELECT EXISTS (SELECT 1 FROM partition_offsets WHERE bytes IS NULL)",
        [],
        |r| r.get(0),
    )?;
    if uncounted {
        txn.execute_batch(
            "UPDATE partition_offsets SET bytes = COALESCE((
                 SELECT s.total FROM (
                     SELECT topic, partition,
                            SUM(length(value) + length(CAST(headers AS BLOB)) + COALESCE(length(CAST(key AS BLOB)), 0)) AS total
                     FROM records GROUP BY topic, partition) s
                 WHERE s.topic = partition_offsets.topic AND s.partition = partition_offsets.partition), 0)
             WHERE bytes IS NULL",
        )?;
    }
    txn.commit()
}
