//! Starting the operator's endpoints (`/metrics`, `/healthz`, `/readyz`).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Readiness;
use crate::registry::SchemaRegistry;

/// Serves the endpoints on `listener` (bound from `metrics_listen`, none
/// when it is empty) until `shutdown`. `/readyz` checks the log through a
/// reader of its own, and the registry.
pub async fn start(
    cfg: &Config,
    listener: Option<tokio::net::TcpListener>,
    registry: Option<Arc<SchemaRegistry>>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let handle =
        crate::metrics::install().map_err(|e| anyhow::anyhow!("installing metrics: {e}"))?;
    println!("hl7bridge metrics on http://{}", listener.local_addr()?);
    // A reader per check: `transform` starts this before its store exists,
    // and a store removed later must show as not ready.
    let log_cfg = cfg.clone();
    let check_log = move || -> Result<(), String> {
        super::backend::reader(&log_cfg)
            .map_err(|e| e.root_cause().to_string())?
            .check()
    };
    let ready = Readiness {
        log_name: if cfg.kafka.enabled() {
            "kafka"
        } else {
            "store"
        },
        log: Arc::new(check_log),
        registry,
    };
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = crate::metrics::serve(listener, handle, ready, shutdown).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    })))
}
