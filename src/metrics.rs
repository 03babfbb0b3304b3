//! The operator's endpoints on `--metrics-listen` (default 127.0.0.1:9464):
//! `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (the store or broker, and the registry, answer; 503 if not).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::internal_events as ev;
use crate::registry::SchemaRegistry;

/// Latency buckets in seconds: sub-millisecond ACKs up to stuck commits.
const LATENCY_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn install() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut b = PrometheusBuilder::new();
            for name in [ev::ACK_LATENCY, ev::STORE_COMMIT, ev::END_TO_END] {
                b = b
                    .set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(name.to_owned()),
                        LATENCY_BUCKETS,
                    )
                    .map_err(|e| e.to_string())?;
            }
            b.install_recorder().map_err(|e| e.to_string())
        })
        .clone()
}

/// A blocking check: `Ok` or what is wrong, in words for the operator.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    /// The check's name in the answer: `store` or `kafka`.
    pub log_name: &'static str,
    /// Whether the log answers (through a `LogReader`).
    pub log: Check,
    pub registry: Option<Arc<SchemaRegistry>>,
}

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    ready: Readiness,
}

/// Serves the endpoints until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    ready: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "metrics and health endpoints listening");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { handle, ready });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.handle.render(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let mut record = |name: &str, result: Result<(), String>| {
        ready &= result.is_ok();
        checks.insert(
            name.to_owned(),
            match result {
                Ok(()) => json!("ok"),
                Err(e) => json!(e),
            },
        );
    };
    let log = s.ready.log.clone();
    record(s.ready.log_name, blocking(move || log()).await);
    if let Some(reg) = &s.ready.registry {
        record("registry", check_registry(reg).await);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "checks": checks})))
}

async fn blocking(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<(), String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

/// Any answer from the registry, even "no such schema", means it is up.
async fn check_registry(reg: &SchemaRegistry) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), reg.schema_by_id(0)).await {
        Err(_) => Err("registry did not answer in 2 s".into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.error_code() / 100 == 404 => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
    }
}
