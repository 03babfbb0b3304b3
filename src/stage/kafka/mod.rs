//! The stage on Kafka: a consumer group over the raw topics, exactly-once
//! by **output-offset recovery**, without Kafka transactions (Tansu 0.6 has
//! no EndTxn, nor do some managed Kafka-compatible services).
//!
//! How it holds:
//! - Input partition p of every raw topic writes only to output partition p
//!   of every FHIR topic (co-partitioned; checked at start), and the range
//!   assignor gives partition p of every input to one member.
//! - The producer is idempotent with `enable.gapless.guarantee`, and never
//!   times messages out, so what lands in an output partition is always a
//!   prefix of what this process sent to it.
//! - Every output carries `source.topic/partition/offset/index` and
//!   `source.covered`: for each input topic, the offset below which every
//!   record's outputs to *this output topic* were already sent.
//! - On each assignment the last record of each output partition p is read.
//!   An output (input record R = (T, off), index i) for output topic o is
//!   already written iff `off < covered_o[T]`, or R is that last record's
//!   source and `i <= its index`. Those are skipped; everything else is sent.
//!   Such a partly confirmed record rides along in `source.partial` on every
//!   later output until it is processed again, so appending other records
//!   after it does not erase what recovery knew.
//! - Consumer offsets are stored (as the next offset to read) only once all
//!   outputs of a record and of every earlier one are delivered; they only
//!   shorten the replay.
//! - On revocation the producer is flushed before the partitions go, so the
//!   next owner reads complete tails.
//!
//! - The sender-dedup window lives in a changelog topic co-partitioned with
//!   the inputs, restored on assignment ([`changelog`]); a member keeps no
//!   correctness state on its own disk.
//!
//! - [`setup`]: topics, co-partitioning, the producer and consumers;
//! - [`session`]: the consume-map-produce loop and the dedup window;
//! - [`recovery`]: what each output partition already holds;
//! - [`changelog`]: the dedup window's topic and its restore.

pub mod changelog;
mod recovery;
mod session;
mod setup;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::dedup::{self, DedupKey, DedupStore, Seen};
use super::{Outcome, Source, Stage, StageConfig, StageError};
use crate::config::Config;
use crate::headers as h;
use crate::internal_events as ev;
use crate::log::kafka::{self as kafka_log, KafkaConfig};
use crate::log::LogError;
use crate::record::Record;

/// Input records whose outputs may be in flight at once.
const MAX_PENDING: usize = 2048;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// After end-of-partition, how long recovery keeps reading for later records.
const TAIL_QUIET: Duration = Duration::from_millis(500);
/// How long a revocation waits for in-flight outputs.
const REVOKE_FLUSH: Duration = Duration::from_secs(60);

pub struct KafkaStage {
    stage: Arc<Stage>,
    kafka: KafkaConfig,
    cfg: StageConfig,
    at_least_once: bool,
    partitions: u32,
    replication: i32,
    data_dir: std::path::PathBuf,
    /// The dedup window's changelog topic.
    changelog: String,
}

/// Partition counts, as found (and completed) at start.
#[derive(Debug, Clone, Copy)]
struct Layout {
    co_partitioned: bool,
}

impl KafkaStage {
    pub fn new(stage: Arc<Stage>, cfg: &Config) -> Self {
        Self {
            stage,
            kafka: cfg.kafka.clone(),
            cfg: StageConfig::from_config(cfg),
            at_least_once: cfg.transform.at_least_once,
            partitions: cfg.partitions,
            replication: cfg.kafka.replication_factor(),
            data_dir: cfg.data_dir.clone(),
            changelog: crate::topics::dedup_changelog(&cfg.transform.group),
        }
    }

    /// Runs until `shutdown`. A failed session (broker error, fatal producer
    /// error) is torn down and started again from recovery.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StageError> {
        let layout = self.layout().await?;
        while !shutdown.is_cancelled() {
            match self.session(&shutdown, layout).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "transform session failed; restarting with recovery");
                    // Long enough for requests a dropped producer had in
                    // flight to settle on the broker before tails are read.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        }
        Ok(())
    }
}

fn kafka_err(e: rdkafka::error::KafkaError) -> StageError {
    LogError::Kafka(e.to_string()).into()
}

/// Sees rebalances on the consumer's own polling (inside `recv`), so they
/// are ordered with the processing loop.
struct StageContext {
    producer: FutureProducer,
    /// Partitions revoked since the loop last looked: their recovery state is stale.
    revoked: Mutex<Vec<i32>>,
    flush_failed: AtomicBool,
}

impl StageContext {
    fn take_revoked(&self) -> Vec<i32> {
        self.revoked
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl ClientContext for StageContext {}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // The next owner recovers from the output tails: ours must be complete.
            if let Err(e) = self.producer.flush(REVOKE_FLUSH) {
                tracing::error!(error = %e, "outputs still in flight at revocation");
                self.flush_failed.store(true, Ordering::SeqCst);
            }
            if let Ok(mut r) = self.revoked.lock() {
                r.extend(tpl.elements().iter().map(|e| e.partition()));
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// The committed offsets of the transform group on the raw topics, read
/// without joining the group and never committing.
pub fn committed_offsets(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[crate::record::TopicSummary],
    inputs: &[String],
) -> Result<HashMap<(String, i32), i64>, rdkafka::error::KafkaError> {
    let mut c = kafka.base();
    c.set("group.id", group);
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    let consumer: rdkafka::consumer::BaseConsumer = c.create()?;
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
