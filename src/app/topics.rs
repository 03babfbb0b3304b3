//! `topics`: list topics with their partitions and record counts, or create
//! them on Kafka.

use crate::config::Config;
use crate::record::TopicSummary;

/// Prints every topic of the log of `cfg`.
pub fn list(cfg: &Config) -> anyhow::Result<()> {
    print_table(&super::backend::reader(cfg)?.topics()?);
    Ok(())
}

/// Creates the raw and FHIR topics (Kafka only), prints what was done,
/// then the table. Says on stderr what it is waiting for, and gives up
/// after `timeout` (an unreachable broker otherwise costs a silent minute).
pub fn create(
    cfg: &Config,
    partitions: u32,
    replication_factor: i32,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    eprintln!(
        "creating {} topics ({partitions} partitions, replication factor {replication_factor}) on {}; waiting up to {}",
        crate::topics::all(cfg).len(),
        super::backend::describe_store(cfg),
        humantime::format_duration(timeout)
    );
    let results = rt
        .block_on(async {
            tokio::time::timeout(
                timeout,
                super::backend::create_topics(cfg, partitions, replication_factor),
            )
            .await
        })
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer from the brokers at {} within {}: check the address and that a broker is up, or give more time with --timeout",
                cfg.kafka.brokers,
                humantime::format_duration(timeout)
            )
        })??;
    for (name, what) in results {
        println!("{name}: {what}");
    }
    list(cfg)
}

fn print_table(topics: &[TopicSummary]) {
    println!("{:<32} {:>10} {:>12}", "TOPIC", "PARTITIONS", "RECORDS");
    for t in topics {
        println!("{:<32} {:>10} {:>12}", t.name, t.partitions, t.records);
    }
}
