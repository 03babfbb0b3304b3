//! `hl7bridge serve`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{transform, ServeArgs};
use crate::config::Config;
use crate::hl7::{Charset, ReadOptions};
use crate::intake::{Intake, IntakeConfig};
use crate::log::embedded::{EmbeddedConfig, EmbeddedLog};
use crate::log::kafka::{self, KafkaLog};
use crate::log::Log;
use crate::server::{Admission, ConnectionLimits, IpAllowlist, Security, Server, TlsListener};

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    crate::telemetry::init(&cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg))?;
    Ok(ExitCode::SUCCESS)
}

pub fn intake_config(cfg: &Config) -> anyhow::Result<IntakeConfig> {
    Ok(IntakeConfig {
        topic_prefix: cfg.topic_prefix.clone(),
        accept_types: cfg.accept_types.clone(),
        patient_id_types: cfg.patient_id_types.clone(),
        read: ReadOptions {
            charset_fallback: Charset::fallback_from_config(&cfg.charset_fallback)?,
        },
    })
}

/// The backend chosen by the config, and what to do with it at shutdown.
enum Backend {
    Embedded(Arc<EmbeddedLog>),
    Kafka(Arc<KafkaLog>),
}

impl Backend {
    fn open(cfg: &Config) -> anyhow::Result<Self> {
        if cfg.kafka.enabled() {
            let log = KafkaLog::new(&cfg.kafka, cfg.ack_timeout)
                .context("configuring the Kafka producer")?;
            return Ok(Backend::Kafka(Arc::new(log)));
        }
        let mut store = EmbeddedConfig::new(&cfg.data_dir);
        store.partitions = cfg.partitions;
        let log = EmbeddedLog::open(store)
            .with_context(|| format!("opening the embedded store in {}", cfg.data_dir.display()))?;
        Ok(Backend::Embedded(Arc::new(log)))
    }

    fn log(&self) -> Arc<dyn Log> {
        match self {
            Backend::Embedded(l) => l.clone(),
            Backend::Kafka(l) => l.clone(),
        }
    }

    fn describe(&self, cfg: &Config) -> String {
        match self {
            Backend::Embedded(_) => format!("embedded store at {}", cfg.data_dir.display()),
            Backend::Kafka(_) => format!("kafka at {}", cfg.kafka.brokers),
        }
    }

    fn close(&self) {
        match self {
            Backend::Embedded(l) => l.close(),
            Backend::Kafka(l) => l.flush(std::time::Duration::from_secs(5)),
        }
    }
}

/// Creates missing raw topics at start, best effort: an unreachable broker
/// must not stop the listener (it answers AE/CE until the broker is back).
async fn ensure_kafka_topics(cfg: Config) {
    let names = super::topics::raw_topics(&cfg);
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

/// TLS and admission control from the config; fails at start on a bad
/// certificate, key, CA or address.
fn security(cfg: &Config) -> anyhow::Result<Security> {
    let tls = TlsListener::from_config(&cfg.tls).context("setting up TLS on the MLLP listener")?;
    let allow = IpAllowlist::parse(&cfg.allow_ips).context("invalid setting allow_ips")?;
    Ok(Security {
        tls: tls.map(Arc::new),
        admission: Arc::new(Admission::new(allow, cfg.max_connections_per_ip)),
    })
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let security = security(&cfg)?;
    let backend = Backend::open(&cfg)?;
    if cfg.kafka.enabled() {
        tokio::spawn(ensure_kafka_topics(cfg.clone()));
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding the MLLP listener to {}", cfg.listen))?;
    let server = Server {
        listener,
        intake: Arc::new(Intake::new(intake_config(&cfg)?)),
        log: backend.log(),
        limits: ConnectionLimits {
            max_message_bytes: cfg.max_message_bytes,
            max_in_flight: cfg.max_in_flight,
            frame_timeout: cfg.frame_timeout,
            idle_timeout: cfg.idle_timeout,
            ack_timeout: cfg.ack_timeout,
        },
        max_connections: cfg.max_connections,
    };
    // One line on stdout for scripts and tests: where we listen, where we store.
    println!(
        "hl7bridge listening on {} ({}{})",
        server.local_addr()?,
        backend.describe(&cfg),
        match &security.tls {
            Some(t) if t.mutual() => ", TLS with client certificates",
            Some(_) => ", TLS",
            None => "",
        }
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_on_shutdown(shutdown.clone()));
    // The registry and the stage stop after the listener has drained.
    let background = CancellationToken::new();
    let (registry, registry_http) = transform::open_registry(&cfg, background.clone()).await?;
    let stage = match &backend {
        Backend::Embedded(log) if cfg.transform.enabled => {
            let stage = Arc::new(transform::build_stage(&cfg, &registry).await?);
            let run = transform::embedded_stage(stage, &cfg, log.clone()).run(background.clone());
            Some(tokio::spawn(run))
        }
        _ => None,
    };
    let metrics =
        transform::start_metrics(&cfg, Some(Arc::new(registry)), background.clone()).await?;
    server.run_with(security, shutdown).await;
    background.cancel();
    if let Some(stage) = stage {
        match stage.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "transform stage failed"),
            Err(e) => tracing::error!(error = %e, "transform stage panicked"),
        }
    }
    for h in [registry_http, metrics].into_iter().flatten() {
        let _ = h.await;
    }
    backend.close();
    tracing::info!("stopped cleanly");
    Ok(())
}

pub(super) async fn signal_on_shutdown(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    token.cancel();
}
