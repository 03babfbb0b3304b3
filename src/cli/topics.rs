//! `hl7bridge topics [create]`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::StoreArgs;
use crate::log::embedded::{EmbeddedReader, TopicSummary};
use crate::log::kafka;

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Create the raw and FHIR topics on Kafka, all with the same partition
    /// count (co-partitioned, as the stage's exactly-once needs). Idempotent:
    /// existing topics are kept.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// Partitions per topic [default: the config's `partitions`, 6].
        #[arg(long)]
        partitions: Option<u32>,
        /// Replication factor [default: the config's kafka.replication_factor, 3].
        #[arg(long)]
        replication_factor: Option<i32>,
    },
}

/// The raw topics the bridge writes: adt, oru, orm, dlq and any accepted extras.
pub fn raw_topics(cfg: &crate::config::Config) -> Vec<String> {
    let mut names: Vec<String> = ["adt", "oru", "orm", "dlq"]
        .iter()
        .map(|t| format!("{}{t}", cfg.topic_prefix))
        .collect();
    for t in &cfg.accept_types {
        let name = format!("{}{}", cfg.topic_prefix, t.to_ascii_lowercase());
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

pub fn run(args: TopicsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(Action::Create {
            store,
            partitions,
            replication_factor,
        }) => {
            let cfg = store.config()?;
            anyhow::ensure!(
                cfg.kafka.enabled(),
                "topics create needs --kafka-brokers (the embedded store creates topics itself)"
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let partitions = partitions.unwrap_or(cfg.partitions);
            let rf = replication_factor.unwrap_or(cfg.kafka.replication_factor());
            let mut names = raw_topics(&cfg);
            let stage = super::transform::stage_config(&cfg);
            names.extend(stage.topics().all().iter().map(|t| t.to_string()));
            let results = rt.block_on(kafka::create_topics(&cfg.kafka, &names, partitions, rf))?;
            for (name, what) in results {
                println!("{name}: {what}");
            }
            print_table(&kafka::list_topics(&cfg.kafka)?);
        }
        None => {
            let cfg = args.store.config()?;
            let topics = if cfg.kafka.enabled() {
                kafka::list_topics(&cfg.kafka)?
            } else {
                EmbeddedReader::open(&cfg.data_dir)?.topics()?
            };
            print_table(&topics);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(topics: &[TopicSummary]) {
    println!("{:<32} {:>10} {:>12}", "TOPIC", "PARTITIONS", "RECORDS");
    for t in topics {
        println!("{:<32} {:>10} {:>12}", t.name, t.partitions, t.records);
    }
}
