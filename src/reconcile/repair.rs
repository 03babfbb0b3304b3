//! `--repair`: re-drive missing and partial raw records through the stage
//! and append the outputs they lack (embedded store only).

use std::collections::{HashMap, HashSet};
use std::io::Write;

use anyhow::Context;
use serde_json::{json, Value};

use super::check::FINDING_KINDS;
use super::check::{Coord, Finding, Report};
use super::{Store, KAFKA_REPAIR, PAGE};
use crate::config::Config;
use crate::headers as h;
use crate::log::embedded::{EmbeddedConfig, EmbeddedLog, EmbeddedReader};
use crate::log::Log;
use crate::record::Record;
use crate::record::WithHeaders;
use crate::stage::dedup::{self, DedupKey};
use crate::stage::{Outcome, Source, Stage, StageConfig};

/// What `--repair` did.
#[derive(Debug, Default)]
pub(crate) struct Repair {
    /// Raw records with a `missing` or `partial` finding.
    pub(crate) targets: usize,
    /// Raw records that got the outputs they lacked.
    pub(crate) repaired: usize,
    /// Outputs appended.
    pub(crate) written: usize,
    /// Appends, each one SQLite transaction.
    pub(crate) appends: usize,
    /// Missing raw records left as sender duplicates of one repaired here.
    pub(crate) duplicates: usize,
    /// Raw records that had their outcome by the time they were re-driven.
    pub(crate) up_to_date: usize,
    /// Findings left as they are, and why (content-free).
    pub(crate) not_repairable: Vec<(Finding, String)>,
}

/// The outputs already on the store for one raw record being repaired.
#[derive(Debug, Default)]
pub(crate) struct Present {
    /// `(source.index, source.count, fhir.id)` of each FHIR record.
    pub(crate) fhir: Vec<(u32, Option<u32>, Option<String>)>,
    pub(crate) dlq: u32,
}

/// Re-drives the `missing` and `partial` raw records of `report` through the
/// stage and appends the outputs they lack, one append per page of them.
pub(crate) fn repair(
    cfg: &Config,
    stage_cfg: &StageConfig,
    store: &Store,
    report: &Report,
) -> anyhow::Result<Repair> {
    if store.is_kafka() {
        anyhow::bail!(KAFKA_REPAIR);
    }
    let dir = &cfg.data_dir;
    let reader = EmbeddedReader::open(dir)
        .with_context(|| format!("opening the embedded store in {}", dir.display()))?;
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
    store.walk(&outputs, false, &mut |r| {
        let Some(ti) = r.header(h::SOURCE_TOPIC).and_then(index_of) else {
            return Ok(());
        };
        let num = |name| r.header(name).and_then(|v| v.parse::<i64>().ok());
        let (Some(p), Some(o)) = (num(h::SOURCE_PARTITION), num(h::SOURCE_OFFSET)) else {
            return Ok(());
        };
        let Some(e) = present.get_mut(&(ti, p as i32, o)) else {
            return Ok(());
        };
        // A segment's dead letter (partial outcome) is indexed like a FHIR record.
        if r.topic == topics.dlq && r.header(h::ERROR_SEGMENT).is_none() {
            e.dlq += 1;
        } else if let Some(i) = num(h::SOURCE_INDEX) {
            e.fhir.push((
                i as u32,
                num(h::SOURCE_COUNT).map(|c| c as u32),
                r.header(h::RESOURCE_ID).map(str::to_owned),
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
        let registry = crate::app::registry::open(&scfg, crate::app::registry::Missing::Create)?;
        crate::app::stage::build(&scfg, &registry).await
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
pub(crate) fn lacking(
    stage: &Stage,
    src: &Source<'_>,
    have: &Present,
) -> Result<Vec<Record>, String> {
    let dlq = &stage.topics().dlq;
    match stage.process(src) {
        Outcome::Resources(records) | Outcome::Partial(records) => {
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
                if id.is_some() && want.header(h::RESOURCE_ID) != id.as_deref() {
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
    pub(crate) fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
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
            let cid = f.shown_control_id();
            writeln!(
                out,
                "not repairable: {} {}/{}/{}  control_id={}  {}",
                f.kind, f.topic, f.partition, f.offset, cid, why
            )?;
        }
        Ok(())
    }

    pub(crate) fn to_json(&self, before: &Report) -> Value {
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
