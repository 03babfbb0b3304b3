//! Binding every listener a command opens before it announces anything, so
//! a port clash is one clear error at start, naming the port, the setting
//! that controls it, and how to turn that listener off.

use tokio::net::TcpListener;

use crate::config::Config;

/// The HTTP listeners besides MLLP, bound (or `None` where turned off).
pub struct Listeners {
    pub registry: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the embedded registry's HTTP API (only when no external
    /// registry is configured) and the operator's endpoints on
    /// `cfg.metrics_listen`, which the command took from `metrics_setting`.
    pub async fn bind(cfg: &Config, metrics_setting: &str) -> anyhow::Result<Self> {
        let embedded_registry = cfg.transform.schema_registry_url.trim().is_empty();
        let registry = match embedded_registry {
            true => {
                bind_optional(
                    &cfg.transform.registry_listen,
                    "the embedded schema registry",
                    "transform.registry_listen",
                    "--registry-listen",
                )
                .await?
            }
            false => None,
        };
        let metrics = bind_optional(
            &cfg.metrics_listen,
            "the metrics endpoint",
            metrics_setting,
            "--metrics-listen",
        )
        .await?;
        Ok(Self { registry, metrics })
    }
}

/// Binds `addr`; an error names the setting and flag that move it.
pub async fn bind(
    addr: &str,
    what: &str,
    setting: &str,
    flag: &str,
) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot bind {what} to {addr}: {e}. Set another address with {flag} (setting {setting})"
        )
    })
}

/// Binds `addr`, unless it is empty (the listener turned off); an error
/// also says how to turn it off.
pub async fn bind_optional(
    addr: &str,
    what: &str,
    setting: &str,
    flag: &str,
) -> anyhow::Result<Option<TcpListener>> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Ok(None);
    }
    bind(addr, what, setting, flag)
        .await
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{e}, or {flag} \"\" to turn it off"))
}
