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
/// then the table.
pub fn create(cfg: &Config, partitions: u32, replication_factor: i32) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(super::backend::create_topics(
        cfg,
        partitions,
        replication_factor,
    ))?;
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
