//! The stage on the embedded store: read raw records after the cursor, and
//! commit their outputs, their dedup entries and the new cursor in one SQLite
//! transaction. A crash at any point leaves either all of a batch or none of
//! it, so the outputs are exactly once with no recovery logic at all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::dedup::{self, DedupKey, Seen};
use super::progress::{self, StageCommit};
use super::{now_ms, Source, Stage, StageConfig, StageError};
use crate::internal_events as ev;
use crate::log::embedded::{EmbeddedLog, EmbeddedReader};
use crate::record::Record;
use crate::record::{StoredRecord, WithHeaders};
use low_priority::LowPriorityThread;

mod low_priority;

/// Dedup entries are pruned at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The lag gauge is refreshed at most this often (it counts rows).
const LAG_EVERY: Duration = Duration::from_secs(5);

pub struct EmbeddedStage {
    pub stage: Arc<Stage>,
    pub cfg: StageConfig,
    pub log: Arc<EmbeddedLog>,
    pub data_dir: PathBuf,
    /// Input records per transaction.
    pub batch: usize,
    /// How often to look for new input when idle.
    pub poll: Duration,
    /// While fewer input records than this wait, and ingest committed
    /// during the last batch, the stage yields to ingest (see [`yield_to_ingest`]);
    /// 0 never yields.
    pub max_lag: u64,
}

/// The share of the time the stage takes while it yields: one batch's work,
/// then nine times as long idle.
const YIELD_SHARE: u32 = 10;
/// Input records per batch while yielding.
const YIELD_BATCH: usize = 32;
/// The longest single pause while yielding.
const MAX_YIELD: Duration = Duration::from_millis(200);
/// The stage yields only while the last input it committed arrived less
/// than this long ago. A burst of ACKs still gets the core, but under a
/// sustained load the FHIR stays about this far behind its input, not
/// `max_lag` records behind (at 1,000 msg/s on one core that was seconds).
const MAX_YIELD_DELAY: Duration = Duration::from_secs(1);

/// The stage's outputs can always be derived again from the durable raw
/// log, but an ACK waits for ingest. So while ingest is busy (it committed
/// during the last batch), the stage is less than `max_lag` records behind
/// and its last input arrived less than [`MAX_YIELD_DELAY`] ago, the stage
/// pauses for nine times as long as its batch took, leaving ingest ~90 % of
/// a core it shares with it. Otherwise it runs flat out, so the lag stays
/// bounded (`hl7bridge_transform_lag_records`).
fn yield_to_ingest(
    batch_took: Duration,
    ingest_busy: bool,
    lag: u64,
    max_lag: u64,
    behind: Duration,
) -> Option<Duration> {
    (ingest_busy && max_lag > 0 && lag < max_lag && behind < MAX_YIELD_DELAY)
        .then(|| (batch_took * (YIELD_SHARE - 1)).min(MAX_YIELD))
}

/// One transaction's worth of work, built off the async runtime.
struct Batch {
    records: Vec<Record>,
    commit: StageCommit,
    inputs: usize,
    /// `bridge.received_at` of each input that produced resources.
    received_at: Vec<String>,
    /// When the batch's last input was stored (its record timestamp).
    last_input_ms: i64,
}

impl EmbeddedStage {
    /// Runs until `shutdown`; a batch in progress is committed first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StageError> {
        let dir = self.data_dir.clone();
        let mut reader = tokio::task::spawn_blocking(move || EmbeddedReader::open(&dir))
            .await
            .map_err(|e| StageError::Setup(e.to_string()))??;
        // The stage's own tables, created through the writer (readers cannot).
        self.log
            .append_with(Vec::new(), Box::new(progress::create_tables))
            .await?;
        let mut cursor = progress::cursor(reader.connection(), &self.cfg.group)?;
        let low_priority = LowPriorityThread::spawn("hl7bridge-stage-low")?;
        let appended = self.log.appended();
        let mut last_prune = std::time::Instant::now()
            .checked_sub(PRUNE_EVERY)
            .unwrap_or_else(std::time::Instant::now);
        let mut last_lag = std::time::Instant::now()
            .checked_sub(LAG_EVERY)
            .unwrap_or_else(std::time::Instant::now);
        tracing::info!(group = %self.cfg.group, cursor, "transform stage started on the embedded store");
        let mut lag = 0u64;
        let mut yielding = false;
        // (cursor, id): at that cursor, no input record exists up to that
        // store id. Outputs are written after their inputs, so once the
        // stage has caught up, everything after its cursor is its own
        // output; without this, every idle poll would scan all of it again
        // (the records table has no topic index, to keep ingest commits
        // cheap), a core's worth of reads after a large backlog. Valid only
        // at that cursor: a commit or a reload starts from the cursor again.
        let mut idle_at: Option<(i64, i64)> = None;
        while !shutdown.is_cancelled() {
            let started = std::time::Instant::now();
            let ingest_before = self.log.ingest_commits();
            let prune = last_prune.elapsed() >= PRUNE_EVERY;
            let read_from = match idle_at {
                Some((at, high)) if at == cursor => high.max(cursor),
                _ => cursor,
            };
            if last_lag.elapsed() >= LAG_EVERY {
                last_lag = std::time::Instant::now();
                if let Ok(n) = reader.count_after(&self.cfg.inputs, read_from) {
                    ev::TransformLag(n).emit();
                    lag = n;
                }
            }
            let (r, built, high) = {
                let stage = self.stage.clone();
                let cfg = self.cfg.clone();
                // While yielding, small batches: each commit holds the one
                // store writer, and ingest commits queue behind it.
                let batch = if yielding {
                    YIELD_BATCH.min(self.batch)
                } else {
                    self.batch
                };
                let job = move || {
                    // Read before the inputs: any record committed after it
                    // has a higher id, so an empty read below proves there
                    // is no input up to it.
                    let high = reader.max_id();
                    let built = build(&reader, &stage, &cfg, cursor, read_from, batch, prune);
                    (reader, built, high)
                };
                // While yielding, mapped at idle CPU priority, so a waking
                // ingest task never waits for the batch's time slice.
                if yielding {
                    low_priority.run(job).await?
                } else {
                    tokio::task::spawn_blocking(job)
                        .await
                        .map_err(|e| StageError::Setup(e.to_string()))?
                }
            };
            reader = r;
            let batch = match built {
                Ok(Some(b)) => b,
                Ok(None) => {
                    if let Ok(high) = high {
                        idle_at = Some((cursor, high.max(read_from)));
                    }
                    // Woken by an in-process append; the poll catches appends
                    // from another process (`transform --data-dir` beside `serve`).
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = appended.notified() => continue,
                        _ = tokio::time::sleep(self.poll) => continue,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "transform stage cannot read the store; retrying");
                    backoff(&shutdown).await;
                    continue;
                }
            };
            let last_id = batch.commit.last_id;
            let outcomes = batch.commit.outcomes.clone();
            match self
                .log
                .append_with(batch.records, batch.commit.into_work())
                .await
            {
                Ok(positions) => {
                    for received_at in &batch.received_at {
                        ev::EndToEnd { received_at }.emit();
                    }
                    for (i, (outcome, n)) in outcomes.iter().enumerate() {
                        let outputs = if i == 0 { positions.len() as u64 } else { 0 };
                        ev::TransformCommitted {
                            outcome,
                            records: *n,
                            outputs,
                        }
                        .emit();
                    }
                    tracing::debug!(
                        inputs = batch.inputs,
                        outputs = positions.len(),
                        last_id,
                        "stage batch committed"
                    );
                    cursor = last_id;
                    if prune {
                        last_prune = std::time::Instant::now();
                    }
                    lag = lag.saturating_sub(batch.inputs as u64);
                    let busy = self.log.ingest_commits() != ingest_before;
                    let behind = Duration::from_millis(
                        now_ms().saturating_sub(batch.last_input_ms).max(0) as u64,
                    );
                    let pause = yield_to_ingest(started.elapsed(), busy, lag, self.max_lag, behind);
                    // Small batches at idle priority whenever ingest is busy
                    // and the lag is under its bound, even when the pause is
                    // off (the stage is a second behind): then it uses the
                    // core's spare time without holding the writer long.
                    yielding = busy && self.max_lag > 0 && lag < self.max_lag;
                    if let Some(pause) = pause {
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "transform stage commit failed; retrying from the stored cursor");
                    backoff(&shutdown).await;
                    cursor = progress::cursor(reader.connection(), &self.cfg.group)?;
                }
            }
        }
        tracing::info!(group = %self.cfg.group, cursor, "transform stage stopped");
        Ok(())
    }
}

async fn backoff(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

/// Reads up to `limit` input records after store id `read_from` (the
/// cursor, or past the stage's own outputs when it knows no input is
/// there) and maps them; the commit moves the cursor from `cursor`. `None`
/// when there is nothing new.
fn build(
    reader: &EmbeddedReader,
    stage: &Stage,
    cfg: &StageConfig,
    cursor: i64,
    read_from: i64,
    limit: usize,
    prune: bool,
) -> Result<Option<Batch>, StageError> {
    let inputs = reader.read_topics(&cfg.inputs, read_from, limit.max(1))?;
    let Some(last) = inputs.last() else {
        return Ok(None);
    };
    let now = now_ms();
    let since = now - cfg.dedup_window.as_millis() as i64;
    let mut commit = StageCommit {
        group: cfg.group.clone(),
        prev_id: cursor,
        last_id: last.id,
        prune_before_ms: prune.then_some(since),
        ..Default::default()
    };
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    let mut in_batch: HashMap<DedupKey, String> = HashMap::new();
    let mut records = Vec::new();
    let mut received_at = Vec::new();
    for input in &inputs {
        let src = source(input);
        let key = dedup::key(&src);
        if let Some(k) = &key {
            let first = match in_batch.get(k) {
                Some(s) => Some(s.clone()),
                None => dedup::first_seen(reader.connection(), k, since)?,
            };
            if first.is_some_and(|f| f != src.coordinates()) {
                ev::DuplicateSkipped {
                    topic: src.topic,
                    partition: src.partition,
                    offset: src.offset,
                    control_id: &k.control_id,
                }
                .emit();
                *counts.entry("duplicate").or_default() += 1;
                continue;
            }
        }
        let outcome = stage.process(&src);
        *counts.entry(outcome.name()).or_default() += 1;
        if matches!(
            outcome,
            super::Outcome::Resources(_) | super::Outcome::Partial(_)
        ) {
            if let Some(at) = src.header(crate::headers::RECEIVED_AT) {
                received_at.push(at.to_owned());
            }
        }
        records.extend(outcome.into_records());
        if let Some(k) = key {
            in_batch.insert(k.clone(), src.coordinates());
            commit.seen.push(Seen {
                key: k,
                source: src.coordinates(),
                seen_ms: now,
            });
        }
    }
    commit.outcomes = counts.into_iter().collect();
    Ok(Some(Batch {
        records,
        commit,
        inputs: inputs.len(),
        received_at,
        last_input_ms: last.timestamp_ms,
    }))
}

/// A stored record as the stage sees it.
pub fn source(r: &StoredRecord) -> Source<'_> {
    Source {
        topic: &r.topic,
        partition: r.partition,
        offset: r.offset,
        key: r.key.as_deref(),
        headers: &r.headers,
        value: &r.value,
    }
}

#[cfg(test)]
mod yield_tests {
    use super::*;

    #[test]
    fn the_stage_yields_to_busy_ingest_only_while_its_lag_is_below_the_bound() {
        let took = Duration::from_millis(4);
        let fresh = Duration::from_millis(100);
        // Ingest busy, little lag: nine times the batch's time idle (10 % share).
        assert_eq!(
            yield_to_ingest(took, true, 100, 50_000, fresh),
            Some(Duration::from_millis(36))
        );
        // Ingest idle: no pause, the stage catches up at full speed.
        assert_eq!(yield_to_ingest(took, false, 100, 50_000, fresh), None);
        // Too far behind: flat out, so the lag stays bounded.
        assert_eq!(yield_to_ingest(took, true, 50_000, 50_000, fresh), None);
        // Turned off.
        assert_eq!(yield_to_ingest(took, true, 0, 0, fresh), None);
        // A slow batch never pauses the stage for long.
        assert_eq!(
            yield_to_ingest(Duration::from_secs(1), true, 1, 50_000, fresh),
            Some(MAX_YIELD)
        );
    }

    #[test]
    fn under_sustained_load_the_stage_stops_yielding_once_its_input_is_a_second_old() {
        let took = Duration::from_millis(4);
        assert!(yield_to_ingest(took, true, 100, 50_000, Duration::from_millis(999)).is_some());
        assert_eq!(
            yield_to_ingest(took, true, 100, 50_000, MAX_YIELD_DELAY),
            None
        );
    }
}
