//! `hl7bridge transform`: the streaming stage as its own process, on Kafka
//! (a consumer group) or on the embedded store (`--data-dir`). Also the
//! pieces `serve` uses to run the stage and the registry in-process.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::StoreArgs;
use crate::config::Config;
use crate::hl7::{Charset, ReadOptions};
use crate::log::embedded::{EmbeddedConfig, EmbeddedLog};
use crate::registry::store::RegistryStore;
use crate::registry::{RemoteRegistry, SchemaRegistry};
use crate::stage::embedded::EmbeddedStage;
use crate::stage::kafka::KafkaStage;
use crate::stage::{Stage, StageConfig};
use crate::transform::{Mapper, Tables};

#[derive(Debug, Args)]
pub struct TransformArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stage: StageArgs,
    /// Consumer group (Kafka) or cursor name (embedded) [default: hl7bridge-transform].
    #[arg(long, env = "HL7BRIDGE_TRANSFORM_GROUP")]
    group: Option<String>,
    /// Partitions for output topics created by this command [default: those of the inputs].
    #[arg(long, env = "HL7BRIDGE_PARTITIONS")]
    partitions: Option<u32>,
    /// Raw topic prefix [default: hl7v2.].
    #[arg(long, env = "HL7BRIDGE_TOPIC_PREFIX")]
    topic_prefix: Option<String>,
    /// Run even if output and input partition counts differ: outputs then go
    /// by murmur2(key), and exactly-once is given up (ids stay deterministic).
    #[arg(long)]
    at_least_once: bool,
    /// Input records per transaction on the embedded store [default: 512].
    #[arg(long, default_value_t = 512)]
    batch: usize,
}

/// Stage settings shared by `serve` and `transform`.
#[derive(Debug, Args, Clone)]
pub struct StageArgs {
    /// Output topic prefix [default: fhir.].
    #[arg(long, env = "HL7BRIDGE_OUTPUT_PREFIX")]
    output_prefix: Option<String>,
    /// Mapping file replacing the built-in mappings/tables.toml.
    #[arg(long, env = "HL7BRIDGE_MAPPINGS")]
    mappings: Option<std::path::PathBuf>,
    /// Confluent-compatible schema registry URL; without it the embedded registry is used.
    #[arg(long, env = "HL7BRIDGE_SCHEMA_REGISTRY_URL")]
    schema_registry_url: Option<String>,
    /// Where the embedded registry serves its HTTP API ("" for nowhere) [default: 127.0.0.1:8081].
    #[arg(long, env = "HL7BRIDGE_REGISTRY_LISTEN")]
    registry_listen: Option<String>,
    /// Where /metrics, /healthz and /readyz are served ("" for nowhere) [default: 127.0.0.1:9464].
    #[arg(long, env = "HL7BRIDGE_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Sender duplicates are emitted once within this window, e.g. 7d [default: 7d].
    #[arg(long, env = "HL7BRIDGE_DEDUP_WINDOW", value_parser = humantime::parse_duration)]
    dedup_window: Option<Duration>,
}

impl StageArgs {
    pub fn apply(&self, c: &mut Config) {
        let t = &mut c.transform;
        if let Some(v) = &self.output_prefix {
            t.output_prefix = v.clone();
        }
        if let Some(v) = &self.mappings {
            t.mappings = Some(v.clone());
        }
        if let Some(v) = &self.schema_registry_url {
            t.schema_registry_url = v.clone();
        }
        if let Some(v) = &self.registry_listen {
            t.registry_listen = v.clone();
        }
        if let Some(v) = self.dedup_window {
            t.dedup_window = v;
        }
        if let Some(v) = &self.metrics_listen {
            c.metrics_listen = v.clone();
        }
    }
}

pub fn run(args: TransformArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = args.store.config()?;
    args.stage.apply(&mut cfg);
    if let Some(v) = &args.group {
        cfg.transform.group = v.clone();
    }
    if let Some(v) = args.partitions {
        cfg.partitions = v;
    }
    if let Some(v) = &args.topic_prefix {
        cfg.topic_prefix = v.clone();
    }
    cfg.transform.at_least_once |= args.at_least_once;
    cfg.validate()?;
    crate::telemetry::init(&cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(transform(cfg, args.batch))?;
    Ok(ExitCode::SUCCESS)
}

async fn transform(cfg: Config, batch: usize) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(super::serve::signal_on_shutdown(shutdown.clone()));
    let (registry, http) = open_registry(&cfg, shutdown.clone()).await?;
    let stage = Arc::new(build_stage(&cfg, &registry).await?);
    let metrics = start_metrics(&cfg, Some(Arc::new(registry)), shutdown.clone()).await?;
    if cfg.kafka.enabled() {
        println!(
            "hl7bridge transform consuming from kafka at {} (group {})",
            cfg.kafka.brokers, cfg.transform.group
        );
        KafkaStage::new(stage, &cfg)
            .run(shutdown.clone())
            .await
            .context("the Kafka transform stage stopped")?;
    } else {
        let mut store = EmbeddedConfig::new(&cfg.data_dir);
        store.partitions = cfg.partitions;
        let log = Arc::new(EmbeddedLog::open(store).with_context(|| {
            format!("opening the embedded store in {}", cfg.data_dir.display())
        })?);
        println!(
            "hl7bridge transform reading the embedded store at {}",
            cfg.data_dir.display()
        );
        let mut runner = embedded_stage(stage, &cfg, log.clone());
        runner.batch = batch;
        let result = runner.run(shutdown.clone()).await;
        log.close();
        result.context("the embedded transform stage stopped")?;
    }
    shutdown.cancel();
    for h in [http, metrics].into_iter().flatten() {
        let _ = h.await;
    }
    Ok(())
}

pub fn embedded_stage(stage: Arc<Stage>, cfg: &Config, log: Arc<EmbeddedLog>) -> EmbeddedStage {
    EmbeddedStage {
        stage,
        cfg: stage_config(cfg),
        log,
        data_dir: cfg.data_dir.clone(),
        batch: 512,
        poll: Duration::from_millis(20),
    }
}

pub fn stage_config(cfg: &Config) -> StageConfig {
    StageConfig::from_config(cfg)
}

pub fn mapper(cfg: &Config) -> anyhow::Result<Mapper> {
    let tables = match &cfg.transform.mappings {
        Some(p) => Tables::load(p).with_context(|| format!("loading mappings {}", p.display()))?,
        None => Tables::builtin(),
    };
    Ok(Mapper {
        tables,
        patient_id_types: cfg.patient_id_types.clone(),
        read: ReadOptions {
            charset_fallback: Charset::fallback_from_config(&cfg.charset_fallback)?,
        },
    })
}

pub async fn build_stage(cfg: &Config, registry: &SchemaRegistry) -> anyhow::Result<Stage> {
    Stage::new(&stage_config(cfg), mapper(cfg)?, registry)
        .await
        .context("registering the FHIR Avro schemas")
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `metrics_listen`, unless empty.
pub async fn start_metrics(
    cfg: &Config,
    registry: Option<Arc<SchemaRegistry>>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let listen = cfg.metrics_listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    let handle =
        crate::metrics::install().map_err(|e| anyhow::anyhow!("installing metrics: {e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics endpoint to {listen}"))?;
    println!("hl7bridge metrics on http://{}", listener.local_addr()?);
    let ready = crate::metrics::Readiness {
        store: (!cfg.kafka.enabled()).then(|| cfg.data_dir.clone()),
        kafka: cfg.kafka.enabled().then(|| cfg.kafka.clone()),
        registry,
    };
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = crate::metrics::serve(listener, handle, ready, shutdown).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    })))
}

/// The registry named by the config, or the embedded one in the data
/// directory, whose HTTP API is then served on `registry_listen`.
pub async fn open_registry(
    cfg: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SchemaRegistry, Option<tokio::task::JoinHandle<()>>)> {
    let url = cfg.transform.schema_registry_url.trim();
    if !url.is_empty() {
        let remote = RemoteRegistry::new(url).context("configuring the schema registry client")?;
        return Ok((SchemaRegistry::Remote(remote), None));
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let path = cfg.data_dir.join(crate::registry::store::DB_FILE);
    let store = Arc::new(
        RegistryStore::open(&path)
            .with_context(|| format!("opening the schema registry in {}", path.display()))?,
    );
    let listen = cfg.transform.registry_listen.trim();
    let http = if listen.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the schema registry to {listen}"))?;
        println!(
            "hl7bridge schema registry on http://{}",
            listener.local_addr()?
        );
        let store = store.clone();
        Some(tokio::spawn(async move {
            if let Err(e) = crate::registry::http::serve(listener, store, shutdown).await {
                tracing::error!(error = %e, "schema registry HTTP server failed");
            }
        }))
    };
    Ok((SchemaRegistry::Embedded(store), http))
}
