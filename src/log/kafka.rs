//! The Kafka log: an idempotent `acks=all` producer, so a delivery report
//! means the record is on every in-sync replica, written exactly once.
//!
//! The bridge sets the properties its ACK promise rests on and refuses
//! overrides that would weaken it (`acks`, `enable.idempotence`). Everything
//! else is passed through to librdkafka untouched (`security.protocol`,
//! `sasl.*`, `ssl.*`, `compression.type`, ...).
//!
//! Backpressure: when librdkafka's queue is full, `append` waits and retries
//! instead of buffering elsewhere; the connection's in-flight bound then
//! stops it reading from its socket. The connection's `ack_timeout` bounds
//! the wait, so a sender gets AE/CE, never silence.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use super::{Log, LogError};
use crate::record::{Position, Record};
use crate::record::{StoredRecord, TopicSummary};

/// `[kafka]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,...`; the Kafka backend is used when this is set.
    pub brokers: String,
    /// librdkafka properties passed through as they are.
    pub properties: BTreeMap<String, String>,
    /// Replication factor for `topics create` (default 3).
    pub replication_factor: Option<i32>,
}

/// Properties that carry the ACK promise. They may be restated, not changed.
const REQUIRED: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];

impl KafkaConfig {
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    pub fn replication_factor(&self) -> i32 {
        self.replication_factor.unwrap_or(3)
    }

    pub(crate) fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("log_level", "4");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Producer settings: the bridge's defaults, then user properties, with
    /// the promise-carrying ones checked. `ack_timeout` bounds `message.timeout.ms`.
    pub fn producer_config(&self, ack_timeout: Duration) -> Result<ClientConfig, LogError> {
        for (k, want) in REQUIRED {
            if let Some(v) = self.properties.get(*k) {
                let same = v.eq_ignore_ascii_case(want) || (*k == "acks" && (v == "-1"));
                if !same {
                    return Err(LogError::Config(format!(
                        "kafka property {k}={v} would let the bridge ACK messages Kafka has not fully committed; it must be {want}"
                    )));
                }
            }
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("enable.idempotence", "true");
        c.set("acks", "all");
        c.set("partitioner", "murmur2_random");
        // MLLP senders wait for each ACK, so a linger timer is pure latency for
        // them (measured: C=1 288 msg/s at 2 ms, 1,270 at 0). Concurrent senders
        // still batch, by the next setting.
        c.set("linger.ms", "0");
        // One request in flight per broker: records that arrive while it is
        // out go together in the next, so batches grow with the load and a
        // lone sender still waits for nothing (a linger of 2 ms instead gave
        // C=1 381 msg/s). Measured on Tansu, ORU^R01 8 OBX, contaminated:
        // C=1 2,409 msg/s (1,944 with 5 in flight), C=64 26,874 (21,694);
        // with the stage at 1,000 msg/s offered, the bridge's CPU per message
        // fell from ~800 to ~250-320 us (BENCHMARKS.md, issue 16).
        c.set("max.in.flight.requests.per.connection", "1");
        // Shorter than ack_timeout, so librdkafka gives up (and we answer AE)
        // before the sender's own timer would fire.
        let budget = ack_timeout
            .saturating_sub(ack_timeout / 5)
            .max(Duration::from_millis(500));
        c.set("message.timeout.ms", budget.as_millis().to_string());
        c.set("queue.buffering.max.messages", "100000");
        c.set("queue.buffering.max.kbytes", "262144");
        c.set("log_level", "4");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        Ok(c)
    }
}

pub struct KafkaLog {
    inner: Arc<Inner>,
}

/// The producer and what is needed to replace it.
///
/// librdkafka reconnects by itself, but an idempotent producer whose
/// producer ID the broker no longer accepts (seen with a broker restarted on
/// persistent storage: every produce then fails with a broker error) never
/// recovers on its own. So when the broker rejects a produce, or librdkafka
/// reports a fatal error, the bridge builds a fresh producer (new producer
/// ID), at most once per `RESET_INTERVAL`. Records the old producer still
/// held fail, and their senders get AE/CE and resend.
struct Inner {
    config: ClientConfig,
    producer: RwLock<FutureProducer>,
    last_reset: Mutex<Instant>,
    /// The first failure since the last successful delivery.
    first_failure: Mutex<Option<Instant>>,
    /// A producer that has delivered nothing for this long while failing is
    /// rebuilt even if its errors look transient: librdkafka can stay wedged
    /// re-acquiring a producer ID from a broker that lost its state.
    stuck_after: Duration,
}

const RESET_INTERVAL: Duration = Duration::from_secs(2);

impl KafkaLog {
    pub fn new(cfg: &KafkaConfig, ack_timeout: Duration) -> Result<Self, LogError> {
        let config = cfg.producer_config(ack_timeout)?;
        let producer: FutureProducer = config.create().map_err(kafka_err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer: RwLock::new(producer),
                last_reset: Mutex::new(Instant::now()),
                first_failure: Mutex::new(None),
                stuck_after: (ack_timeout * 2).max(Duration::from_secs(5)),
            }),
        })
    }

    /// Waits for queued records to be delivered (at shutdown).
    pub fn flush(&self, wait: Duration) {
        if let Err(e) = self.inner.producer().flush(wait) {
            tracing::warn!(error = %e, "kafka flush did not complete");
        }
    }
}

impl Inner {
    fn producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Called after a failed produce: replaces the producer when the
    /// failure is one a fresh producer can fix.
    fn after_success(&self) {
        if let Ok(mut f) = self.first_failure.lock() {
            *f = None;
        }
    }

    /// Called after a failed or abandoned produce (`None`: the caller gave
    /// up waiting). Replaces the producer when the failure is one a fresh
    /// producer can fix, or when nothing has been delivered for `stuck_after`.
    fn after_failure(&self, e: Option<&KafkaError>) {
        let stuck = match self.first_failure.lock() {
            Ok(mut f) => f.get_or_insert_with(Instant::now).elapsed() >= self.stuck_after,
            Err(_) => false,
        };
        let fatal = self.producer().client().fatal_error();
        if fatal.is_none() && !stuck && e.is_none_or(is_transient) {
            return;
        }
        let Ok(mut last) = self.last_reset.lock() else {
            return;
        };
        let interval = if stuck {
            self.stuck_after
        } else {
            RESET_INTERVAL
        };
        if last.elapsed() < interval {
            return;
        }
        *last = Instant::now();
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                if let Ok(mut p) = self.producer.write() {
                    *p = fresh;
                }
                let error = e
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no delivery report in time".into());
                tracing::warn!(%error, fatal = fatal.is_some(), stuck, "kafka producer replaced");
            }
            Err(err) => tracing::error!(error = %err, "could not create a new kafka producer"),
        }
    }
}

/// Reports an append's outcome to [`Inner`], also when the append future is
/// dropped before finishing (the connection's `ack_timeout` fired).
struct Attempt {
    inner: Arc<Inner>,
    settled: bool,
}

impl Attempt {
    fn settle(&mut self, result: &Result<Vec<Position>, KafkaError>) {
        self.settled = true;
        match result {
            Ok(_) => self.inner.after_success(),
            Err(e) => self.inner.after_failure(Some(e)),
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.inner.after_failure(None);
        }
    }
}

/// Failures that a reconnect fixes by itself: the broker is unreachable or slow.
fn is_transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e,
        KafkaError::MessageProduction(
            MessageTimedOut | QueueFull | BrokerTransportFailure | AllBrokersDown | RequestTimedOut
        )
    )
}

fn kafka_err(e: KafkaError) -> LogError {
    LogError::Kafka(e.to_string())
}

impl Log for KafkaLog {
    fn append(&self, records: Vec<Record>) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        let mut attempt = Attempt {
            inner: self.inner.clone(),
            settled: false,
        };
        async move {
            let producer = attempt.inner.producer();
            let result = produce(&producer, &records).await;
            attempt.settle(&result);
            result.map_err(kafka_err)
        }
        .boxed()
    }

    fn kind(&self) -> &'static str {
        "kafka"
    }
}

/// Produces every record and waits for every delivery report.
async fn produce(
    producer: &FutureProducer,
    records: &[Record],
) -> Result<Vec<Position>, KafkaError> {
    {
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            deliveries.push(enqueue(producer, r).await?);
        }
        let mut positions = Vec::with_capacity(deliveries.len());
        for (d, r) in futures::future::join_all(deliveries)
            .await
            .into_iter()
            .zip(records)
        {
            match d {
                Ok(Ok(delivery)) => positions.push(Position {
                    topic: r.topic.clone(),
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Ok(Err((e, _))) => return Err(e),
                Err(_) => return Err(KafkaError::Canceled),
            }
        }
        Ok(positions)
    }
}

/// Hands one record to the producer, waiting while its queue is full.
pub(crate) async fn enqueue(
    producer: &FutureProducer,
    r: &Record,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut rec = FutureRecord::<[u8], [u8]>::to(&r.topic)
        .payload(&r.value[..])
        .headers(headers)
        .timestamp(r.timestamp_ms);
    if let Some(k) = &r.key {
        rec = rec.key(k.as_bytes());
    }
    if let Some(p) = r.partition {
        rec = rec.partition(p);
    }
    loop {
        match producer.send_result(rec) {
            Ok(d) => return Ok(d),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// A consumed message's headers as strings.
pub(crate) fn message_headers<M: Message>(m: &M) -> Vec<(String, String)> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Creates topics that do not exist yet. Existing topics are left alone
/// (their partition count is reported by `list_topics`).
pub async fn create_topics(
    cfg: &KafkaConfig,
    names: &[String],
    partitions: u32,
    replication: i32,
) -> Result<Vec<(String, &'static str)>, LogError> {
    create_topics_with(cfg, names, partitions, replication, &[]).await
}

/// [`create_topics`] with topic settings (`cleanup.policy`, `retention.ms`...)
/// for every new topic.
pub async fn create_topics_with(
    cfg: &KafkaConfig,
    names: &[String],
    partitions: u32,
    replication: i32,
    settings: &[(&str, &str)],
) -> Result<Vec<(String, &'static str)>, LogError> {
    let admin: AdminClient<DefaultClientContext> = cfg.base().create().map_err(kafka_err)?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            settings.iter().fold(
                NewTopic::new(n, partitions as i32, TopicReplication::Fixed(replication)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(kafka_err)?;
    let mut out = Vec::new();
    for r in results {
        match r {
            Ok(name) => out.push((name, "created")),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => out.push((name, "exists")),
            Err((name, code)) => {
                return Err(LogError::Kafka(format!("creating topic {name}: {code}")))
            }
        }
    }
    Ok(out)
}

/// The bridge writes no transactions, so nothing is gained by
/// `read_committed`, and on Tansu 0.6 it loses: its last stable offset is
/// the last *batch's* base offset + 1, so the later records of a final batch
/// would stay invisible until something else is written to the partition.
pub(crate) const ISOLATION: &str = "read_uncommitted";

/// A consumer that never commits (a throwaway group id, no offset storage)
/// and reports the end of each partition.
pub(crate) fn reader(cfg: &KafkaConfig, purpose: &str) -> Result<BaseConsumer, LogError> {
    reader_with(cfg, purpose, &[])
}

/// [`reader`] with extra consumer settings (a `-X` property still wins).
pub(crate) fn reader_with(
    cfg: &KafkaConfig,
    purpose: &str,
    settings: &[(&str, &str)],
) -> Result<BaseConsumer, LogError> {
    let mut c = cfg.base();
    for (k, v) in settings {
        if !cfg.properties.contains_key(*k) {
            c.set(*k, *v);
        }
    }
    c.set(
        "group.id",
        format!("hl7bridge-{purpose}-{}", std::process::id()),
    );
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("enable.partition.eof", "true");
    c.set("isolation.level", ISOLATION);
    c.create().map_err(kafka_err)
}

fn consumer(cfg: &KafkaConfig) -> Result<BaseConsumer, LogError> {
    reader(cfg, "tail")
}

/// The names of the topics, from metadata alone (no watermark per
/// partition, which `list_topics` fetches).
pub fn topic_names(cfg: &KafkaConfig) -> Result<Vec<String>, LogError> {
    let md = consumer(cfg)?
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(kafka_err)?;
    let mut names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| !n.starts_with("__"))
        .collect();
    names.sort();
    Ok(names)
}

/// Topics with partition counts and record counts (high - low watermark).
pub fn list_topics(cfg: &KafkaConfig) -> Result<Vec<TopicSummary>, LogError> {
    let c = consumer(cfg)?;
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(kafka_err)?;
    let mut out = Vec::new();
    for t in md.topics() {
        if t.name().starts_with("__") {
            continue;
        }
        let mut records = 0u64;
        for p in t.partitions() {
            let (lo, hi) = c
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                .map_err(kafka_err)?;
            records += (hi - lo).max(0) as u64;
        }
        out.push(TopicSummary {
            name: t.name().to_owned(),
            partitions: t.partitions().len() as u32,
            records,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads a topic without committing. Calls `each` per record until it returns
/// false, or (unless `follow`) until every partition is at its end.
pub fn tail(
    cfg: &KafkaConfig,
    topic: &str,
    from_beginning: bool,
    follow: bool,
    mut each: impl FnMut(StoredRecord) -> bool,
) -> Result<(), LogError> {
    let c = consumer(cfg)?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(kafka_err)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && !t.partitions().is_empty())
        .ok_or_else(|| LogError::Config(format!("topic {topic} does not exist")))?;
    let mut tpl = TopicPartitionList::new();
    // Partitions not yet read to their end. The end is where the broker
    // reports end-of-partition while fetching, not the ListOffsets high
    // watermark: Tansu 0.6 answers that with the last *batch's* base offset + 1.
    let mut ends = std::collections::BTreeSet::new();
    for p in t.partitions() {
        let start = if from_beginning {
            Offset::Beginning
        } else {
            Offset::End
        };
        tpl.add_partition_offset(topic, p.id(), start)
            .map_err(kafka_err)?;
        ends.insert(p.id());
    }
    c.assign(&tpl).map_err(kafka_err)?;
    loop {
        if !follow && ends.is_empty() {
            return Ok(());
        }
        let m = match c.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
                continue;
            }
            Some(m) => m.map_err(kafka_err)?,
        };
        let headers = message_headers(&m);
        let r = StoredRecord {
            id: m.offset(),
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            value: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
        };
        if !each(r) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ack_promise_cannot_be_configured_away() {
        let mut cfg = KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            ..Default::default()
        };
        cfg.properties.insert("acks".into(), "1".into());
        assert!(cfg.producer_config(Duration::from_secs(10)).is_err());
        cfg.properties.insert("acks".into(), "all".into());
        cfg.properties
            .insert("enable.idempotence".into(), "false".into());
        assert!(cfg.producer_config(Duration::from_secs(10)).is_err());
        cfg.properties
            .insert("enable.idempotence".into(), "true".into());
        cfg.properties
            .insert("compression.type".into(), "zstd".into());
        let c = cfg.producer_config(Duration::from_secs(10)).unwrap();
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("max.in.flight.requests.per.connection"), Some("1"));
        assert_eq!(c.get("compression.type"), Some("zstd"));
        assert_eq!(
            c.get("message.timeout.ms"),
            Some("8000"),
            "below ack_timeout"
        );
    }
}
