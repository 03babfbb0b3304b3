//! `transform`: the stage as its own process, on Kafka (a consumer group)
//! or on the embedded store of `data_dir`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::backend::StageDriver;
use crate::config::Config;

/// Runs until SIGTERM or SIGINT. `batch`: input records per transaction on
/// the embedded store.
pub async fn transform(cfg: Config, batch: usize) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::shutdown::on_signal(shutdown.clone()));
    let listeners = super::listen::Listeners::bind(&cfg, "transform.metrics_listen").await?;
    let (registry, http) =
        super::registry::open_and_serve(&cfg, listeners.registry, shutdown.clone()).await?;
    let stage = Arc::new(super::stage::build(&cfg, &registry).await?);
    let metrics = super::metrics::start(
        &cfg,
        listeners.metrics,
        Some(Arc::new(registry)),
        shutdown.clone(),
    )
    .await?;
    let driver = StageDriver::open(&cfg, stage, batch)?;
    println!("hl7bridge transform {}", driver.describe(&cfg));
    driver.run(shutdown.clone()).await?;
    shutdown.cancel();
    for h in [http, metrics].into_iter().flatten() {
        let _ = h.await;
    }
    Ok(())
}
