//! One pass over the log: every raw record in the window against the
//! outputs that name it.

use std::collections::{HashMap, HashSet};

use super::{Store, Window, CLOCK_SKEW_MS, LIST_AT_MOST};
use crate::headers as h;
use crate::record::{StoredRecord, WithHeaders};
use crate::stage::dedup::{self, DedupKey};
use crate::stage::StageConfig;
use crate::topics::FhirTopics;
use crate::transform::{Mapped, Mapper};

/// A raw record's coordinates: (index of its raw topic, partition, offset).
pub(crate) type Coord = (u8, i32, i64);

/// What the outputs naming one raw record say. Removed once that record is
/// read: what is left at the end names records that do not exist.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    /// `source.index` of each FHIR record, in the order read.
    pub(crate) indexes: Vec<u32>,
    /// `source.count` of the first FHIR record read.
    pub(crate) count: Option<u32>,
    /// FHIR records disagree on `source.count`.
    pub(crate) count_mismatch: bool,
    /// `fhir.dlq` entries of the whole message.
    pub(crate) dlq: u32,
    /// `fhir.dlq` entries of one segment (a partial outcome): indexed among
    /// the FHIR records.
    pub(crate) parts: u32,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Partition {
    pub(crate) first_read: Option<i64>,
    pub(crate) first_in_window: Option<i64>,
    pub(crate) last_in_window: Option<i64>,
    /// The last offset read that is before `--since`.
    pub(crate) last_before_window: Option<i64>,
    /// The first offset read that is after `--until`.
    pub(crate) first_after_window: Option<i64>,
}

/// A raw record with no outputs that would be missing unless an earlier copy
/// turns up (on another partition, or before the window).
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) coord: Coord,
    pub(crate) key: DedupKey,
    pub(crate) finding: Finding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) kind: &'static str,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Store id of the raw record on the embedded store (what `--repair`
    /// reads back); 0 for orphans.
    pub(crate) id: i64,
    pub(crate) control_id: String,
    /// Content-free: indexes, counts and output coordinates only.
    pub(crate) detail: String,
}

impl Finding {
    /// The control ID as printed: `-` when the record has none.
    pub(crate) fn shown_control_id(&self) -> &str {
        if self.control_id.is_empty() {
            "-"
        } else {
            &self.control_id
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Raw records in the window.
    pub(crate) raw: u64,
    pub(crate) resources: u64,
    pub(crate) no_content: u64,
    pub(crate) duplicate: u64,
    pub(crate) dead_lettered: u64,
    /// Mapped but for some segments, which were dead-lettered on their own.
    pub(crate) partly_mapped: u64,
    pub(crate) pending: u64,
}

#[derive(Clone)]
pub(crate) struct Report {
    pub(crate) summary: Summary,
    pub(crate) findings: Vec<Finding>,
    pub(crate) notes: Vec<String>,
}

pub(crate) const FINDING_KINDS: [&str; 4] = ["missing", "partial", "duplicated", "orphan"];

pub(crate) struct Reconciler<'a> {
    pub(crate) raw_topics: Vec<String>,
    pub(crate) topics: FhirTopics,
    pub(crate) mapper: &'a Mapper,
    pub(crate) window: Window,
    /// Kafka: partitions interleave (a duplicate's first copy on another
    /// partition may be read later), and retention may have removed the
    /// oldest raw records.
    pub(crate) kafka: bool,
    pub(crate) outputs: HashMap<Coord, Outputs>,
    /// Dedup key -> the first raw record with an outcome that carried it.
    pub(crate) first: HashMap<DedupKey, Coord>,
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) partitions: HashMap<(u8, i32), Partition>,
    pub(crate) summary: Summary,
    pub(crate) findings: Vec<Finding>,
    pub(crate) notes: Vec<String>,
}

impl<'a> Reconciler<'a> {
    pub(crate) fn new(
        stage: &StageConfig,
        mapper: &'a Mapper,
        window: Window,
        kafka: bool,
    ) -> Self {
        Self {
            raw_topics: stage.inputs.clone(),
            topics: stage.topics(),
            mapper,
            window,
            kafka,
            outputs: HashMap::new(),
            first: HashMap::new(),
            candidates: Vec::new(),
            partitions: HashMap::new(),
            summary: Summary::default(),
            findings: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn topic_index(&self, topic: &str) -> Option<u8> {
        self.raw_topics
            .iter()
            .position(|t| t == topic)
            .map(|i| i as u8)
    }

    pub(crate) fn finding(
        &mut self,
        kind: &'static str,
        coord: Coord,
        id: i64,
        control_id: &str,
        detail: String,
    ) {
        self.findings.push(Finding {
            kind,
            topic: self.raw_topics[coord.0 as usize].clone(),
            partition: coord.1,
            offset: coord.2,
            id,
            control_id: control_id.to_owned(),
            detail,
        });
    }

    /// One record of `fhir.encounter`, `fhir.observation` or `fhir.dlq`.
    pub(crate) fn add_output(&mut self, r: &StoredRecord) {
        if let Some(s) = self.window.since {
            if r.timestamp_ms < s.saturating_sub(CLOCK_SKEW_MS) {
                return;
            }
        }
        let Some(topic) = r.header(h::SOURCE_TOPIC) else {
            return self.malformed(r, "no source.topic header");
        };
        // Outputs of topics not walked here (another prefix) are not ours to judge.
        let Some(ti) = self.topic_index(topic) else {
            return;
        };
        let num = |name| r.header(name).and_then(|v| v.parse::<i64>().ok());
        let (Some(p), Some(o)) = (num(h::SOURCE_PARTITION), num(h::SOURCE_OFFSET)) else {
            return self.malformed(r, "no valid source.partition/source.offset headers");
        };
        let coord = (ti, p as i32, o);
        let part = r.header(h::ERROR_SEGMENT).is_some();
        if r.topic == self.topics.dlq && !part {
            self.outputs.entry(coord).or_default().dlq += 1;
            return;
        }
        let idx = |name| r.header(name).and_then(|v| v.parse::<u32>().ok());
        let (Some(index), Some(count)) = (idx(h::SOURCE_INDEX), idx(h::SOURCE_COUNT)) else {
            return self.malformed(r, "no valid source.index/source.count headers");
        };
        let e = self.outputs.entry(coord).or_default();
        e.indexes.push(index);
        if part {
            e.parts += 1;
        }
        match e.count {
            None => e.count = Some(count),
            Some(c) if c != count => e.count_mismatch = true,
            Some(_) => {}
        }
    }

    /// An output that names no raw record at all: an orphan, at its own coordinates.
    pub(crate) fn malformed(&mut self, r: &StoredRecord, why: &str) {
        self.findings.push(Finding {
            kind: "orphan",
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            id: 0,
            control_id: r.header(h::CONTROL_ID).unwrap_or("").to_owned(),
            detail: format!("output with {why}"),
        });
    }

    /// One raw record, in order within its partition. `pending`: the stage
    /// has not reached it yet.
    pub(crate) fn add_raw(&mut self, r: &StoredRecord, pending: bool) {
        let Some(ti) = self.topic_index(&r.topic) else {
            return;
        };
        let coord = (ti, r.partition, r.offset);
        let in_window = self.window.contains(r.timestamp_ms);
        let part = self.partitions.entry((ti, r.partition)).or_default();
        part.first_read = Some(part.first_read.map_or(r.offset, |f| f.min(r.offset)));
        if in_window {
            part.first_in_window = Some(part.first_in_window.map_or(r.offset, |f| f.min(r.offset)));
            part.last_in_window = Some(part.last_in_window.map_or(r.offset, |l| l.max(r.offset)));
        }
        if self.window.since.is_some_and(|s| r.timestamp_ms < s) {
            part.last_before_window = Some(
                part.last_before_window
                    .map_or(r.offset, |l| l.max(r.offset)),
            );
        }
        if self.window.until.is_some_and(|u| r.timestamp_ms > u) {
            part.first_after_window = Some(
                part.first_after_window
                    .map_or(r.offset, |f| f.min(r.offset)),
            );
        }
        let outputs = self.outputs.remove(&coord);
        if !in_window {
            return;
        }
        self.summary.raw += 1;
        let control_id = r.header(h::CONTROL_ID).unwrap_or("");
        let key = dedup::key(&crate::stage::embedded::source(r));
        if let Some(e) = outputs {
            self.check_outputs(coord, r.id, control_id, &e);
            if let Some(k) = key {
                self.first.entry(k).or_insert(coord);
            }
            return;
        }
        if pending {
            self.summary.pending += 1;
            return;
        }
        if let Some(k) = &key {
            if self.first.get(k).is_some_and(|f| *f != coord) {
                self.summary.duplicate += 1;
                return;
            }
        }
        let detail = match self.mapper.map(&r.value) {
            Ok(Mapped::NoContent) => {
                self.summary.no_content += 1;
                if let Some(k) = key {
                    self.first.entry(k).or_insert(coord);
                }
                return;
            }
            Ok(Mapped::Partial { resources, skipped }) => format!(
                "no outputs; it maps to {} FHIR record(s) and {} {} entr{} for segments it cannot map",
                resources.len(),
                skipped.len(),
                self.topics.dlq,
                if skipped.len() == 1 { "y" } else { "ies" }
            ),
            Ok(Mapped::Resources(v)) => {
                let mut topics: Vec<&str> = v
                    .iter()
                    .filter_map(|r| self.topics.for_type(r["resourceType"].as_str()?))
                    .collect();
                topics.dedup();
                format!(
                    "no outputs; it maps to {} FHIR record(s) on {}",
                    v.len(),
                    topics.join(", ")
                )
            }
            Err(_) => format!(
                "no outputs; it does not map, so a {} entry was expected",
                self.topics.dlq
            ),
        };
        let finding = Finding {
            kind: "missing",
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            id: r.id,
            control_id: control_id.to_owned(),
            detail,
        };
        match key {
            // Its first copy may still turn up: on another partition (Kafka),
            // or before the window.
            Some(key) if self.kafka || self.window.since.is_some() => {
                self.candidates.push(Candidate {
                    coord,
                    key,
                    finding,
                })
            }
            _ => self.findings.push(finding),
        }
    }

    /// Checks the outputs of a raw record: either FHIR records with indexes
    /// exactly `0..source.count`, or one `fhir.dlq` entry.
    pub(crate) fn check_outputs(&mut self, coord: Coord, id: i64, control_id: &str, e: &Outputs) {
        let mut found: Vec<(&'static str, String)> = Vec::new();
        if !e.indexes.is_empty() && e.dlq > 0 {
            found.push((
                "duplicated",
                format!(
                    "both {} FHIR record(s) and {} {} entr{}",
                    e.indexes.len(),
                    e.dlq,
                    self.topics.dlq,
                    if e.dlq == 1 { "y" } else { "ies" }
                ),
            ));
        } else if e.dlq > 1 {
            found.push((
                "duplicated",
                format!("{} {} entries", e.dlq, self.topics.dlq),
            ));
        }
        if !e.indexes.is_empty() {
            let count = e.count.unwrap_or(0);
            let mut sorted = e.indexes.clone();
            sorted.sort_unstable();
            let mut twice: Vec<String> = Vec::new();
            for run in sorted.chunk_by(|a, b| a == b).filter(|r| r.len() > 1) {
                twice.push(format!("{} written {} times", run[0], run.len()));
            }
            if !twice.is_empty() {
                found.push(("duplicated", format!("source.index {}", twice.join(", "))));
            }
            sorted.dedup();
            let present = sorted.iter().filter(|i| **i < count).count() as u64;
            let missing = u64::from(count) - present;
            let beyond: Vec<String> = sorted
                .iter()
                .filter(|i| **i >= count)
                .map(|i| i.to_string())
                .collect();
            let mut problems = Vec::new();
            if missing > 0 {
                let mut listed = Vec::new();
                let mut i = 0u32;
                while listed.len() < LIST_AT_MOST && i < count {
                    if sorted.binary_search(&i).is_err() {
                        listed.push(i.to_string());
                    }
                    i += 1;
                }
                let more = if missing > listed.len() as u64 {
                    ", ..."
                } else {
                    ""
                };
                problems.push(format!(
                    "{missing} of {count} missing (source.index {}{more})",
                    listed.join(", ")
                ));
            }
            if !beyond.is_empty() {
                problems.push(format!(
                    "source.index {} beyond source.count {count}",
                    beyond.join(", ")
                ));
            }
            if e.count_mismatch {
                problems.push("outputs disagree on source.count".into());
            }
            if !problems.is_empty() {
                found.push(("partial", format!("FHIR records: {}", problems.join("; "))));
            }
        }
        if found.is_empty() {
            if e.indexes.is_empty() {
                self.summary.dead_lettered += 1;
            } else if e.parts > 0 {
                self.summary.partly_mapped += 1;
            } else {
                self.summary.resources += 1;
            }
        }
        for (kind, detail) in found {
            self.finding(kind, coord, id, control_id, detail);
        }
    }

    /// Resolves what could only be judged after the walk, and names orphans.
    pub(crate) fn finish(
        mut self,
        store: &Store,
        output_topics: &[String],
    ) -> anyhow::Result<Report> {
        // Kafka: a first copy read later, on another partition.
        let mut open = Vec::new();
        for c in std::mem::take(&mut self.candidates) {
            let elsewhere = self.kafka
                && self
                    .first
                    .get(&c.key)
                    .is_some_and(|f| (f.0, f.1) != (c.coord.0, c.coord.1));
            if elsewhere {
                self.summary.duplicate += 1;
            } else {
                open.push(c);
            }
        }
        // A first copy before the window: walk the raw records before it,
        // looking only at those with a candidate's control ID.
        if let (Some(since), false) = (self.window.since, open.is_empty()) {
            let ids: HashSet<String> = open.iter().map(|c| c.key.control_id.clone()).collect();
            let mut before: HashSet<DedupKey> = HashSet::new();
            let wanted: HashSet<&DedupKey> = open.iter().map(|c| &c.key).collect();
            store.walk(&self.raw_topics, true, &mut |r| {
                if r.timestamp_ms >= since
                    || !r.header(h::CONTROL_ID).is_some_and(|c| ids.contains(c))
                {
                    return Ok(());
                }
                let src = crate::stage::embedded::source(r);
                if let Some(k) = dedup::key(&src).filter(|k| wanted.contains(k)) {
                    before.insert(k);
                }
                Ok(())
            })?;
            open.retain(|c| {
                let dup = before.contains(&c.key);
                if dup {
                    self.summary.duplicate += 1;
                }
                !dup
            });
        }
        self.findings.extend(open.into_iter().map(|c| c.finding));
        self.orphans(store, output_topics)?;
        self.findings.sort_by(|a, b| {
            (&a.topic, a.partition, a.offset, a.kind).cmp(&(
                &b.topic,
                b.partition,
                b.offset,
                b.kind,
            ))
        });
        Ok(Report {
            summary: self.summary,
            findings: self.findings,
            notes: self.notes,
        })
    }

    /// Whether a raw record at `coord` would be in the window, judged by the
    /// offsets of the records around it (it does not exist itself): inside
    /// when between two records in the window, outside when at or before one
    /// before it or at or after one after it; `None` in the gaps between.
    pub(crate) fn orphan_in_window(&self, coord: Coord) -> Option<bool> {
        let part = self.partitions.get(&(coord.0, coord.1));
        let o = coord.2;
        if self.kafka && part.and_then(|p| p.first_read).is_none_or(|f| o < f) {
            // Below the first offset read may be retention, not loss.
            return Some(false);
        }
        let Some(p) = part else {
            return self
                .window
                .since
                .or(self.window.until)
                .is_none()
                .then_some(true);
        };
        if p.last_before_window.is_some_and(|l| o <= l)
            || p.first_after_window.is_some_and(|f| o >= f)
        {
            return Some(false);
        }
        let lo = match self.window.since {
            None => Some(i64::MIN),
            Some(_) => p.first_in_window,
        };
        let hi = match self.window.until {
            None => Some(i64::MAX),
            Some(_) => p.last_in_window,
        };
        match (lo, hi) {
            (Some(lo), Some(hi)) if (lo..=hi).contains(&o) => Some(true),
            _ => None,
        }
    }

    /// Outputs naming a raw record that does not exist: one finding per
    /// named record, with the first such output and the control ID it carries.
    pub(crate) fn orphans(
        &mut self,
        store: &Store,
        output_topics: &[String],
    ) -> anyhow::Result<()> {
        #[derive(Default)]
        struct Orphan {
            outputs: u32,
            earliest_ms: i64,
            /// The first output read: its topic/partition/offset and control ID.
            first: Option<(String, i32, i64, String)>,
        }
        let mut orphans: HashMap<Coord, Orphan> = self
            .outputs
            .keys()
            .filter(|c| self.orphan_in_window(**c) != Some(false))
            .map(|c| (*c, Orphan::default()))
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        let since = self.window.since;
        let raw_topics = &self.raw_topics;
        store.walk(output_topics, false, &mut |r| {
            if since.is_some_and(|s| r.timestamp_ms < s.saturating_sub(CLOCK_SKEW_MS)) {
                return Ok(());
            }
            let Some(ti) = r
                .header(h::SOURCE_TOPIC)
                .and_then(|t| raw_topics.iter().position(|x| x == t))
            else {
                return Ok(());
            };
            let num = |name| r.header(name).and_then(|v| v.parse::<i64>().ok());
            let (Some(p), Some(o)) = (num(h::SOURCE_PARTITION), num(h::SOURCE_OFFSET)) else {
                return Ok(());
            };
            if let Some(orphan) = orphans.get_mut(&(ti as u8, p as i32, o)) {
                orphan.earliest_ms = match orphan.outputs {
                    0 => r.timestamp_ms,
                    _ => orphan.earliest_ms.min(r.timestamp_ms),
                };
                orphan.outputs += 1;
                orphan.first.get_or_insert_with(|| {
                    (
                        r.topic.clone(),
                        r.partition,
                        r.offset,
                        r.header(h::CONTROL_ID).unwrap_or("").to_owned(),
                    )
                });
            }
            Ok(())
        })?;
        for (coord, orphan) in orphans {
            // In a gap at the edge of the window, its earliest output stands
            // in for its time: the stage writes outputs right after ingest.
            if self.orphan_in_window(coord).is_none() && !self.window.contains(orphan.earliest_ms) {
                continue;
            }
            let n = orphan.outputs;
            let (at, control_id) = match orphan.first {
                Some((t, p, o, c)) => (format!(", e.g. {t}/{p}/{o}"), c),
                None => (String::new(), String::new()),
            };
            self.finding(
                "orphan",
                coord,
                0,
                &control_id,
                format!("{n} output(s) name this raw record, which does not exist{at}"),
            );
        }
        Ok(())
    }
}
