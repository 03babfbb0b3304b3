//! Building the stage from a config: its mapper, its registered schemas.

use anyhow::Context;

use crate::config::Config;
use crate::hl7::{Charset, ReadOptions};
use crate::registry::SchemaRegistry;
use crate::stage::{Stage, StageConfig};
use crate::transform::{Mapper, Tables};

/// The mapper the stage runs with: the configured mapping file or the
/// built-in tables, the patient-key identifier types and the charset fallback.
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

/// The stage, with its output schemas registered.
pub async fn build(cfg: &Config, registry: &SchemaRegistry) -> anyhow::Result<Stage> {
    Stage::new(&StageConfig::from_config(cfg), mapper(cfg)?, registry)
        .await
        .context("registering the FHIR Avro schemas")
}
