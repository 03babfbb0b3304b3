//! `hl7bridge topics [create | migrate-schemas]`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{StageArgs, StoreArgs};

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Create the raw and FHIR topics on Kafka, and the stage's compacted
    /// dedup changelog (`<group>-dedup-changelog`), all with the same
    /// partition count (co-partitioned, as the stage's exactly-once needs).
    /// Idempotent: existing topics are kept.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// Partitions per topic [default: the config's `partitions`, 6].
        #[arg(long)]
        partitions: Option<u32>,
        /// Replication factor [default: the config's kafka.replication_factor, 3].
        #[arg(long)]
        replication_factor: Option<i32>,
        /// Give up when the brokers have not answered within this, e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Register the current FHIR Avro schemas once, letting through the one
    /// change that is not BACKWARD-compatible: FHIR decimals turning from
    /// strings into numbers (schema version 3). Run it when `serve` or
    /// `transform` refuses to start and says so. Idempotent.
    MigrateSchemas {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        stage: StageArgs,
    },
}

pub fn run(args: TopicsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(Action::Create {
            store,
            partitions,
            replication_factor,
            timeout,
        }) => {
            let cfg = store.config()?;
            let partitions = partitions.unwrap_or(cfg.partitions);
            let rf = replication_factor.unwrap_or(cfg.kafka.replication_factor());
            crate::app::topics::create(&cfg, partitions, rf, timeout)?;
        }
        Some(Action::MigrateSchemas { store, stage }) => {
            let mut cfg = store.config()?;
            stage.apply(&mut cfg);
            crate::app::topics::migrate_schemas(&cfg)?;
        }
        None => crate::app::topics::list(&args.store.config()?)?,
    }
    Ok(ExitCode::SUCCESS)
}
