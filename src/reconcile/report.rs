//! The findings as text, as JSON, and as Prometheus gauges.

use std::io::Write;

use anyhow::Context;
use serde_json::{json, Value};

use super::check::{Report, FINDING_KINDS};
use super::{Store, Window};
use crate::app::backend::StageProgress;
use crate::stage::StageConfig;

/// Writes the gap counts of `report` to `path` in the Prometheus
/// textfile-collector format: to a temporary file beside it first, then
/// renamed over it, so the collector never reads half a file.
pub(crate) fn write_metrics(path: &std::path::Path, report: &Report) -> anyhow::Result<()> {
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

pub(crate) fn metrics_text(report: &Report, now: std::time::SystemTime) -> String {
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

impl Report {
    pub(crate) fn count(&self, kind: &str) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }

    /// Missing + partial + duplicated + orphan: every finding is one of them.
    pub(crate) fn gap_count(&self) -> usize {
        FINDING_KINDS.iter().map(|k| self.count(k)).sum()
    }

    pub(crate) fn print(
        &self,
        out: &mut impl Write,
        store: &Store,
        stage: &StageConfig,
        window: Window,
    ) -> std::io::Result<()> {
        let s = &self.summary;
        writeln!(
            out,
            "reconcile {} -> {}: {}, {}",
            stage.inputs.join(", "),
            stage.topics().all().join(", "),
            describe(store),
            window.describe()
        )?;
        writeln!(out)?;
        writeln!(out, "{:<16}{:>10}", "outcome", "records")?;
        for (name, n) in [
            ("resources", s.resources),
            ("no_content", s.no_content),
            ("duplicate", s.duplicate),
            ("dead-lettered", s.dead_lettered),
            ("partly mapped", s.partly_mapped),
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
            let cid = f.shown_control_id();
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

    pub(crate) fn to_json(&self, store: &Store, stage: &StageConfig, window: Window) -> Value {
        let s = &self.summary;
        let group = &store.cfg.transform.group;
        let (kind, progress) = match &store.progress {
            StageProgress::Cursor(cursor) => (
                "embedded",
                json!({"data_dir": store.cfg.data_dir.display().to_string(), "stage_cursor": cursor}),
            ),
            StageProgress::Committed(committed) => (
                "kafka",
                json!({"brokers": store.cfg.kafka.brokers, "committed_offsets_read": committed.is_some()}),
            ),
        };
        let mut summary = json!({
            "raw": s.raw,
            "resources": s.resources,
            "no_content": s.no_content,
            "duplicate": s.duplicate,
            "dead_lettered": s.dead_lettered,
            "partly_mapped": s.partly_mapped,
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

pub(crate) fn describe(store: &Store) -> String {
    let group = &store.cfg.transform.group;
    match &store.progress {
        StageProgress::Cursor(cursor) => format!(
            "embedded store {} (stage {group:?} at store id {cursor})",
            store.cfg.data_dir.display()
        ),
        StageProgress::Committed(_) => {
            format!(
                "kafka at {} (consumer group {group:?})",
                store.cfg.kafka.brokers
            )
        }
    }
}
