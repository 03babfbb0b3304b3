//! The sender-dedup window in Kafka: a changelog topic, the state-store
//! pattern of Kafka Streams, so no correctness state stays on a member's disk.
//!
//! - Partition p of the changelog holds the entries of input partition p of
//!   every raw topic (a resend has the bytes, so the key and the partition,
//!   of its first copy). The range assignor gives p of every input to one
//!   member, so one member writes changelog partition p at a time.
//! - An entry is keyed by its dedup key, and names the record that first
//!   carried it (`topic/partition/offset`) and when.
//! - An entry goes out with the outputs of its record, through the same
//!   idempotent, gapless producer, and the record's input offset is stored
//!   only once the entry **and** the outputs are delivered. Tansu 0.6 has no
//!   transactions (see the module above), so this replaces "one transaction":
//!   - outputs written, entry not: the offset was not committed, so the next
//!     owner replays the record, finds its outputs written (recovery skips
//!     them) and writes the entry;
//!   - entry written, outputs not: the replayed record finds an entry naming
//!     *itself*, which is not a duplicate, and is processed;
//!   - so below the committed offset every entry is in the changelog, and
//!     above it the replay rebuilds exactly what the old owner decided.
//! - On assignment, before any input of partition p is processed, the member
//!   reads changelog partition p from the start into its local working copy
//!   (`<data-dir>/dedup.db`, emptied at every session start: a disk-backed
//!   map, not a source of truth). A member with an empty data directory
//!   therefore decides as the old owner did.
//! - Bounded: `cleanup.policy=compact,delete` keeps the latest entry per key
//!   and drops segments older than `retention.ms` = window + 1 day (the
//!   windowed-store changelog of Kafka Streams). An entry older than the
//!   window is ignored on restore anyway, so deleting it changes nothing.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{kafka_err, StageError, TAIL_QUIET};
use crate::record::Record;
use crate::stage::dedup::{DedupKey, DedupStore, Seen};

/// Retention beyond the window: a restore reads entries up to a day older
/// than it needs, never fewer than it needs.
const RETENTION_SLACK: Duration = Duration::from_secs(24 * 3600);
/// A restore gives up when the changelog yields nothing for this long
/// before its end.
const STALL: Duration = Duration::from_secs(30);
/// Entries written to the local copy per SQLite transaction during a restore.
const RESTORE_BATCH: usize = 1024;

/// The settings `topics create` and the stage give a new changelog topic.
pub fn topic_settings(window: Duration) -> Vec<(&'static str, String)> {
    let retention = window.saturating_add(RETENTION_SLACK).as_millis();
    vec![
        ("cleanup.policy", "compact,delete".to_owned()),
        ("retention.ms", retention.to_string()),
    ]
}

/// The record key: the dedup key, so compaction keeps one entry per key.
#[derive(Serialize, Deserialize)]
struct EntryKey {
    sender: String,
    control_id: String,
    /// SHA-256 of the message bytes, hex.
    sha256: String,
}

#[derive(Serialize, Deserialize)]
struct EntryValue {
    /// `topic/partition/offset` of the record that first carried the key.
    source: String,
    seen_ms: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The changelog record of `seen`, for partition `partition` of `topic`.
pub(super) fn record(topic: &str, partition: i32, seen: &Seen) -> Record {
    let key = EntryKey {
        sender: seen.key.sender.clone(),
        control_id: seen.key.control_id.clone(),
        sha256: hex(&seen.key.digest),
    };
    let value = EntryValue {
        source: seen.source.clone(),
        seen_ms: seen.seen_ms,
    };
    Record {
        topic: topic.to_owned(),
        // Serializing plain strings and integers cannot fail.
        key: Some(serde_json::to_string(&key).unwrap_or_default()),
        partition: Some(partition),
        headers: Vec::new(),
        timestamp_ms: seen.seen_ms,
        value: serde_json::to_vec(&value).unwrap_or_default().into(),
    }
}

/// An entry read back; `None` for a tombstone or a record this stage did not write.
pub(super) fn parse(key: &[u8], value: Option<&[u8]>) -> Option<Seen> {
    let k: EntryKey = serde_json::from_slice(key).ok()?;
    let v: EntryValue = serde_json::from_slice(value?).ok()?;
    Some(Seen {
        key: DedupKey {
            sender: k.sender,
            control_id: k.control_id,
            digest: unhex(&k.sha256)?,
        },
        source: v.source,
        seen_ms: v.seen_ms,
    })
}

/// Reads changelog partition `p` from its start to its end into `store`,
/// keeping entries seen at or after `since_ms`. Returns how many it kept.
///
/// The end is where the fetch reports end-of-partition and nothing more
/// comes for a quiet spell (Tansu 0.6 may understate the high watermark; see
/// `recover`). The member writes this partition only after the restore, and
/// the old owner flushed before it was revoked, so the end is stable.
pub(super) fn restore(
    reader: &BaseConsumer,
    topic: &str,
    p: i32,
    store: &mut DedupStore,
    since_ms: i64,
) -> Result<usize, StageError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Beginning)
        .map_err(kafka_err)?;
    reader.assign(&tpl).map_err(kafka_err)?;
    let write = |store: &mut DedupStore, batch: &mut Vec<Seen>| {
        store.remember(batch, None).map_err(|e| {
            StageError::Setup(format!(
                "restoring the dedup window of {topic} partition {p} into the local copy: {e}"
            ))
        })?;
        batch.clear();
        Ok::<_, StageError>(())
    };
    let (mut batch, mut kept, mut read) = (Vec::new(), 0usize, 0u64);
    let mut progress = Instant::now();
    let mut eof_at: Option<Instant> = None;
    loop {
        if eof_at.is_some_and(|t| t.elapsed() >= TAIL_QUIET) {
            break;
        }
        if progress.elapsed() > STALL {
            return Err(StageError::Setup(format!(
                "could not read the dedup changelog {topic} partition {p} to its end ({read} records read); is the broker reachable?"
            )));
        }
        match reader.poll(Duration::from_millis(50)) {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                eof_at.get_or_insert_with(Instant::now);
            }
            Some(Err(e)) => return Err(kafka_err(e)),
            Some(Ok(m)) => {
                read += 1;
                progress = Instant::now();
                eof_at = None;
                let seen = m.key().and_then(|k| parse(k, m.payload()));
                if let Some(seen) = seen.filter(|s| s.seen_ms >= since_ms) {
                    batch.push(seen);
                    kept += 1;
                }
                if batch.len() >= RESTORE_BATCH {
                    write(store, &mut batch)?;
                }
            }
        }
    }
    write(store, &mut batch)?;
    reader.unassign().map_err(kafka_err)?;
    tracing::info!(%topic, partition = p, records = read, entries = kept, "dedup window restored");
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Seen {
        Seen {
            key: DedupKey {
                sender: "LAB".into(),
                control_id: "MSG-1".into(),
                digest: [0xab; 32],
            },
            source: "hl7v2.oru/3/17".into(),
            seen_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn an_entry_reads_back_as_written_into_its_partition() {
        let r = record("g-dedup-changelog", 3, &seen());
        assert_eq!(r.partition, Some(3));
        let back = parse(r.key.as_deref().unwrap().as_bytes(), Some(&r.value)).unwrap();
        assert_eq!(back.key, seen().key);
        assert_eq!(back.source, "hl7v2.oru/3/17");
        assert_eq!(back.seen_ms, seen().seen_ms);
    }

    #[test]
    fn the_key_is_the_dedup_key_alone_so_compaction_keeps_the_latest() {
        let mut later = seen();
        later.source = "hl7v2.oru/3/99".into();
        later.seen_ms += 1;
        assert_eq!(record("t", 3, &seen()).key, record("t", 3, &later).key);
    }

    #[test]
    fn tombstones_and_foreign_records_are_not_entries() {
        let r = record("t", 0, &seen());
        assert!(parse(r.key.as_deref().unwrap().as_bytes(), None).is_none());
        assert!(parse(b"not json", Some(b"{}")).is_none());
    }

    #[test]
    fn the_topic_is_compacted_and_kept_longer_than_the_window() {
        let s = topic_settings(Duration::from_secs(3600));
        assert!(s.contains(&("cleanup.policy", "compact,delete".to_owned())));
        assert!(s.contains(&("retention.ms", (25 * 3600 * 1000).to_string())));
    }
}
