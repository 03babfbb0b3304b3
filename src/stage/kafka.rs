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

use super::dedup::{self, DedupKey, DedupStore};
use super::{headers as sh, Outcome, Source, Stage, StageConfig, StageError};
use crate::config::Config;
use crate::internal_events as ev;
use crate::log::kafka::{self as kafka_log, KafkaConfig};
use crate::log::{LogError, Record};

/// Header: `topic:offset,...`, the covered vector described above.
pub const COVERED: &str = "source.covered";
/// Header: `topic:offset:index,...`, records whose outputs to this topic a
/// recovered tail showed written only through `index` (see [`OutputState`]).
pub const PARTIAL: &str = "source.partial";

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

    /// Creates missing topics and checks that outputs are co-partitioned with inputs.
    async fn layout(&self) -> Result<Layout, StageError> {
        let kafka = self.kafka.clone();
        let existing = tokio::task::spawn_blocking(move || kafka_log::list_topics(&kafka))
            .await
            .map_err(|e| StageError::Setup(e.to_string()))??;
        let count = |name: &str| {
            existing
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.partitions)
        };
        let input_counts: HashSet<u32> = self.cfg.inputs.iter().filter_map(|t| count(t)).collect();
        let n = input_counts
            .iter()
            .copied()
            .max()
            .unwrap_or(self.partitions);
        let topics = self.cfg.topics();
        let missing: Vec<String> = self
            .cfg
            .inputs
            .iter()
            .map(String::as_str)
            .chain(topics.all())
            .filter(|t| count(t).is_none())
            .map(str::to_owned)
            .collect();
        if !missing.is_empty() {
            for (topic, outcome) in
                kafka_log::create_topics(&self.kafka, &missing, n, self.replication).await?
            {
                tracing::info!(%topic, partitions = n, outcome, "kafka topic checked");
            }
        }
        let mut mismatched: Vec<String> = self
            .cfg
            .inputs
            .iter()
            .map(String::as_str)
            .chain(topics.all())
            .filter_map(|t| count(t).filter(|c| *c != n).map(|c| format!("{t} has {c}")))
            .collect();
        mismatched.sort();
        if mismatched.is_empty() {
            return Ok(Layout {
                co_partitioned: true,
            });
        }
        let what = format!(
            "input and output topics must all have {n} partitions for exactly-once ({})",
            mismatched.join(", ")
        );
        if !self.at_least_once {
            return Err(StageError::Setup(format!(
                "{what}; fix the partition counts, or run with --at-least-once"
            )));
        }
        tracing::warn!(
            "{what}; running at-least-once: outputs go by murmur2(key), ids stay deterministic"
        );
        Ok(Layout {
            co_partitioned: false,
        })
    }

    fn producer(&self) -> Result<FutureProducer, StageError> {
        // The stage's input is durable, so it can wait out an outage: no
        // message timeout, which also keeps the gapless guarantee whole
        // (librdkafka exempts timed-out messages from it).
        let mut c = self.kafka.producer_config(Duration::from_secs(10))?;
        c.set("enable.gapless.guarantee", "true");
        c.set("message.timeout.ms", "0");
        c.set("linger.ms", "5");
        for (k, v) in &self.kafka.properties {
            if k != "message.timeout.ms" {
                c.set(k, v);
            }
        }
        c.create()
            .map_err(|e| LogError::Kafka(e.to_string()).into())
    }

    fn consumer(
        &self,
        producer: FutureProducer,
    ) -> Result<StreamConsumer<StageContext>, StageError> {
        let mut c: ClientConfig = self.kafka.base();
        c.set("group.id", &self.cfg.group);
        c.set("enable.auto.commit", "true");
        c.set("auto.commit.interval.ms", "1000");
        c.set("enable.auto.offset.store", "false");
        c.set("auto.offset.reset", "earliest");
        c.set("isolation.level", kafka_log::ISOLATION);
        // Partition p of every input to the same member (see the module doc).
        c.set("partition.assignment.strategy", "range");
        // Tansu 0.6 holds every fetch for the full wait even when records are
        // there (the default 500 ms gave a 2.4 s end-to-end p50 at 50 msg/s;
        // 10 ms gave 14 ms). On Kafka the broker answers as soon as data
        // arrives, so a short wait only costs idle fetches. `-X` overrides it.
        if !self.kafka.properties.contains_key("fetch.wait.max.ms") {
            c.set("fetch.wait.max.ms", "10");
        }
        let ctx = StageContext {
            producer,
            revoked: Mutex::new(Vec::new()),
            flush_failed: AtomicBool::new(false),
        };
        c.create_with_context(ctx)
            .map_err(|e| LogError::Kafka(e.to_string()).into())
    }

    /// A reader for output tails: never commits, reports partition ends.
    fn tail_reader(&self) -> Result<BaseConsumer, StageError> {
        Ok(kafka_log::reader(&self.kafka, "recovery")?)
    }

    async fn session(
        &self,
        shutdown: &CancellationToken,
        layout: Layout,
    ) -> Result<(), StageError> {
        let producer = self.producer()?;
        let consumer = self.consumer(producer.clone())?;
        let inputs: Vec<&str> = self.cfg.inputs.iter().map(String::as_str).collect();
        consumer
            .subscribe(&inputs)
            .map_err(|e| LogError::Kafka(e.to_string()))?;
        let topics = self.cfg.topics();
        let outputs: Vec<String> = topics.all().iter().map(|s| s.to_string()).collect();
        let mut parts: HashMap<i32, PartitionState> = HashMap::new();
        // Input partitions seen since their assignment: the first record of
        // each is logged, so where a member resumed is always on record.
        let mut resumed: HashSet<(String, i32)> = HashSet::new();
        let mut pending = FuturesOrdered::new();
        std::fs::create_dir_all(&self.data_dir).map_err(LogError::Io)?;
        let store = DedupStore::open(&self.data_dir.join(dedup::DB_FILE))
            .map_err(|e| StageError::Setup(format!("opening the dedup window: {e}")))?;
        let mut dedup = Dedup {
            store,
            window: self.cfg.dedup_window,
            in_flight: HashMap::new(),
            delivered: Vec::new(),
            last_flush: std::time::Instant::now(),
        };
        tracing::info!(group = %self.cfg.group, exactly_once = layout.co_partitioned, "transform stage consuming");
        loop {
            if consumer
                .context()
                .flush_failed
                .swap(false, Ordering::SeqCst)
            {
                return Err(StageError::Setup(
                    "outputs were still in flight when partitions were revoked".into(),
                ));
            }
            if let Some(fatal) = producer.client().fatal_error() {
                return Err(StageError::Setup(format!(
                    "producer fatal error: {fatal:?}"
                )));
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                done = pending.next(), if !pending.is_empty() => {
                    let Some(done) = done else { continue };
                    let Done { topic, partition, offset, seen, result, outcome, outputs, received_at } = done;
                    if let Err(e) = result {
                        return Err(StageError::Setup(format!("output delivery failed: {e}")));
                    }
                    ev::TransformCommitted { outcome, records: 1, outputs }.emit();
                    if let Some(received_at) = &received_at {
                        ev::EndToEnd { received_at }.emit();
                    }
                    dedup.delivered(seen)?;
                    // Only an owned partition can store; a revoked one just skips.
                    let _ = store_next(&consumer, &topic, partition, offset + 1);
                }
                m = consumer.recv(), if pending.len() < MAX_PENDING => {
                    let m = m.map_err(|e| LogError::Kafka(e.to_string()))?;
                    for p in consumer.context().take_revoked() {
                        parts.remove(&p);
                        resumed.retain(|(_, q)| *q != p);
                    }
                    let partition = m.partition();
                    if resumed.insert((m.topic().to_owned(), partition)) {
                        tracing::info!(topic = m.topic(), partition, offset = m.offset(), "input partition resumed");
                    }
                    if layout.co_partitioned && !parts.contains_key(&partition) {
                        // A reader per recovery, dropped after: an idle one keeps
                        // fetching and reporting end-of-partition as errors.
                        let state = tokio::task::block_in_place(|| {
                            recover(&self.tail_reader()?, &outputs, partition)
                        })?;
                        parts.insert(partition, state);
                    }
                    let Sent { deliveries, seen, outcome, received_at } = self
                        .handle(&producer, &m, parts.get_mut(&partition), layout, &mut dedup)
                        .await?;
                    let outputs = deliveries.len() as u64;
                    let (topic, offset) = (m.topic().to_owned(), m.offset());
                    pending.push_back(async move {
                        let mut result = Ok(());
                        for d in deliveries {
                            match d.await {
                                Ok(Ok(_)) => {}
                                Ok(Err((e, _))) => result = Err(e.to_string()),
                                Err(_) => result = Err("delivery canceled".to_owned()),
                            }
                        }
                        Done { topic, partition, offset, seen, result, outcome, outputs, received_at }
                    });
                }
            }
        }
        // Clean stop: deliver what is in flight, then store its offsets.
        while let Some(Done {
            topic,
            partition,
            offset,
            seen,
            result,
            ..
        }) = pending.next().await
        {
            if result.is_ok() {
                dedup.delivered(seen)?;
                let _ = store_next(&consumer, &topic, partition, offset + 1);
            }
        }
        dedup.flush()?;
        let _ = producer.flush(REVOKE_FLUSH);
        // Closing the consumer (on drop) auto-commits the *stored* offsets:
        // records whose outputs are delivered. Never commit the consumer's
        // position, which can run ahead of them.
        Ok(())
    }

    /// Maps one input record and sends the outputs not already written.
    async fn handle(
        &self,
        producer: &FutureProducer,
        m: &BorrowedMessage<'_>,
        state: Option<&mut PartitionState>,
        layout: Layout,
        dedup: &mut Dedup,
    ) -> Result<Sent, StageError> {
        let headers = kafka_log::message_headers(m);
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let src = Source {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: key.as_deref(),
            headers: &headers,
            value: m.payload().unwrap_or_default(),
        };
        let seen = dedup::key(&src).map(|k| (k, src.coordinates()));
        let duplicate = match &seen {
            Some((k, coords)) => dedup.first(k)?.is_some_and(|first| first != *coords),
            None => false,
        };
        let mut name = "duplicate";
        let mut records: Vec<Record> = if duplicate {
            ev::DuplicateSkipped {
                topic: src.topic,
                partition: src.partition,
                offset: src.offset,
                control_id: src.header(crate::intake::headers::CONTROL_ID).unwrap_or(""),
            }
            .emit();
            Vec::new()
        } else {
            let outcome = self.stage.process(&src);
            if let Outcome::NoContent = outcome {
                tracing::debug!(
                    topic = src.topic,
                    partition = src.partition,
                    offset = src.offset,
                    "no FHIR content"
                );
            }
            name = outcome.name();
            outcome.into_records()
        };
        let received_at = (name == "resources")
            .then(|| {
                src.header(crate::intake::headers::RECEIVED_AT)
                    .map(str::to_owned)
            })
            .flatten();
        let seen = seen.filter(|_| !duplicate);
        if let Some((k, coords)) = &seen {
            dedup.in_flight.insert(k.clone(), coords.clone());
        }
        let mut out = Vec::with_capacity(records.len());
        match state {
            Some(state) => {
                let keep = state.advance(&src, &records);
                for (r, keep) in records.iter_mut().zip(keep) {
                    if keep {
                        r.headers
                            .push((COVERED.into(), state.covered_header(&r.topic)));
                        if let Some(p) = state.partial_header(&r.topic) {
                            r.headers.push((PARTIAL.into(), p));
                        }
                        out.push(kafka_log::enqueue(producer, r).await.map_err(kafka_err)?);
                    }
                }
                tracing::debug!(
                    topic = src.topic,
                    partition = src.partition,
                    offset = src.offset,
                    outputs = records.len(),
                    sent = out.len(),
                    "input handled"
                );
                state.complete(&src);
            }
            None => {
                debug_assert!(!layout.co_partitioned);
                for r in &mut records {
                    r.partition = None;
                    out.push(kafka_log::enqueue(producer, r).await.map_err(kafka_err)?);
                }
            }
        }
        Ok(Sent {
            deliveries: out,
            seen,
            outcome: name,
            received_at,
        })
    }
}

/// What `handle` sent for one input record.
struct Sent {
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
    seen: Option<Seen>,
    outcome: &'static str,
    received_at: Option<String>,
}

/// One input record whose outputs have all been delivered (or failed).
struct Done {
    topic: String,
    partition: i32,
    offset: i64,
    seen: Option<Seen>,
    result: Result<(), String>,
    outcome: &'static str,
    outputs: u64,
    received_at: Option<String>,
}

/// A dedup entry: the key and the `topic/partition/offset` that carried it first.
type Seen = (DedupKey, String);

/// The Kafka stage's view of the dedup window: the durable store, plus keys
/// whose outputs are still in flight (a resend can arrive before they land).
struct Dedup {
    store: DedupStore,
    window: Duration,
    in_flight: HashMap<DedupKey, String>,
    delivered: Vec<Seen>,
    last_flush: std::time::Instant,
}

impl Dedup {
    fn first(&self, k: &DedupKey) -> Result<Option<String>, StageError> {
        if let Some(s) = self.in_flight.get(k) {
            return Ok(Some(s.clone()));
        }
        let since = super::now_ms() - self.window.as_millis() as i64;
        self.store
            .first_seen(k, since)
            .map_err(|e| StageError::Setup(format!("reading the dedup window: {e}")))
    }

    /// The outputs of `seen`'s record are delivered: remember it (in batches).
    fn delivered(&mut self, seen: Option<Seen>) -> Result<(), StageError> {
        if let Some((k, coords)) = seen {
            if self.in_flight.get(&k) == Some(&coords) {
                self.in_flight.remove(&k);
            }
            self.delivered.push((k, coords));
        }
        if self.delivered.len() >= 256 || self.last_flush.elapsed() >= Duration::from_millis(200) {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StageError> {
        self.last_flush = std::time::Instant::now();
        if self.delivered.is_empty() {
            return Ok(());
        }
        let now = super::now_ms();
        let before = now - self.window.as_millis() as i64;
        self.store
            .remember(&self.delivered, now, Some(before))
            .map_err(|e| StageError::Setup(format!("writing the dedup window: {e}")))?;
        self.delivered.clear();
        Ok(())
    }
}

/// Stores `next` as the partition's offset to commit: the next record to read.
///
/// Not `Consumer::store_offset`: that wraps librdkafka's legacy
/// `rd_kafka_offset_store`, which stores its argument **+ 1**, so passing
/// `offset + 1` made every commit skip one record (a lost output whenever a
/// partition moved right after that record was stored, seen on Tansu).
fn store_next<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topic: &str,
    partition: i32,
    next: i64,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(next))?;
    consumer.store_offsets(&tpl)
}

fn kafka_err(e: rdkafka::error::KafkaError) -> StageError {
    LogError::Kafka(e.to_string()).into()
}

/// What one output partition already holds, and what this process has sent to it.
#[derive(Debug, Default, Clone, PartialEq)]
struct OutputState {
    /// Input topic -> offset below which every record's outputs are written.
    covered: HashMap<String, i64>,
    /// Input topic -> (offset, index): that record's outputs are written
    /// through `index`, the rest may not be. It comes from a recovered tail
    /// and is carried in every later header until the record is processed
    /// again: once other records' outputs are appended, the tail no longer
    /// says so itself.
    partial: HashMap<String, (i64, usize)>,
}

impl OutputState {
    fn written(&self, topic: &str, offset: i64, index: usize) -> bool {
        self.covered.get(topic).is_some_and(|c| offset < *c)
            || self
                .partial
                .get(topic)
                .is_some_and(|(o, i)| *o == offset && index <= *i)
    }

    fn cover(&mut self, topic: &str, below: i64) {
        let c = self.covered.entry(topic.to_owned()).or_insert(0);
        *c = (*c).max(below);
        let c = *c;
        if self.partial.get(topic).is_some_and(|(o, _)| *o < c) {
            self.partial.remove(topic);
        }
    }

    /// Folds in the source of the record found at the partition's tail.
    fn with_tail(mut self, topic: String, offset: i64, index: usize) -> Self {
        if self.covered.get(&topic).is_none_or(|c| offset >= *c) {
            self.partial.insert(topic, (offset, index));
        }
        self
    }
}

/// Recovery state of one partition number, across all output topics.
#[derive(Debug, Default)]
struct PartitionState {
    outputs: HashMap<String, OutputState>,
}

impl PartitionState {
    /// Which of `records` (the outputs of `src`, in index order) still need
    /// sending; then marks everything before `src` as covered.
    /// Call [`PartitionState::complete`] once they are handed to the producer.
    fn advance(&mut self, src: &Source<'_>, records: &[Record]) -> Vec<bool> {
        let keep = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                !self
                    .outputs
                    .get(&r.topic)
                    .is_some_and(|o| o.written(src.topic, src.offset, i))
            })
            .collect();
        self.cover(src.topic, src.offset);
        keep
    }

    /// `src`'s outputs are sent: anything written after them implies them.
    fn complete(&mut self, src: &Source<'_>) {
        self.cover(src.topic, src.offset + 1);
    }

    fn cover(&mut self, topic: &str, below: i64) {
        for o in self.outputs.values_mut() {
            o.cover(topic, below);
        }
    }

    /// The `source.covered` header for an output sent to `output` now.
    fn covered_header(&self, output: &str) -> String {
        let Some(o) = self.outputs.get(output) else {
            return String::new();
        };
        let mut v: Vec<_> = o.covered.iter().collect();
        v.sort();
        v.iter()
            .map(|(t, o)| format!("{t}:{o}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `source.partial` header for an output sent to `output` now, if any.
    fn partial_header(&self, output: &str) -> Option<String> {
        let o = self.outputs.get(output)?;
        let mut v: Vec<_> = o.partial.iter().collect();
        v.sort();
        let h = v
            .iter()
            .map(|(t, (o, i))| format!("{t}:{o}:{i}"))
            .collect::<Vec<_>>()
            .join(",");
        (!h.is_empty()).then_some(h)
    }
}

/// Reads the last record of partition `p` of each output topic.
///
/// It reads from the high watermark - 1 up to the end of the partition as
/// the fetch reports it, keeping the last record seen, rather than trusting
/// the watermark alone: Tansu 0.6 answers ListOffsets(latest) with the last
/// *batch's* base offset + 1.
fn recover(
    reader: &BaseConsumer,
    outputs: &[String],
    p: i32,
) -> Result<PartitionState, StageError> {
    let mut state = PartitionState::default();
    for o in outputs {
        let (_lo, hi) = reader
            .fetch_watermarks(o, p, METADATA_TIMEOUT)
            .map_err(kafka_err)?;
        let start = if hi > 0 {
            Offset::Offset(hi - 1)
        } else {
            Offset::Beginning
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(o, p, start).map_err(kafka_err)?;
        reader.assign(&tpl).map_err(kafka_err)?;
        let deadline = std::time::Instant::now() + METADATA_TIMEOUT * 3;
        let mut last = None;
        // End-of-partition comes from the fetch's high watermark, which Tansu
        // may also understate; so after it, keep reading until a quiet spell.
        let mut eof_at: Option<std::time::Instant> = None;
        loop {
            if std::time::Instant::now() > deadline {
                return Err(StageError::Setup(format!(
                    "could not read {o} partition {p} to its end for recovery"
                )));
            }
            if eof_at.is_some_and(|t| t.elapsed() >= TAIL_QUIET) {
                break;
            }
            match reader.poll(Duration::from_millis(50)) {
                None => continue,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                    eof_at.get_or_insert_with(std::time::Instant::now);
                }
                Some(Err(e)) => return Err(kafka_err(e)),
                Some(Ok(m)) => {
                    last = Some(kafka_log::message_headers(&m));
                    eof_at = None;
                }
            }
        }
        let mut out = OutputState::default();
        if let Some(headers) = last {
            out = parse_tail(&headers).ok_or_else(|| {
                StageError::Setup(format!(
                    "the last record of {o} partition {p} has no source.* headers; was it written by another producer?"
                ))
            })?;
        }
        tracing::info!(topic = %o, partition = p, covered = ?out.covered, partial = ?out.partial, "output partition recovered");
        state.outputs.insert(o.clone(), out);
    }
    reader.unassign().map_err(kafka_err)?;
    Ok(state)
}

fn parse_tail(headers: &[(String, String)]) -> Option<OutputState> {
    let get = |k: &str| {
        headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.as_str())
    };
    fn entries(v: &str) -> impl Iterator<Item = &str> {
        v.split(',').filter(|s| !s.is_empty())
    }
    let covered = entries(get(COVERED)?)
        .map(|pair| {
            let (t, o) = pair.rsplit_once(':')?;
            Some((t.to_owned(), o.parse().ok()?))
        })
        .collect::<Option<HashMap<_, _>>>()?;
    let partial = entries(get(PARTIAL).unwrap_or(""))
        .map(|e| {
            let (rest, i) = e.rsplit_once(':')?;
            let (t, o) = rest.rsplit_once(':')?;
            Some((t.to_owned(), (o.parse().ok()?, i.parse().ok()?)))
        })
        .collect::<Option<HashMap<_, _>>>()?;
    let state = OutputState { covered, partial };
    Some(state.with_tail(
        get(sh::SOURCE_TOPIC)?.to_owned(),
        get(sh::SOURCE_OFFSET)?.parse().ok()?,
        get(sh::SOURCE_INDEX)?.parse().ok()?,
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn src(topic: &str, offset: i64) -> Source<'_> {
        Source {
            topic,
            partition: 0,
            offset,
            key: None,
            headers: &[],
            value: b"",
        }
    }

    fn out(topic: &str) -> Record {
        Record {
            topic: topic.into(),
            key: None,
            partition: Some(0),
            headers: vec![],
            timestamp_ms: 0,
            value: Default::default(),
        }
    }

    /// Recovered: fhir.observation's last record is output 1 of oru@7, and
    /// every adt record below 3 and oru record below 7 is covered.
    fn recovered() -> PartitionState {
        let obs = parse_tail(&[
            (COVERED.into(), "hl7v2.adt:3,hl7v2.oru:7".into()),
            (sh::SOURCE_TOPIC.into(), "hl7v2.oru".into()),
            (sh::SOURCE_OFFSET.into(), "7".into()),
            (sh::SOURCE_INDEX.into(), "1".into()),
        ])
        .unwrap();
        let mut s = PartitionState::default();
        s.outputs.insert("fhir.observation".into(), obs);
        s.outputs
            .insert("fhir.encounter".into(), OutputState::default());
        s
    }

    #[test]
    fn outputs_below_the_covered_offset_are_skipped() {
        let mut s = recovered();
        let keep = s.advance(&src("hl7v2.oru", 6), &[out("fhir.observation")]);
        assert_eq!(keep, vec![false]);
    }

    #[test]
    fn the_last_records_source_is_resumed_after_its_last_written_index() {
        let mut s = recovered();
        let outs = [
            out("fhir.observation"),
            out("fhir.observation"),
            out("fhir.observation"),
        ];
        assert_eq!(
            s.advance(&src("hl7v2.oru", 7), &outs),
            vec![false, false, true]
        );
    }

    #[test]
    fn an_output_topic_with_nothing_written_gets_everything() {
        let mut s = recovered();
        assert_eq!(
            s.advance(&src("hl7v2.oru", 6), &[out("fhir.encounter")]),
            vec![true]
        );
    }

    #[test]
    fn other_input_topics_are_judged_by_their_own_offsets() {
        let mut s = recovered();
        assert_eq!(
            s.advance(&src("hl7v2.adt", 2), &[out("fhir.observation")]),
            vec![false]
        );
        assert_eq!(
            s.advance(&src("hl7v2.adt", 3), &[out("fhir.observation")]),
            vec![true]
        );
        assert_eq!(
            s.advance(&src("hl7v2.orm", 0), &[out("fhir.observation")]),
            vec![true]
        );
    }

    #[test]
    fn the_covered_header_advances_with_processing_and_never_goes_back() {
        let mut s = recovered();
        s.advance(&src("hl7v2.adt", 10), &[]);
        assert_eq!(s.covered_header("fhir.encounter"), "hl7v2.adt:10");
        s.complete(&src("hl7v2.adt", 10));
        s.advance(&src("hl7v2.oru", 2), &[]);
        s.complete(&src("hl7v2.oru", 2));
        assert_eq!(
            s.covered_header("fhir.observation"),
            "hl7v2.adt:11,hl7v2.oru:7"
        );
        assert_eq!(
            s.covered_header("fhir.encounter"),
            "hl7v2.adt:11,hl7v2.oru:3"
        );
    }

    /// The case that a per-topic "last offset" alone gets wrong: the tail's
    /// source is adt@6, but oru@0 was sent before it and must not be resent.
    #[test]
    fn records_of_other_topics_completed_before_the_tail_are_not_resent() {
        let mut live = PartitionState::default();
        live.outputs
            .insert("fhir.encounter".into(), OutputState::default());
        let mut tail = Vec::new();
        for (t, o) in [("hl7v2.oru", 0), ("hl7v2.adt", 6)] {
            live.advance(&src(t, o), &[out("fhir.encounter")]);
            tail = vec![
                (COVERED.to_owned(), live.covered_header("fhir.encounter")),
                (sh::SOURCE_TOPIC.to_owned(), t.to_owned()),
                (sh::SOURCE_OFFSET.to_owned(), o.to_string()),
                (sh::SOURCE_INDEX.to_owned(), "0".to_owned()),
            ];
            live.complete(&src(t, o));
        }
        let mut s = PartitionState::default();
        s.outputs
            .insert("fhir.encounter".into(), parse_tail(&tail).unwrap());
        assert_eq!(
            s.advance(&src("hl7v2.oru", 0), &[out("fhir.encounter")]),
            vec![false]
        );
        assert_eq!(
            s.advance(&src("hl7v2.adt", 6), &[out("fhir.encounter")]),
            vec![false]
        );
        assert_eq!(
            s.advance(&src("hl7v2.oru", 1), &[out("fhir.encounter")]),
            vec![true]
        );
    }

    /// The headers a live state puts on an output of `src` at `index`.
    fn sent(
        live: &PartitionState,
        output: &str,
        t: &str,
        o: i64,
        index: usize,
    ) -> Vec<(String, String)> {
        let mut h = vec![
            (COVERED.to_owned(), live.covered_header(output)),
            (sh::SOURCE_TOPIC.to_owned(), t.to_owned()),
            (sh::SOURCE_OFFSET.to_owned(), o.to_string()),
            (sh::SOURCE_INDEX.to_owned(), index.to_string()),
        ];
        if let Some(p) = live.partial_header(output) {
            h.push((PARTIAL.to_owned(), p));
        }
        h
    }

    /// Seen on Tansu: member A sent oru@0's encounter, lost the partition
    /// before oru@0's consumer offset was committed, got it back, recovered
    /// (tail = oru@0 index 0), wrote adt outputs after it, and left. The
    /// next owner replays oru@0 and must still know its encounter is written.
    #[test]
    fn a_recovered_partial_record_stays_known_after_other_records_are_appended() {
        let enc = "fhir.encounter";
        let mut a = PartitionState::default();
        a.outputs.insert(enc.into(), OutputState::default());
        a.advance(&src("hl7v2.oru", 0), &[out(enc)]);
        let tail = sent(&a, enc, "hl7v2.oru", 0, 0);

        let mut again = PartitionState::default();
        again.outputs.insert(enc.into(), parse_tail(&tail).unwrap());
        let mut tail = Vec::new();
        for o in 0..12 {
            again.advance(&src("hl7v2.adt", o), &[out(enc)]);
            tail = sent(&again, enc, "hl7v2.adt", o, 0);
            again.complete(&src("hl7v2.adt", o));
        }

        let mut next = PartitionState::default();
        next.outputs.insert(enc.into(), parse_tail(&tail).unwrap());
        assert_eq!(next.advance(&src("hl7v2.oru", 0), &[out(enc)]), vec![false]);
        assert_eq!(
            next.advance(&src("hl7v2.adt", 11), &[out(enc)]),
            vec![false]
        );
        assert_eq!(next.advance(&src("hl7v2.adt", 12), &[out(enc)]), vec![true]);
    }

    #[test]
    fn a_partial_record_resumes_after_its_written_index_and_is_then_forgotten() {
        let obs = "fhir.observation";
        let mut s = PartitionState::default();
        s.outputs.insert(
            obs.into(),
            parse_tail(&[
                (COVERED.into(), "hl7v2.adt:4".into()),
                (PARTIAL.into(), "hl7v2.oru:9:1".into()),
                (sh::SOURCE_TOPIC.into(), "hl7v2.adt".into()),
                (sh::SOURCE_OFFSET.into(), "4".into()),
                (sh::SOURCE_INDEX.into(), "0".into()),
            ])
            .unwrap(),
        );
        let three = [out(obs), out(obs), out(obs)];
        assert_eq!(
            s.partial_header(obs).as_deref(),
            Some("hl7v2.adt:4:0,hl7v2.oru:9:1")
        );
        assert_eq!(
            s.advance(&src("hl7v2.oru", 9), &three),
            vec![false, false, true]
        );
        s.complete(&src("hl7v2.oru", 9));
        assert_eq!(s.partial_header(obs).as_deref(), Some("hl7v2.adt:4:0"));
        s.advance(&src("hl7v2.adt", 5), &[]);
        assert_eq!(s.partial_header(obs), None);
    }

    #[test]
    fn a_tail_without_provenance_is_not_trusted() {
        assert_eq!(parse_tail(&[]), None);
        assert_eq!(parse_tail(&[(COVERED.into(), "x:1".into())]), None);
    }
}
