//! The one place the backend is chosen. A config with `kafka.brokers` set
//! runs on Kafka; any other on the embedded store in `data_dir`. Everything
//! else reaches the backend through the seams this hands out: the writer
//! ([`Log`]), a reader ([`LogReader`]) and the stage driver ([`StageDriver`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::log::embedded::lock::{DirLock, Role};
use crate::log::embedded::{EmbeddedConfig, EmbeddedLog, EmbeddedReader};
use crate::log::kafka::{self, KafkaLog};
use crate::log::{KafkaReader, Log, LogReader};
use crate::record::StoredRecord;
use crate::stage::embedded::EmbeddedStage;
use crate::stage::kafka::KafkaStage;
use crate::stage::{progress, Stage, StageConfig};

/// The writer side of the backend, held by `serve`.
pub enum Backend {
    /// The store, and the directory locks `serve` holds while it runs: the
    /// listener's, and the stage's unless the stage runs elsewhere.
    Embedded(Arc<EmbeddedLog>, Vec<DirLock>),
    Kafka(Arc<KafkaLog>),
}

fn open_embedded(cfg: &Config) -> anyhow::Result<Arc<EmbeddedLog>> {
    let mut store = EmbeddedConfig::new(&cfg.data_dir);
    store.partitions = cfg.partitions;
    let log = EmbeddedLog::open(store)
        .with_context(|| format!("opening the embedded store in {}", cfg.data_dir.display()))?;
    Ok(Arc::new(log))
}

impl Backend {
    pub fn open(cfg: &Config) -> anyhow::Result<Self> {
        if cfg.kafka.enabled() {
            let log = KafkaLog::new(&cfg.kafka, cfg.ack_timeout)
                .context("configuring the Kafka producer")?;
            return Ok(Backend::Kafka(Arc::new(log)));
        }
        let mut locks = vec![DirLock::acquire(&cfg.data_dir, Role::Serve)?];
        if cfg.transform.enabled {
            locks.push(DirLock::acquire(&cfg.data_dir, Role::Transform)?);
        }
        Ok(Backend::Embedded(open_embedded(cfg)?, locks))
    }

    pub fn log(&self) -> Arc<dyn Log> {
        match self {
            Backend::Embedded(l, _) => l.clone(),
            Backend::Kafka(l) => l.clone(),
        }
    }

    /// Creates missing raw topics, in the background and best effort: an
    /// unreachable broker must not stop the listener (it answers AE/CE until
    /// the broker is back). The embedded store creates topics on first write.
    pub fn ensure_topics(&self, cfg: &Config) {
        if let Backend::Kafka(_) = self {
            tokio::spawn(ensure_kafka_topics(cfg.clone()));
        }
    }

    /// Whether `serve` runs the stage in-process: on the embedded store,
    /// unless turned off. On Kafka the stage is its own consumer group
    /// (`transform`).
    pub fn runs_stage(&self, cfg: &Config) -> bool {
        matches!(self, Backend::Embedded(..)) && cfg.transform.enabled
    }

    /// The stage driver `serve` runs, when [`runs_stage`](Self::runs_stage).
    pub fn in_process_stage(&self, cfg: &Config, stage: Arc<Stage>) -> Option<StageDriver> {
        match self {
            Backend::Embedded(log, _) if cfg.transform.enabled => Some(StageDriver::Embedded {
                runner: embedded_stage(stage, cfg, log.clone()),
                log: None,
                lock: None,
            }),
            _ => None,
        }
    }

    /// Starts retention sweeps and the store's size gauges: the embedded
    /// store only; Kafka topics have the broker's own retention.
    pub fn start_retention(
        &self,
        cfg: &Config,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Backend::Embedded(log, _) => Some(tokio::spawn(super::retention::run(
                log.clone(),
                cfg.clone(),
                shutdown,
            ))),
            Backend::Kafka(_) => None,
        }
    }

    /// Commits or flushes what is queued, then lets go of the store.
    pub fn close(&self) {
        match self {
            Backend::Embedded(l, _) => l.close(),
            Backend::Kafka(l) => l.flush(Duration::from_secs(5)),
        }
    }
}

async fn ensure_kafka_topics(cfg: Config) {
    let names = crate::topics::raw_topics(&cfg.topic_prefix, &cfg.accept_types);
    match kafka::create_topics(
        &cfg.kafka,
        &names,
        cfg.partitions,
        cfg.kafka.replication_factor(),
    )
    .await
    {
        Ok(results) => {
            for (topic, outcome) in results {
                tracing::info!(%topic, outcome, "kafka topic checked");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not check kafka topics at start; create them with `hl7bridge topics create`")
        }
    }
}

/// Read-only access to the log of `cfg`, safe beside a running `serve`.
pub fn reader(cfg: &Config) -> anyhow::Result<Box<dyn LogReader>> {
    if cfg.kafka.enabled() {
        return Ok(Box::new(KafkaReader::new(cfg.kafka.clone())));
    }
    let reader = EmbeddedReader::open(&cfg.data_dir)
        .with_context(|| format!("opening the embedded store in {}", cfg.data_dir.display()))?;
    Ok(Box::new(reader))
}

/// Where the records are, for messages: the data directory or the brokers.
pub fn describe_store(cfg: &Config) -> String {
    if cfg.kafka.enabled() {
        format!("kafka at {}", cfg.kafka.brokers)
    } else {
        format!("embedded store at {}", cfg.data_dir.display())
    }
}

/// Creates every raw and FHIR topic, and the stage's dedup changelog, with
/// one partition count, as the stage's co-partitioning needs. Only Kafka has topics to create ahead of time.
pub async fn create_topics(
    cfg: &Config,
    partitions: u32,
    replication_factor: i32,
) -> anyhow::Result<Vec<(String, &'static str)>> {
    anyhow::ensure!(
        cfg.kafka.enabled(),
        "topics create needs --kafka-brokers (the embedded store creates topics itself)"
    );
    let names = crate::topics::all(cfg);
    let mut done = kafka::create_topics(&cfg.kafka, &names, partitions, replication_factor).await?;
    // The stage's dedup window, compacted; its partition count must be the
    // raw topics' (the stage checks it at start).
    let settings = crate::stage::kafka::changelog::topic_settings(cfg.transform.dedup_window);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let changelog = crate::topics::dedup_changelog(&cfg.transform.group);
    done.extend(
        kafka::create_topics_with(
            &cfg.kafka,
            std::slice::from_ref(&changelog),
            partitions,
            replication_factor,
            &settings,
        )
        .await?,
    );
    Ok(done)
}

fn embedded_stage(stage: Arc<Stage>, cfg: &Config, log: Arc<EmbeddedLog>) -> EmbeddedStage {
    EmbeddedStage {
        stage,
        cfg: StageConfig::from_config(cfg),
        log,
        data_dir: cfg.data_dir.clone(),
        batch: 512,
        poll: Duration::from_millis(20),
        max_lag: cfg.transform.max_lag,
    }
}

/// The stage's exactly-once driver for the backend of a config.
pub enum StageDriver {
    /// Outputs and cursor in one SQLite transaction. `log` and `lock` are
    /// set when the driver opened the store itself (`transform --data-dir`).
    Embedded {
        runner: EmbeddedStage,
        log: Option<Arc<EmbeddedLog>>,
        lock: Option<DirLock>,
    },
    /// A consumer group that recovers from its own output partitions.
    Kafka(KafkaStage),
}

impl StageDriver {
    /// The driver `transform` runs; `batch` is the embedded store's input
    /// records per transaction.
    pub fn open(cfg: &Config, stage: Arc<Stage>, batch: usize) -> anyhow::Result<Self> {
        if cfg.kafka.enabled() {
            return Ok(StageDriver::Kafka(KafkaStage::new(stage, cfg)));
        }
        let lock = DirLock::acquire(&cfg.data_dir, Role::Transform)?;
        let log = open_embedded(cfg)?;
        let mut runner = embedded_stage(stage, cfg, log.clone());
        runner.batch = batch;
        Ok(StageDriver::Embedded {
            runner,
            log: Some(log),
            lock: Some(lock),
        })
    }

    /// For the announcement line: where the stage reads.
    pub fn describe(&self, cfg: &Config) -> String {
        match self {
            StageDriver::Embedded { .. } => {
                format!("reading the embedded store at {}", cfg.data_dir.display())
            }
            StageDriver::Kafka(_) => format!(
                "consuming from kafka at {} (group {})",
                cfg.kafka.brokers, cfg.transform.group
            ),
        }
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        match self {
            StageDriver::Embedded { runner, log, lock } => {
                let result = runner.run(shutdown).await;
                if let Some(log) = log {
                    log.close();
                }
                drop(lock);
                result.context("the embedded transform stage stopped")
            }
            StageDriver::Kafka(stage) => stage
                .run(shutdown)
                .await
                .context("the Kafka transform stage stopped"),
        }
    }
}

/// How far the stage has got, read before the records it describes: what
/// the stage commits after that is then either visible or counted pending.
#[derive(Debug, Clone)]
pub enum StageProgress {
    /// Embedded: the store id of the last raw record the stage has handled.
    Cursor(i64),
    /// Kafka: the group's committed offsets; `None` if they could not be read.
    Committed(Option<HashMap<(String, i32), i64>>),
}

impl StageProgress {
    /// Reads the progress of the stage group of `cfg`, with notes for the
    /// operator when there is none to read.
    pub fn read(cfg: &Config, inputs: &[String]) -> anyhow::Result<(Self, Vec<String>)> {
        let group = &cfg.transform.group;
        let mut notes = Vec::new();
        if !cfg.kafka.enabled() {
            let reader = EmbeddedReader::open(&cfg.data_dir).with_context(|| {
                format!("opening the embedded store in {}", cfg.data_dir.display())
            })?;
            let cursor = progress::cursor(reader.connection(), group)?;
            if cursor == 0 {
                notes.push(format!(
                    "the stage (cursor {group:?}) has not processed anything yet"
                ));
            }
            return Ok((StageProgress::Cursor(cursor), notes));
        }
        let topics = kafka::list_topics(&cfg.kafka)?;
        let committed = match crate::stage::kafka::committed_offsets(
            &cfg.kafka, group, &topics, inputs,
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                notes.push(format!(
                    "cannot read the committed offsets of consumer group {group:?} ({e}): raw records the stage has not reached yet are reported as missing"
                ));
                None
            }
        };
        Ok((StageProgress::Committed(committed), notes))
    }

    /// True if the stage has not reached this raw record yet.
    pub fn pending(&self, r: &StoredRecord) -> bool {
        match self {
            StageProgress::Cursor(cursor) => r.id > *cursor,
            StageProgress::Committed(committed) => match committed {
                // No committed offset: the group has finished nothing there yet.
                Some(c) => c
                    .get(&(r.topic.clone(), r.partition))
                    .is_none_or(|next| r.offset >= *next),
                None => false,
            },
        }
    }

    pub fn is_kafka(&self) -> bool {
        matches!(self, StageProgress::Committed(_))
    }
}
