//! `hl7bridge reconcile`: the safety net after the real-time path.
//!
//! Walks the raw topics (`hl7v2.adt/oru/orm`), or a time window of them, and
//! checks that every raw record has its recorded outcome, exactly one of:
//! - FHIR records on `fhir.encounter`/`fhir.observation` naming it in
//!   `source.topic/partition/offset`, whose `source.index` values are exactly
//!   `0..source.count`, each once;
//! - one `fhir.dlq` entry naming it;
//! - none, because it maps to no FHIR content (re-mapped here with the
//!   stage's mapper);
//! - none, because it is a sender duplicate: same sending facility, control
//!   ID and bytes as an earlier raw record that has its outcome (the stage's
//!   dedup).
//!
//! Raw records the stage has not reached yet (after the embedded stage
//! cursor, or at or after the consumer group's committed offset on Kafka)
//! are `pending`. Anything else is a finding: `missing`, `partial`,
//! `duplicated`, or `orphan` (an output naming a raw record that does not
//! exist). Their sum is the gap count (`gap_count` in `--json`). Exit status
//! 1 when there is any finding.
//!
//! `--metrics-file FILE` also writes `reconciliation_gap_count{finding=...}`,
//! `reconciliation_pending_records` and
//! `reconciliation_last_run_timestamp_seconds` as gauges in the Prometheus
//! textfile-collector format: reconcile is one-shot (run it from cron or a
//! timer), so node_exporter's textfile collector exports them. The file is
//! written beside itself and renamed into place; with `--repair` it holds the
//! check after the repair.
//!
//! `--repair` (embedded store only) re-drives each `missing` and `partial`
//! raw record through the same [`Stage`] the transform runs, and appends the
//! outputs whose `source.index` is not on the store yet (a record that maps
//! to a dead letter gets its `fhir.dlq` entry), in one transaction per page
//! of records. Resource ids are deterministic, so what is appended is what
//! the stage would have written. Of several identical missing copies only
//! the first is re-driven, as the stage's dedup would. A record whose present
//! outputs disagree with its mapping now (the mappings changed) is left
//! alone. Then the check runs again and is printed again; exit status 0 if
//! nothing is left. `duplicated` and `orphan` cannot be repaired on an
//! append-only log and are reported as such. It is safe beside a running
//! `serve`: store writers read partition offsets inside their transaction,
//! and only records the stage has already passed (at or before its cursor)
//! can be missing or partial, so the stage never writes them again. On
//! Kafka `--repair` is refused: the stage's exactly-once recovery reads the
//! last record of each output partition and relies on its `source.covered`
//! header, so no other producer may append there; gaps on Kafka mean
//! retention removed outputs or the stage ran `--at-least-once`.
//!
//! Memory: per raw record that has outputs, the `source.index` values of its
//! outputs; per raw record with an outcome and a control ID, its dedup key
//! (facility, control ID, SHA-256 of the bytes). Raw values are streamed.
//! Nothing read from a message is printed except its control ID.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::StoreArgs;
use crate::config::Config;
use crate::intake::headers as h;
use crate::log::embedded::{EmbeddedConfig, EmbeddedLog, EmbeddedReader, StoredRecord};
use crate::log::{Log, Record};
use crate::stage::dedup::{self, DedupKey};
use crate::stage::{headers as sh, Outcome, OutputTopics, Source, Stage, StageConfig};
use crate::transform::{Mapped, Mapper};

/// Outputs are written after their input; with `--since`, outputs older than
/// the window start by more than this (clock skew between the bridge and a
/// Kafka stage host) cannot belong to a raw record in the window.
const CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;
/// Records per page read from the embedded store.
const PAGE: usize = 500;
/// Missing indexes listed in one finding.
const LIST_AT_MOST: usize = 8;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only raw records written at or after this: an age (2h, 7d) or an RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    since: Option<i64>,
    /// Only raw records written at or before this: an age (10m) or an RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    until: Option<i64>,
    /// Print the summary and the findings as JSON.
    #[arg(long)]
    json: bool,
    /// The stage's consumer group (Kafka) or cursor name (embedded) [default: hl7bridge-transform].
    #[arg(long, env = "HL7BRIDGE_TRANSFORM_GROUP")]
    group: Option<String>,
    /// Raw topic prefix [default: hl7v2.].
    #[arg(long, env = "HL7BRIDGE_TOPIC_PREFIX")]
    topic_prefix: Option<String>,
    /// Output topic prefix [default: fhir.].
    #[arg(long, env = "HL7BRIDGE_OUTPUT_PREFIX")]
    output_prefix: Option<String>,
    /// The mapping file the stage runs with [default: the built-in mappings/tables.toml].
    #[arg(long, env = "HL7BRIDGE_MAPPINGS")]
    mappings: Option<PathBuf>,
    /// CX-5 identifier types the stage runs with [default: MR,PI].
    #[arg(long, env = "HL7BRIDGE_PATIENT_ID_TYPES", value_delimiter = ',')]
    patient_id_types: Option<Vec<String>>,
    /// Charset fallback the stage runs with [default: windows-1252].
    #[arg(long, env = "HL7BRIDGE_CHARSET_FALLBACK")]
    charset_fallback: Option<String>,
    /// Also write the gap counts to FILE, atomically, in the Prometheus
    /// textfile-collector format (name it *.prom in the collector's directory).
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Re-drive missing and partial raw records through the transform and
    /// append the outputs they lack, then check again (embedded store only).
    #[arg(long)]
    repair: bool,
}

impl ReconcileArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = self.store.config()?;
        if let Some(v) = &self.group {
            c.transform.group = v.clone();
        }
        if let Some(v) = &self.topic_prefix {
            c.topic_prefix = v.clone();
        }
        if let Some(v) = &self.output_prefix {
            c.transform.output_prefix = v.clone();
        }
        if let Some(v) = &self.mappings {
            c.transform.mappings = Some(v.clone());
        }
        if let Some(v) = &self.patient_id_types {
            c.patient_id_types = v.clone();
        }
        if let Some(v) = &self.charset_fallback {
            c.charset_fallback = v.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

/// `--since`/`--until` as milliseconds since the epoch.
fn parse_time(s: &str) -> Result<i64, String> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(s) {
        Ok(age) => now.checked_sub(age).ok_or("age reaches before 1970")?,
        Err(_) => humantime::parse_rfc3339_weak(s)
            .map_err(|_| format!("expected an age like 2h or an RFC 3339 time, got {s:?}"))?,
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| "time before 1970".to_owned())
}

/// Why `--repair` is refused on Kafka.
const KAFKA_REPAIR: &str = "--repair works on the embedded store only. On Kafka the \
transform's exactly-once recovery reads the last record of each output partition and \
relies on its source.covered header, so no producer other than the transform group may \
append to the output topics. Gaps there mean retention removed outputs or the stage ran \
with --at-least-once: stop the transform group and fix that cause. Run reconcile without \
--repair to list the gaps.";

pub fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    let window = Window {
        since: args.since,
        until: args.until,
    };
    if let (Some(s), Some(u)) = (window.since, window.until) {
        anyhow::ensure!(s <= u, "--since is after --until");
    }
    if args.repair && cfg.kafka.enabled() {
        anyhow::bail!(KAFKA_REPAIR);
    }
    let mapper = super::transform::mapper(&cfg)?;
    let stage = StageConfig::from_config(&cfg);
    let (backend, report) = check(&cfg, &stage, &mapper, window)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (backend, report, repair) = if args.repair {
        if !args.json {
            report.print(&mut out, &backend, &stage, window)?;
            out.flush()?;
        }
        let repair = repair(&cfg, &stage, &backend, &report)?;
        if !args.json {
            repair.print(&mut out)?;
        }
        let before = report;
        let (backend, report) = if repair.targets > 0 {
            if !args.json {
                writeln!(out, "\nafter repair:")?;
            }
            check(&cfg, &stage, &mapper, window)?
        } else {
            (backend, before.clone())
        };
        (backend, report, Some((repair, before)))
    } else {
        (backend, report, None)
    };
    if args.json {
        let mut doc = report.to_json(&backend, &stage, window);
        if let Some((repair, before)) = &repair {
            doc["repair"] = repair.to_json(before);
        }
        writeln!(out, "{doc}")?;
    } else if repair.as_ref().is_none_or(|(r, _)| r.targets > 0) {
        report.print(&mut out, &backend, &stage, window)?;
    }
    out.flush()?;
    if let Some(path) = &args.metrics_file {
        write_metrics(path, &report)
            .with_context(|| format!("writing the metrics file {}", path.display()))?;
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One pass over the store: every raw record in the window against its outputs.
fn check(
    cfg: &Config,
    stage: &StageConfig,
    mapper: &Mapper,
    window: Window,
) -> anyhow::Result<(Backend, Report)> {
    let (backend, mut notes) = Backend::open(cfg, &stage.inputs)?;
    let mut rec = Reconciler::new(stage, mapper, window, backend.is_kafka());
    rec.notes.append(&mut notes);
    let outputs: Vec<String> = stage.topics().all().iter().map(|s| s.to_string()).collect();
    backend.walk(&outputs, false, &mut |r| {
        rec.add_output(r);
        Ok(())
    })?;
    backend.walk(&stage.inputs, true, &mut |r| {
        rec.add_raw(r, backend.pending(r));
        Ok(())
    })?;
    let report = rec.finish(&backend, &outputs)?;
    Ok((backend, report))
}

/// Writes the gap counts of `report` to `path` in the Prometheus
/// textfile-collector format: to a temporary file beside it first, then
/// renamed over it, so the collector never reads half a file.
fn write_metrics(path: &std::path::Path, report: &Report) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .context("the metrics file path names no file")?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    // Not *.prom, so the collector skips it while it is being written.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(metrics_text(report, std::time::SystemTime::now()).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}

fn metrics_text(report: &Report, now: std::time::SystemTime) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    s.push_str(
        "# HELP reconciliation_gap_count Raw records without their recorded outcome, by finding.\n",
    );
    s.push_str("# TYPE reconciliation_gap_count gauge\n");
    for kind in FINDING_KINDS {
        let _ = writeln!(
            s,
            "reconciliation_gap_count{{finding=\"{kind}\"}} {}",
            report.count(kind)
        );
    }
    s.push_str(
        "# HELP reconciliation_pending_records Raw records the stage has not reached yet.\n",
    );
    s.push_str("# TYPE reconciliation_pending_records gauge\n");
    let _ = writeln!(
        s,
        "reconciliation_pending_records {}",
        report.summary.pending
    );
    s.push_str(
        "# HELP reconciliation_last_run_timestamp_seconds When reconcile last finished a check.\n",
    );
    s.push_str("# TYPE reconciliation_last_run_timestamp_seconds gauge\n");
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(s, "reconciliation_last_run_timestamp_seconds {secs:.3}");
    s
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    since: Option<i64>,
    until: Option<i64>,
}

impl Window {
    fn contains(&self, ts: i64) -> bool {
        self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts <= u)
    }

    fn describe(&self) -> String {
        let t = |ms: i64| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
            )
            .to_string()
        };
        match (self.since, self.until) {
            (None, None) => "all records".into(),
            (Some(s), None) => format!("records since {}", t(s)),
            (None, Some(u)) => format!("records until {}", t(u)),
            (Some(s), Some(u)) => format!("records from {} to {}", t(s), t(u)),
        }
    }
}

/// Where the records are, and how far the stage has got.
enum Backend {
    Embedded {
        reader: EmbeddedReader,
        dir: PathBuf,
        group: String,
        /// Store id of the last raw record the stage has handled.
        cursor: i64,
    },
    Kafka {
        cfg: crate::log::kafka::KafkaConfig,
        group: String,
        existing: HashSet<String>,
        /// The group's committed offsets; `None` if they could not be fetched.
        committed: Option<HashMap<(String, i32), i64>>,
    },
}

impl Backend {
    /// Opens the store and reads the stage's progress first: whatever the
    /// stage commits after that is then either visible or counted pending.
    fn open(cfg: &Config, inputs: &[String]) -> anyhow::Result<(Self, Vec<String>)> {
        let group = cfg.transform.group.clone();
        let mut notes = Vec::new();
        if !cfg.kafka.enabled() {
            let reader = EmbeddedReader::open(&cfg.data_dir).with_context(|| {
                format!("opening the embedded store in {}", cfg.data_dir.display())
            })?;
            let cursor = reader.stage_cursor(&group)?;
            if cursor == 0 {
                notes.push(format!(
                    "the stage (cursor {group:?}) has not processed anything yet"
                ));
            }
            let dir = cfg.data_dir.clone();
            return Ok((
                Backend::Embedded {
                    reader,
                    dir,
                    group,
                    cursor,
                },
                notes,
            ));
        }
        let topics = crate::log::kafka::list_topics(&cfg.kafka)?;
        let committed = match committed_offsets(cfg, &topics, inputs) {
            Ok(c) => Some(c),
            Err(e) => {
                notes.push(format!(
                    "cannot read the committed offsets of consumer group {group:?} ({e}): raw records the stage has not reached yet are reported as missing"
                ));
                None
            }
        };
        let existing = topics.into_iter().map(|t| t.name).collect();
        Ok((
            Backend::Kafka {
                cfg: cfg.kafka.clone(),
                group,
                existing,
                committed,
            },
            notes,
        ))
    }

    fn is_kafka(&self) -> bool {
        matches!(self, Backend::Kafka { .. })
    }

    /// Calls `each` for every record of `topics`: on the embedded store in
    /// write order, on Kafka topic by topic, each partition in offset order.
    /// Without `values`, record values may be left empty.
    fn walk(
        &self,
        topics: &[String],
        values: bool,
        each: &mut dyn FnMut(&StoredRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Embedded { reader, .. } => {
                let mut after = 0;
                loop {
                    let page = if values {
                        reader.read_topics(topics, after, PAGE)?
                    } else {
                        reader.read_topics_meta(topics, after, PAGE)?
                    };
                    let Some(last) = page.last() else {
                        return Ok(());
                    };
                    after = last.id;
                    for r in &page {
                        each(r)?;
                    }
                }
            }
            Backend::Kafka { cfg, existing, .. } => {
                for topic in topics.iter().filter(|t| existing.contains(*t)) {
                    let mut failed = None;
                    crate::log::kafka::tail(cfg, topic, true, false, |r| match each(&r) {
                        Ok(()) => true,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    })
                    .with_context(|| format!("reading {topic}"))?;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
                Ok(())
            }
        }
    }

    /// True if the stage has not reached this raw record yet.
    fn pending(&self, r: &StoredRecord) -> bool {
        match self {
            Backend::Embedded { cursor, .. } => r.id > *cursor,
            Backend::Kafka { committed, .. } => match committed {
                // No committed offset: the group has finished nothing there yet.
                Some(c) => c
                    .get(&(r.topic.clone(), r.partition))
                    .is_none_or(|next| r.offset >= *next),
                None => false,
            },
        }
    }
}

/// The committed offsets of the transform group on the raw topics, read
/// without joining the group and never committing.
fn committed_offsets(
    cfg: &Config,
    topics: &[crate::log::embedded::TopicSummary],
    inputs: &[String],
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let mut c = cfg.kafka.base();
    c.set("group.id", &cfg.transform.group);
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer = c.create()?;
    let mut tpl = TopicPartitionList::new();
    for t in topics.iter().filter(|t| inputs.contains(&t.name)) {
        for p in 0..t.partitions {
            tpl.add_partition(&t.name, p as i32);
        }
    }
    let mut out = HashMap::new();
    if tpl.count() == 0 {
        return Ok(out);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    for e in got.elements() {
        e.error()?;
        if let Offset::Offset(o) = e.offset() {
            out.insert((e.topic().to_owned(), e.partition()), o);
        }
    }
    Ok(out)
}

/// A raw record's coordinates: (index of its raw topic, partition, offset).
type Coord = (u8, i32, i64);

/// What the outputs naming one raw record say. Removed once that record is
/// read: what is left at the end names records that do not exist.
#[derive(Debug, Default)]
struct Outputs {
    /// `source.index` of each FHIR record, in the order read.
    indexes: Vec<u32>,
    /// `source.count` of the first FHIR record read.
    count: Option<u32>,
    /// FHIR records disagree on `source.count`.
    count_mismatch: bool,
    /// `fhir.dlq` entries.
    dlq: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct Partition {
    first_read: Option<i64>,
    first_in_window: Option<i64>,
    last_in_window: Option<i64>,
    /// The last offset read that is before `--since`.
    last_before_window: Option<i64>,
    /// The first offset read that is after `--until`.
    first_after_window: Option<i64>,
}

/// A raw record with no outputs that would be missing unless an earlier copy
/// turns up (on another partition, or before the window).
#[derive(Debug)]
struct Candidate {
    coord: Coord,
    key: DedupKey,
    finding: Finding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    kind: &'static str,
    topic: String,
    partition: i32,
    offset: i64,
    /// Store id of the raw record on the embedded store (what `--repair`
    /// reads back); 0 for orphans.
    id: i64,
    control_id: String,
    /// Content-free: indexes, counts and output coordinates only.
    detail: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Summary {
    /// Raw records in the window.
    raw: u64,
    resources: u64,
    no_content: u64,
    duplicate: u64,
    dead_lettered: u64,
    pending: u64,
}

#[derive(Clone)]
struct Report {
    summary: Summary,
    findings: Vec<Finding>,
    notes: Vec<String>,
}

const FINDING_KINDS: [&str; 4] = ["missing", "partial", "duplicated", "orphan"];

struct Reconciler<'a> {
    raw_topics: Vec<String>,
    topics: OutputTopics,
    mapper: &'a Mapper,
    window: Window,
    /// Kafka: partitions interleave (a duplicate's first copy on another
    /// partition may be read later), and retention may have removed the
    /// oldest raw records.
    kafka: bool,
    outputs: HashMap<Coord, Outputs>,
    /// Dedup key -> the first raw record with an outcome that carried it.
    first: HashMap<DedupKey, Coord>,
    candidates: Vec<Candidate>,
    partitions: HashMap<(u8, i32), Partition>,
    summary: Summary,
    findings: Vec<Finding>,
    notes: Vec<String>,
}

impl<'a> Reconciler<'a> {
    fn new(stage: &StageConfig, mapper: &'a Mapper, window: Window, kafka: bool) -> Self {
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

    fn topic_index(&self, topic: &str) -> Option<u8> {
        self.raw_topics
            .iter()
            .position(|t| t == topic)
            .map(|i| i as u8)
    }

    fn finding(
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
    fn add_output(&mut self, r: &StoredRecord) {
        if let Some(s) = self.window.since {
            if r.timestamp_ms < s.saturating_sub(CLOCK_SKEW_MS) {
                return;
            }
        }
        let Some(topic) = r.header(sh::SOURCE_TOPIC) else {
            return self.malformed(r, "no source.topic header");
        };
        // Outputs of topics not walked here (another prefix) are not ours to judge.
        let Some(ti) = self.topic_index(topic) else {
            return;
        };
        let num = |name| r.header(name).and_then(|v| v.parse::<i64>().ok());
        let (Some(p), Some(o)) = (num(sh::SOURCE_PARTITION), num(sh::SOURCE_OFFSET)) else {
            return self.malformed(r, "no valid source.partition/source.offset headers");
        };
        let coord = (ti, p as i32, o);
        if r.topic == self.topics.dlq {
            self.outputs.entry(coord).or_default().dlq += 1;
            return;
        }
        let idx = |name| r.header(name).and_then(|v| v.parse::<u32>().ok());
        let (Some(index), Some(count)) = (idx(sh::SOURCE_INDEX), idx(sh::SOURCE_COUNT)) else {
            return self.malformed(r, "no valid source.index/source.count headers");
        };
        let e = self.outputs.entry(coord).or_default();
        e.indexes.push(index);
        match e.count {
            None => e.count = Some(count),
            Some(c) if c != count => e.count_mismatch = true,
            Some(_) => {}
        }
    }

    /// An output that names no raw record at all: an orphan, at its own coordinates.
    fn malformed(&mut self, r: &StoredRecord, why: &str) {
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
    fn add_raw(&mut self, r: &StoredRecord, pending: bool) {
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
            Ok(Mapped::Resources(v)) => format!(
                "no outputs; it maps to {} FHIR record(s) on {}/{}",
                v.len(),
                self.topics.encounter,
                self.topics.observation
            ),
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
    fn check_outputs(&mut self, coord: Coord, id: i64, control_id: &str, e: &Outputs) {
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
            } else {
                self.summary.resources += 1;
            }
        }
        for (kind, detail) in found {
            self.finding(kind, coord, id, control_id, detail);
        }
    }

    /// Resolves what could only be judged after the walk, and names orphans.
    fn finish(mut self, backend: &Backend, output_topics: &[String]) -> anyhow::Result<Report> {
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
            backend.walk(&self.raw_topics, true, &mut |r| {
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
        self.orphans(backend, output_topics)?;
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
    fn orphan_in_window(&self, coord: Coord) -> Option<bool> {
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
    fn orphans(&mut self, backend: &Backend, output_topics: &[String]) -> anyhow::Result<()> {
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
        backend.walk(output_topics, false, &mut |r| {
            if since.is_some_and(|s| r.timestamp_ms < s.saturating_sub(CLOCK_SKEW_MS)) {
                return Ok(());
            }
            let Some(ti) = r
                .header(sh::SOURCE_TOPIC)
                .and_then(|t| raw_topics.iter().position(|x| x == t))
            else {
                return Ok(());
            };
            let num = |name| r.header(name).and_then(|v| v.parse::<i64>().ok());
            let (Some(p), Some(o)) = (num(sh::SOURCE_PARTITION), num(sh::SOURCE_OFFSET)) else {
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

/// What `--repair` did.
#[derive(Debug, Default)]
struct Repair {
    /// Raw records with a `missing` or `partial` finding.
    targets: usize,
    /// Raw records that got the outputs they lacked.
    repaired: usize,
    /// Outputs appended.
    written: usize,
    /// Appends, each one SQLite transaction.
    appends: usize,
    /// Missing raw records left as sender duplicates of one repaired here.
    duplicates: usize,
    /// Raw records that had their outcome by the time they were re-driven.
    up_to_date: usize,
    /// Findings left as they are, and why (content-free).
    not_repairable: Vec<(Finding, String)>,
}

/// The outputs already on the store for one raw record being repaired.
#[derive(Debug, Default)]
struct Present {
    /// `(source.index, source.count, fhir.id)` of each FHIR record.
    fhir: Vec<(u32, Option<u32>, Option<String>)>,
    dlq: u32,
}

/// Re-drives the `missing` and `partial` raw records of `report` through the
/// stage and appends the outputs they lack, one append per page of them.
fn repair(
    cfg: &Config,
    stage_cfg: &StageConfig,
    backend: &Backend,
    report: &Report,
) -> anyhow::Result<Repair> {
    let Backend::Embedded { reader, dir, .. } = backend else {
        anyhow::bail!(KAFKA_REPAIR);
    };
    let mut done = Repair::default();
    let mut targets: Vec<&Finding> = Vec::new();
    for f in &report.findings {
        let why = match f.kind {
            "missing" | "partial" if f.id > 0 => {
                targets.push(f);
                continue;
            }
            "duplicated" => "an append-only log cannot take back an output written twice",
            "orphan" => {
                "an append-only log cannot take back outputs whose raw record does not exist"
            }
            _ => "its raw record cannot be read back",
        };
        done.not_repairable.push((f.clone(), why.to_owned()));
    }
    targets.sort_by_key(|f| f.id);
    done.targets = targets.len();
    if targets.is_empty() {
        return Ok(done);
    }

    // What each target already has, read again now rather than trusted from the check.
    let inputs = &stage_cfg.inputs;
    let index_of = |t: &str| inputs.iter().position(|x| x == t).map(|i| i as u8);
    let coord_of = |f: &Finding| index_of(&f.topic).map(|t| (t, f.partition, f.offset));
    let mut present: HashMap<Coord, Present> = targets
        .iter()
        .filter_map(|f| coord_of(f))
        .map(|c| (c, Present::default()))
        .collect();
    let topics = stage_cfg.topics();
    let outputs: Vec<String> = topics.all().iter().map(|s| s.to_string()).collect();
    backend.walk(&outputs, false, &mut |r| {
        let Some(ti) = r.header(sh::SOURCE_TOPIC).and_then(index_of) else {
            return Ok(());
        };
        let num = |name| r.header(name).and_then(|v| v.parse::<i64>().ok());
        let (Some(p), Some(o)) = (num(sh::SOURCE_PARTITION), num(sh::SOURCE_OFFSET)) else {
            return Ok(());
        };
        let Some(e) = present.get_mut(&(ti, p as i32, o)) else {
            return Ok(());
        };
        if r.topic == topics.dlq {
            e.dlq += 1;
        } else if let Some(i) = num(sh::SOURCE_INDEX) {
            e.fhir.push((
                i as u32,
                num(sh::SOURCE_COUNT).map(|c| c as u32),
                r.header(sh::RESOURCE_ID).map(str::to_owned),
            ));
        }
        Ok(())
    })?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut scfg = cfg.clone();
    // No registry HTTP server: the registry is only read (and the schemas,
    // already registered by the stage, registered again idempotently).
    scfg.transform.registry_listen = String::new();
    let stage = rt.block_on(async {
        let (registry, _) =
            super::transform::open_registry(&scfg, CancellationToken::new()).await?;
        super::transform::build_stage(&scfg, &registry).await
    })?;
    anyhow::ensure!(
        stage.topics() == &topics,
        "the stage writes to other output topics than those checked"
    );
    let mut store = EmbeddedConfig::new(dir);
    store.partitions = cfg.partitions;
    let log = EmbeddedLog::open(store)
        .with_context(|| format!("opening the embedded store in {}", dir.display()))?;

    let mut keys: HashSet<DedupKey> = HashSet::new();
    let mut batch: Vec<Record> = Vec::new();
    let flush = |batch: &mut Vec<Record>, done: &mut Repair| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        rt.block_on(log.append(std::mem::take(batch)))
            .context("appending the repaired outputs")?;
        done.appends += 1;
        Ok(())
    };
    let result = (|| -> anyhow::Result<()> {
        for f in targets {
            let raw = reader
                .read(&f.topic, f.id - 1, 1)?
                .into_iter()
                .next()
                .filter(|r| (r.partition, r.offset) == (f.partition, f.offset));
            let (Some(r), Some(coord)) = (raw, coord_of(f)) else {
                done.not_repairable
                    .push((f.clone(), "its raw record cannot be read back".into()));
                continue;
            };
            let src = crate::stage::embedded::source(&r);
            // The stage emits one of several identical copies: so does repair.
            if let Some(k) = dedup::key(&src) {
                if !keys.insert(k) && f.kind == "missing" {
                    done.duplicates += 1;
                    continue;
                }
            }
            let have = present.remove(&coord).unwrap_or_default();
            match lacking(&stage, &src, &have) {
                Ok(records) if records.is_empty() => done.up_to_date += 1,
                Ok(records) => {
                    done.repaired += 1;
                    done.written += records.len();
                    batch.extend(records);
                    if batch.len() >= PAGE {
                        flush(&mut batch, &mut done)?;
                    }
                }
                Err(why) => done.not_repairable.push((f.clone(), why)),
            }
        }
        flush(&mut batch, &mut done)
    })();
    log.close();
    result?;
    done.not_repairable.sort_by(|(a, _), (b, _)| {
        (&a.topic, a.partition, a.offset, a.kind).cmp(&(&b.topic, b.partition, b.offset, b.kind))
    });
    Ok(done)
}

/// The outputs `src` should have and `have` lacks: what the stage makes of
/// it now, less the `source.index` values already present. An error (its
/// reason, content-free) when what is present cannot come from the same
/// mapping, or cannot be completed by appending.
fn lacking(stage: &Stage, src: &Source<'_>, have: &Present) -> Result<Vec<Record>, String> {
    let dlq = &stage.topics().dlq;
    match stage.process(src) {
        Outcome::Resources(records) => {
            let n = records.len();
            if have.dlq > 0 {
                return Err(format!(
                    "it has a {dlq} entry, but maps to {n} FHIR record(s) now"
                ));
            }
            let mut indexes = HashSet::new();
            for (i, count, id) in &have.fhir {
                if let Some(c) = count.filter(|c| *c as usize != n) {
                    return Err(format!(
                        "its outputs say source.count {c}, but it maps to {n} FHIR record(s) now: the mappings changed"
                    ));
                }
                let Some(want) = records.get(*i as usize) else {
                    return Err(format!(
                        "source.index {i} is beyond the {n} FHIR record(s) it maps to"
                    ));
                };
                if id.is_some() && want.header(sh::RESOURCE_ID) != id.as_deref() {
                    return Err(format!(
                        "its output source.index {i} has another resource id than it maps to now: the mappings changed"
                    ));
                }
                indexes.insert(*i as usize);
            }
            Ok(records
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !indexes.contains(i))
                .map(|(_, r)| r)
                .collect())
        }
        Outcome::Dead(entry) => match (have.fhir.is_empty(), have.dlq) {
            (true, 0) => Ok(vec![entry]),
            (true, _) => Ok(Vec::new()),
            (false, _) => Err(format!(
                "it has FHIR records, but no longer maps (a {dlq} entry now): the mappings changed"
            )),
        },
        Outcome::NoContent if have.fhir.is_empty() && have.dlq == 0 => Ok(Vec::new()),
        Outcome::NoContent => {
            Err("it has outputs, but maps to no FHIR content now: the mappings changed".into())
        }
    }
}

impl Repair {
    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out)?;
        writeln!(
            out,
            "repair: {} of {} raw record(s) with a missing or partial finding re-driven through the transform, {} output(s) appended in {} transaction(s)",
            self.repaired, self.targets, self.written, self.appends
        )?;
        if self.duplicates > 0 {
            writeln!(
                out,
                "repair: {} missing raw record(s) left as sender duplicates of one repaired here",
                self.duplicates
            )?;
        }
        if self.up_to_date > 0 {
            writeln!(
                out,
                "repair: {} raw record(s) had their outcome by the time they were re-driven",
                self.up_to_date
            )?;
        }
        for (f, why) in &self.not_repairable {
            let cid = if f.control_id.is_empty() {
                "-"
            } else {
                &f.control_id
            };
            writeln!(
                out,
                "not repairable: {} {}/{}/{}  control_id={}  {}",
                f.kind, f.topic, f.partition, f.offset, cid, why
            )?;
        }
        Ok(())
    }

    fn to_json(&self, before: &Report) -> Value {
        let mut gaps =
            json!({ "gap_count": before.gap_count(), "pending": before.summary.pending });
        for kind in FINDING_KINDS {
            gaps[kind] = json!(before.count(kind));
        }
        json!({
            "before": gaps,
            "targets": self.targets,
            "repaired": self.repaired,
            "outputs_written": self.written,
            "appends": self.appends,
            "duplicates_skipped": self.duplicates,
            "up_to_date": self.up_to_date,
            "not_repairable": self.not_repairable.iter().map(|(f, why)| json!({
                "finding": f.kind,
                "topic": f.topic,
                "partition": f.partition,
                "offset": f.offset,
                "control_id": f.control_id,
                "reason": why,
            })).collect::<Vec<_>>(),
        })
    }
}

impl Report {
    fn count(&self, kind: &str) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }

    /// Missing + partial + duplicated + orphan: every finding is one of them.
    fn gap_count(&self) -> usize {
        FINDING_KINDS.iter().map(|k| self.count(k)).sum()
    }

    fn print(
        &self,
        out: &mut impl Write,
        backend: &Backend,
        stage: &StageConfig,
        window: Window,
    ) -> std::io::Result<()> {
        let s = &self.summary;
        writeln!(
            out,
            "reconcile {} -> {}: {}, {}",
            stage.inputs.join(", "),
            stage.topics().all().join(", "),
            describe(backend),
            window.describe()
        )?;
        writeln!(out)?;
        writeln!(out, "{:<16}{:>10}", "outcome", "records")?;
        for (name, n) in [
            ("resources", s.resources),
            ("no_content", s.no_content),
            ("duplicate", s.duplicate),
            ("dead-lettered", s.dead_lettered),
            ("pending", s.pending),
        ] {
            writeln!(out, "{name:<16}{n:>10}")?;
        }
        writeln!(out, "{:<16}{:>10}", "finding", "count")?;
        for kind in FINDING_KINDS {
            writeln!(out, "{kind:<16}{:>10}", self.count(kind))?;
        }
        writeln!(
            out,
            "{} raw record(s) checked, {} finding(s)",
            s.raw,
            self.findings.len()
        )?;
        if !self.findings.is_empty() {
            writeln!(out)?;
        }
        for f in &self.findings {
            let cid = if f.control_id.is_empty() {
                "-"
            } else {
                &f.control_id
            };
            writeln!(
                out,
                "{:<11}{}/{}/{}  control_id={}  {}",
                f.kind, f.topic, f.partition, f.offset, cid, f.detail
            )?;
        }
        for n in &self.notes {
            writeln!(out, "note: {n}")?;
        }
        Ok(())
    }

    fn to_json(&self, backend: &Backend, stage: &StageConfig, window: Window) -> Value {
        let s = &self.summary;
        let (kind, group, progress) = match backend {
            Backend::Embedded {
                dir, group, cursor, ..
            } => (
                "embedded",
                group,
                json!({"data_dir": dir.display().to_string(), "stage_cursor": cursor}),
            ),
            Backend::Kafka {
                cfg,
                group,
                committed,
                ..
            } => (
                "kafka",
                group,
                json!({"brokers": cfg.brokers, "committed_offsets_read": committed.is_some()}),
            ),
        };
        let mut summary = json!({
            "raw": s.raw,
            "resources": s.resources,
            "no_content": s.no_content,
            "duplicate": s.duplicate,
            "dead_lettered": s.dead_lettered,
            "pending": s.pending,
        });
        for kind in FINDING_KINDS {
            summary[kind] = json!(self.count(kind));
        }
        summary["findings"] = json!(self.findings.len());
        json!({
            "backend": kind,
            "store": progress,
            "group": group,
            "raw_topics": stage.inputs,
            "output_topics": stage.topics().all(),
            "since_ms": window.since,
            "until_ms": window.until,
            "summary": summary,
            "gap_count": self.gap_count(),
            "findings": self.findings.iter().map(|f| json!({
                "finding": f.kind,
                "topic": f.topic,
                "partition": f.partition,
                "offset": f.offset,
                "control_id": f.control_id,
                "detail": f.detail,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

fn describe(backend: &Backend) -> String {
    match backend {
        Backend::Embedded {
            dir, group, cursor, ..
        } => format!(
            "embedded store {} (stage {group:?} at store id {cursor})",
            dir.display()
        ),
        Backend::Kafka { cfg, group, .. } => {
            format!("kafka at {} (consumer group {group:?})", cfg.brokers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stage() -> StageConfig {
        StageConfig::new("hl7v2.")
    }

    fn adt(control_id: &str, pv1: bool) -> Vec<u8> {
        let mut m = format!(
            "MSH|^~\\&|APP|FAC|HL7BRIDGE|INT|20261122120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\rEVN|A01|20261122120000\rPID|1||M1^^^GENHOSP^MR||DOE^JANE\r"
        );
        if pv1 {
            m.push_str("PV1|1|I|4WEST^401^A\r");
        }
        m.into_bytes()
    }

    fn raw(partition: i32, offset: i64, ts: i64, value: &[u8]) -> StoredRecord {
        let cid = String::from_utf8_lossy(value)
            .split('|')
            .nth(9)
            .unwrap_or("")
            .to_owned();
        StoredRecord {
            id: offset + 1,
            topic: "hl7v2.adt".into(),
            partition,
            offset,
            timestamp_ms: ts,
            key: None,
            headers: vec![
                (h::CONTROL_ID.into(), cid),
                (h::SENDING_FACILITY.into(), "FAC".into()),
            ],
            value: Bytes::copy_from_slice(value),
        }
    }

    fn output(topic: &str, src: (i32, i64), index: u32, count: u32, ts: i64) -> StoredRecord {
        StoredRecord {
            id: 0,
            topic: topic.into(),
            partition: src.0,
            offset: 0,
            timestamp_ms: ts,
            key: None,
            headers: vec![
                (sh::SOURCE_TOPIC.into(), "hl7v2.adt".into()),
                (sh::SOURCE_PARTITION.into(), src.0.to_string()),
                (sh::SOURCE_OFFSET.into(), src.1.to_string()),
                (sh::SOURCE_INDEX.into(), index.to_string()),
                (sh::SOURCE_COUNT.into(), count.to_string()),
            ],
            value: Bytes::new(),
        }
    }

    fn kinds(r: &Reconciler<'_>) -> Vec<&'static str> {
        r.findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn indexes_must_be_exactly_zero_to_count_each_once() {
        let mapper = Mapper::default();
        let st = stage();
        let mut r = Reconciler::new(&st, &mapper, Window::default(), false);
        // (0,0): complete; (0,1): index 1 of 3 missing; (0,2): index 0 twice.
        for (src, idx, n) in [
            ((0, 0), 0, 1),
            ((0, 1), 0, 3),
            ((0, 1), 2, 3),
            ((0, 2), 0, 1),
            ((0, 2), 0, 1),
        ] {
            r.add_output(&output("fhir.encounter", src, idx, n, 5));
        }
        for o in 0..3 {
            r.add_raw(&raw(0, o, 1, &adt(&format!("C{o}"), true)), false);
        }
        assert_eq!(r.summary.resources, 1);
        assert_eq!(kinds(&r), vec!["partial", "duplicated"]);
        assert!(
            r.findings[0]
                .detail
                .contains("1 of 3 missing (source.index 1)"),
            "{:?}",
            r.findings[0]
        );
        assert!(!r.findings.iter().any(|f| f.detail.contains("DOE")));
    }

    #[test]
    fn a_duplicate_needs_an_earlier_copy_with_its_outcome() {
        let mapper = Mapper::default();
        let st = stage();
        let m = adt("R1", true);
        // Embedded order: the copy with no outputs comes first, so it is missing.
        let mut r = Reconciler::new(&st, &mapper, Window::default(), false);
        r.add_output(&output("fhir.encounter", (0, 1), 0, 1, 5));
        r.add_raw(&raw(0, 0, 1, &m), false);
        r.add_raw(&raw(0, 1, 1, &m), false);
        let rep = r.finish(&Backend::none(), &[]).unwrap();
        assert_eq!(rep.findings.len(), 1);
        assert_eq!(
            (rep.findings[0].kind, rep.findings[0].offset),
            ("missing", 0)
        );

        // Kafka: the first copy may be on another partition, read later.
        let mut r = Reconciler::new(&st, &mapper, Window::default(), true);
        r.add_output(&output("fhir.encounter", (1, 0), 0, 1, 5));
        r.add_raw(&raw(0, 0, 1, &m), false);
        r.add_raw(&raw(1, 0, 1, &m), false);
        let rep = r.finish(&Backend::none(), &[]).unwrap();
        assert!(rep.findings.is_empty(), "{:?}", rep.findings);
        assert_eq!((rep.summary.duplicate, rep.summary.resources), (1, 1));
    }

    #[test]
    fn no_content_pending_and_dead_letters_are_outcomes() {
        let mapper = Mapper::default();
        let st = stage();
        let mut r = Reconciler::new(&st, &mapper, Window::default(), false);
        r.add_output(&output("fhir.dlq", (0, 2), 0, 1, 5));
        r.add_raw(&raw(0, 0, 1, &adt("N1", false)), false);
        r.add_raw(&raw(0, 1, 1, &adt("P1", true)), true);
        r.add_raw(
            &raw(
                0,
                2,
                1,
                b"MSH|^~\\&|APP|FAC|X|Y|2026||ORU^R01|D1|P|2.5.1\rOBX|1|ST|||v||||||F\r",
            ),
            false,
        );
        let rep = r.finish(&Backend::none(), &[]).unwrap();
        assert!(rep.findings.is_empty(), "{:?}", rep.findings);
        let s = rep.summary;
        assert_eq!(
            (s.raw, s.no_content, s.pending, s.dead_lettered),
            (3, 1, 1, 1)
        );
    }

    #[test]
    fn orphans_count_only_inside_the_window() {
        let mapper = Mapper::default();
        let st = stage();
        let window = Window {
            since: Some(100),
            until: None,
        };
        let mut r = Reconciler::new(&st, &mapper, window, false);
        // Offset 1 is before the window, 3 and 5 in it; 0, 2, 4 and 6 do not exist.
        for o in [0, 1, 2, 3, 4] {
            r.add_output(&output("fhir.encounter", (0, o), 0, 1, 200));
        }
        r.add_raw(&raw(0, 1, 50, &adt("W1", true)), false);
        r.add_raw(&raw(0, 3, 150, &adt("W3", true)), false);
        r.add_raw(&raw(0, 5, 160, &adt("W5", true)), false);
        assert_eq!(r.summary.raw, 2);
        assert_eq!(r.orphan_in_window((0, 0, 0)), Some(false));
        assert_eq!(
            r.orphan_in_window((0, 0, 2)),
            None,
            "between the window and before it"
        );
        assert_eq!(r.orphan_in_window((0, 0, 4)), Some(true));
        assert_eq!(r.orphan_in_window((0, 0, 6)), Some(true), "no --until");
        assert_eq!(
            r.orphan_in_window((0, 3, 0)),
            None,
            "a partition with no raw records"
        );
    }

    #[test]
    fn the_metrics_file_has_one_gap_gauge_per_finding() {
        let mapper = Mapper::default();
        let st = stage();
        let mut r = Reconciler::new(&st, &mapper, Window::default(), false);
        // (0,0): no outputs, missing; (0,1): 1 of 2, partial; (0,2): pending.
        r.add_output(&output("fhir.encounter", (0, 1), 0, 2, 5));
        r.add_raw(&raw(0, 0, 1, &adt("G1", true)), false);
        r.add_raw(&raw(0, 1, 1, &adt("G2", true)), false);
        r.add_raw(&raw(0, 2, 1, &adt("G3", true)), true);
        let rep = r.finish(&Backend::none(), &[]).unwrap();
        assert_eq!(rep.gap_count(), 2);
        let at = std::time::UNIX_EPOCH + Duration::from_millis(1_790_000_000_250);
        assert_eq!(
            metrics_text(&rep, at),
            "# HELP reconciliation_gap_count Raw records without their recorded outcome, by finding.
# TYPE reconciliation_gap_count gauge
reconciliation_gap_count{finding=\"missing\"} 1
reconciliation_gap_count{finding=\"partial\"} 1
reconciliation_gap_count{finding=\"duplicated\"} 0
reconciliation_gap_count{finding=\"orphan\"} 0
# HELP reconciliation_pending_records Raw records the stage has not reached yet.
# TYPE reconciliation_pending_records gauge
reconciliation_pending_records 1
# HELP reconciliation_last_run_timestamp_seconds When reconcile last finished a check.
# TYPE reconciliation_last_run_timestamp_seconds gauge
reconciliation_last_run_timestamp_seconds 1790000000.250
"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reconcile.prom");
        std::fs::write(&path, "old").unwrap();
        write_metrics(&path, &rep).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("{finding=\"partial\"} 1\n"), "{text}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("reconcile.prom")],
            "no temporary file left"
        );
    }

    impl Backend {
        /// A backend with nothing in it, for tests that never walk.
        fn none() -> Self {
            Backend::Kafka {
                cfg: Default::default(),
                group: String::new(),
                existing: HashSet::new(),
                committed: None,
            }
        }
    }
}
