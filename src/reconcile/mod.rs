//! Reconciliation: the safety net after the real-time path (`hl7bridge reconcile`).
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
//!
//! - [`check`]: one pass over the log, and what it finds;
//! - [`repair`]: `--repair` on the embedded store;
//! - [`report`]: printing the findings, as text, JSON or Prometheus gauges.

mod check;
mod repair;
mod report;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::app::backend::StageProgress;
use crate::config::Config;
use crate::log::LogReader;
use crate::record::StoredRecord;
use crate::stage::StageConfig;
use crate::transform::Mapper;
use check::{Reconciler, Report};
use repair::repair;
use report::write_metrics;

/// Outputs are written after their input; with `--since`, outputs older than
/// the window start by more than this (clock skew between the bridge and a
/// Kafka stage host) cannot belong to a raw record in the window.
pub(crate) const CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;

/// Records per append when repairing.
pub(crate) const PAGE: usize = 500;
/// Missing indexes listed in one finding.
pub(crate) const LIST_AT_MOST: usize = 8;

/// Why `--repair` is refused on Kafka.
pub(crate) const KAFKA_REPAIR: &str = "--repair works on the embedded store only. On Kafka the \
transform's exactly-once recovery reads the last record of each output partition and \
relies on its source.covered header, so no producer other than the transform group may \
append to the output topics. Gaps there mean retention removed outputs or the stage ran \
with --at-least-once: stop the transform group and fix that cause. Run reconcile without \
--repair to list the gaps.";

/// What to check and how to answer.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only raw records written at or after this (milliseconds since the epoch).
    pub since: Option<i64>,
    /// Only raw records written at or before this.
    pub until: Option<i64>,
    /// Print the summary and the findings as JSON.
    pub json: bool,
    /// Also write the gap counts to this file (Prometheus textfile format).
    pub metrics_file: Option<PathBuf>,
    /// Re-drive missing and partial raw records (embedded store only).
    pub repair: bool,
}

/// Checks (and with `repair`, repairs) and prints the report. True when
/// nothing is left to find.
pub fn run(cfg: &Config, args: &Options) -> anyhow::Result<bool> {
    let cfg = cfg.clone();
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
    let mapper = crate::app::stage::mapper(&cfg)?;
    let stage = StageConfig::from_config(&cfg);
    let (store, report) = check(&cfg, &stage, &mapper, window)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (store, report, repair) = if args.repair {
        if !args.json {
            report.print(&mut out, &store, &stage, window)?;
            out.flush()?;
        }
        let repair = repair(&cfg, &stage, &store, &report)?;
        if !args.json {
            repair.print(&mut out)?;
        }
        let before = report;
        let (store, report) = if repair.targets > 0 {
            if !args.json {
                writeln!(out, "\nafter repair:")?;
            }
            check(&cfg, &stage, &mapper, window)?
        } else {
            (store, before.clone())
        };
        (store, report, Some((repair, before)))
    } else {
        (store, report, None)
    };
    if args.json {
        let mut doc = report.to_json(&store, &stage, window);
        if let Some((repair, before)) = &repair {
            doc["repair"] = repair.to_json(before);
        }
        writeln!(out, "{doc}")?;
    } else if repair.as_ref().is_none_or(|(r, _)| r.targets > 0) {
        report.print(&mut out, &store, &stage, window)?;
    }
    out.flush()?;
    if let Some(path) = &args.metrics_file {
        write_metrics(path, &report)
            .with_context(|| format!("writing the metrics file {}", path.display()))?;
    }
    Ok(report.findings.is_empty())
}

/// One pass over the store: every raw record in the window against its outputs.
pub(crate) fn check(
    cfg: &Config,
    stage: &StageConfig,
    mapper: &Mapper,
    window: Window,
) -> anyhow::Result<(Store, Report)> {
    let (store, mut notes) = Store::open(cfg, &stage.inputs)?;
    let mut rec = Reconciler::new(stage, mapper, window, store.is_kafka());
    rec.notes.append(&mut notes);
    let outputs: Vec<String> = stage.topics().all().iter().map(|s| s.to_string()).collect();
    store.walk(&outputs, false, &mut |r| {
        rec.add_output(r);
        Ok(())
    })?;
    store.walk(&stage.inputs, true, &mut |r| {
        rec.add_raw(r, store.pending(r));
        Ok(())
    })?;
    let report = rec.finish(&store, &outputs)?;
    Ok((store, report))
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
}

impl Window {
    pub(crate) fn contains(&self, ts: i64) -> bool {
        self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts <= u)
    }

    pub(crate) fn describe(&self) -> String {
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

/// The log being checked, and how far the stage had got when the check began.
pub(crate) struct Store {
    reader: Box<dyn LogReader>,
    pub(crate) progress: StageProgress,
    pub(crate) cfg: Config,
}

impl Store {
    /// Reads the stage's progress first: whatever the stage commits after
    /// that is then either visible or counted pending.
    fn open(cfg: &Config, inputs: &[String]) -> anyhow::Result<(Self, Vec<String>)> {
        let (progress, notes) = StageProgress::read(cfg, inputs)?;
        let reader = crate::app::backend::reader(cfg)?;
        Ok((
            Self {
                reader,
                progress,
                cfg: cfg.clone(),
            },
            notes,
        ))
    }

    pub(crate) fn is_kafka(&self) -> bool {
        self.progress.is_kafka()
    }

    /// Calls `each` for every record of `topics` (see [`LogReader::scan`]).
    /// Without `values`, record values may be left empty.
    pub(crate) fn walk(
        &self,
        topics: &[String],
        values: bool,
        each: &mut dyn FnMut(&StoredRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut failed = None;
        self.reader.scan(topics, values, &mut |r| match each(r) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// True if the stage has not reached this raw record yet.
    pub(crate) fn pending(&self, r: &StoredRecord) -> bool {
        self.progress.pending(r)
    }
}
