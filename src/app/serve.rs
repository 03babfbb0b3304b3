//! `serve`: the listener, the store, the in-process stage, the registry and
//! the operator's endpoints, started in that order and stopped in reverse.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use crate::config::Config;
use crate::intake::{Intake, IntakeConfig};
use crate::server::{Admission, ConnectionLimits, IpAllowlist, Security, Server, TlsListener};

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

/// Runs until SIGTERM or SIGINT, then drains the listener before stopping
/// the rest.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let security = security(&cfg)?;
    let backend = Backend::open(&cfg)?;
    backend.ensure_topics(&cfg);
    // Every listener is bound before anything is announced: a clash is one
    // error at start, not one per restart.
    let listener = super::listen::bind(
        &cfg.listen.to_string(),
        "the MLLP listener",
        "listen",
        "--listen",
    )
    .await?;
    let listeners = super::listen::Listeners::bind(&cfg, "metrics_listen").await?;
    let server = Server {
        listener,
        intake: Arc::new(Intake::new(IntakeConfig::from_config(&cfg)?)),
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
        super::backend::describe_store(&cfg),
        match &security.tls {
            Some(t) if t.mutual() => ", TLS with client certificates",
            Some(_) => ", TLS",
            None => "",
        }
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::shutdown::on_signal(shutdown.clone()));
    // The registry and the stage stop after the listener has drained.
    let background = CancellationToken::new();
    let (registry, registry_http) =
        super::registry::open_and_serve(&cfg, listeners.registry, background.clone()).await?;
    let stage = if backend.runs_stage(&cfg) {
        let stage = Arc::new(super::stage::build(&cfg, &registry).await?);
        backend
            .in_process_stage(&cfg, stage)
            .map(|driver| tokio::spawn(driver.run(background.clone())))
    } else {
        None
    };
    let retention = backend.start_retention(&cfg, background.clone());
    let metrics = super::metrics::start(
        &cfg,
        listeners.metrics,
        Some(Arc::new(registry)),
        background.clone(),
    )
    .await?;
    server.run_with(security, shutdown).await;
    background.cancel();
    if let Some(stage) = stage {
        match stage.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "transform stage failed"),
            Err(e) => tracing::error!(error = %e, "transform stage panicked"),
        }
    }
    for h in [registry_http, metrics, retention].into_iter().flatten() {
        let _ = h.await;
    }
    backend.close();
    tracing::info!("stopped cleanly");
    Ok(())
}
