//! The schema registry a config names: a Confluent-compatible one by URL, or
//! the embedded one in the data directory, whose HTTP API `serve` and
//! `transform` also serve on `registry_listen`.

use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::registry::store::{RegistryStore, DB_FILE};
use crate::registry::{RemoteRegistry, SchemaRegistry};

/// Whether a missing embedded registry is created (a writer starting) or an
/// error (a reader such as `tail`, which has nothing to decode with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Create,
    Fail,
}

/// The registry client of `cfg`.
pub fn open(cfg: &Config, missing: Missing) -> anyhow::Result<SchemaRegistry> {
    let url = cfg.transform.schema_registry_url.trim();
    if !url.is_empty() {
        let remote = RemoteRegistry::new(url).context("configuring the schema registry client")?;
        return Ok(SchemaRegistry::Remote(remote));
    }
    let path = cfg.data_dir.join(DB_FILE);
    match missing {
        Missing::Create => std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?,
        Missing::Fail => anyhow::ensure!(
            path.exists(),
            "no embedded schema registry at {}; give --schema-registry-url",
            path.display()
        ),
    }
    let store = RegistryStore::open(&path)
        .with_context(|| format!("opening the schema registry in {}", path.display()))?;
    Ok(SchemaRegistry::Embedded(Arc::new(store)))
}

/// The registry of `cfg`, and its HTTP API served on `listener` until
/// `shutdown` when it is the embedded one and `registry_listen` is set.
pub async fn open_and_serve(
    cfg: &Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SchemaRegistry, Option<JoinHandle<()>>)> {
    let registry = open(cfg, Missing::Create)?;
    let (SchemaRegistry::Embedded(store), Some(listener)) = (&registry, listener) else {
        return Ok((registry, None));
    };
    println!(
        "hl7bridge schema registry on http://{}",
        listener.local_addr()?
    );
    let store = store.clone();
    let http = tokio::spawn(async move {
        if let Err(e) = crate::registry::http::serve(listener, store, shutdown).await {
            tracing::error!(error = %e, "schema registry HTTP server failed");
        }
    });
    Ok((registry, Some(http)))
}
