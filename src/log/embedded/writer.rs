//! The writer thread's side of the store: one transaction per group of
//! appends, offsets assigned inside it.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{header_json, Append};
use crate::log::partitioner::partition_for_key;
use crate::record::Position;

/// Offsets and partition counts, owned by the writer thread.
pub(super) struct WriterState {
    default_partitions: u32,
    partitions: HashMap<String, u32>,
    next_offset: HashMap<(String, i32), i64>,
    round_robin: u32,
}

impl WriterState {
    pub(super) fn load(
        conn: &Connection,
        default_partitions: u32,
    ) -> Result<Self, rusqlite::Error> {
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

    pub(super) fn commit_and_reply(&mut self, conn: &mut Connection, mut group: Vec<Append>) {
        match self.commit(conn, &mut group) {
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
        group: &mut [Append],
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
        group: &mut [Append],
    ) -> Result<(Vec<Position>, Vec<((String, i32), i64)>, Vec<(String, u32)>), rusqlite::Error>
    {
        let mut new_topics: Vec<(String, u32)> = Vec::new();
        // Next offset of each (topic, partition) this group wrote to; a group
        // touches few of them, so a list beats a map.
        let mut next: Vec<((String, i32), i64)> = Vec::new();
        // Record bytes added to each of those, in the same order.
        let mut added: Vec<i64> = Vec::new();
        let mut positions = Vec::with_capacity(group.iter().map(|a| a.records.len()).sum());
        // Header JSON, written into one buffer reused across the group.
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
                headers.clear();
                header_json::write(&mut headers, &r.headers);
                let headers = headers.as_str();
                insert.execute(params![
                    r.topic,
                    partition,
                    offset,
                    r.timestamp_ms,
                    r.key,
                    headers,
                    &r.value[..]
                ])?;
                let size =
                    (r.value.len() + headers.len() + r.key.as_ref().map_or(0, |k| k.len())) as i64;
                match slot {
                    Some(i) => {
                        next[i].1 = offset + 1;
                        added[i] += size;
                    }
                    None => {
                        next.push(((r.topic.clone(), partition), offset + 1));
                        added.push(size);
                    }
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
                "INSERT INTO partition_offsets (topic, partition, next_offset, bytes) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset,
                     bytes = bytes + excluded.bytes",
            )?;
            for (((topic, partition), o), b) in next.iter().zip(&added) {
                upsert.execute(params![topic, partition, o, b])?;
            }
        }
        for work in group.iter_mut().filter_map(|a| a.work.take()) {
            work(conn)?;
        }
        Ok((positions, next, new_topics))
    }
}
