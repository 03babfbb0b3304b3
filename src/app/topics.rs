//! `topics`: list topics with their partitions and record counts, create
//! them on Kafka, or migrate their value schemas once.

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

/// Registers the current FHIR schemas under every FHIR topic's subject,
/// with the one-time override for numeric decimals
/// ([`crate::registry::migration`]); prints what was done per subject.
pub fn migrate_schemas(cfg: &Config) -> anyhow::Result<()> {
    use anyhow::Context;

    use crate::registry::migration::{self, Migrated};
    use crate::registry::store::DB_FILE;
    use crate::registry::{topic_name_subject, SchemaRegistry};

    if cfg.transform.schema_registry_url.trim().is_empty() && !cfg.data_dir.join(DB_FILE).exists() {
        println!(
            "no embedded schema registry in {}: nothing to migrate (the stage registers the \
             current schemas when it starts)",
            cfg.data_dir.display()
        );
        return Ok(());
    }
    let SchemaRegistry::Embedded(store) =
        super::registry::open(cfg, super::registry::Missing::Fail)?
    else {
        anyhow::bail!(
            "the migration runs against the embedded registry only; on the registry at {url}, \
             for each subject the stage refuses: PUT {url}/config/<subject> \
             {{\"compatibility\": \"NONE\"}}, start the stage once (it registers the new \
             version), then DELETE {url}/config/<subject> (or PUT the level it had back)",
            url = cfg
                .transform
                .schema_registry_url
                .trim()
                .trim_end_matches('/')
        );
    };
    let topics = crate::stage::StageConfig::from_config(cfg).topics();
    for (topic, (_, avsc)) in topics
        .by_resource()
        .iter()
        .zip(crate::avro::RESOURCE_SCHEMAS)
    {
        let subject = topic_name_subject(topic);
        let done = migration::migrate(&store, &subject, avsc)
            .with_context(|| format!("migrating the schema of {subject}"))?;
        match done {
            Migrated::Current { version, id } => {
                println!("{subject}: already current (version {version}, id {id})")
            }
            Migrated::Registered { version, id } => {
                println!("{subject}: registered (version {version}, id {id})")
            }
            Migrated::Migrated { version, id } => println!(
                "{subject}: migrated to numeric decimals (version {version}, id {id}); records \
                 written before keep their schema id"
            ),
        }
    }
    Ok(())
}

fn print_table(topics: &[TopicSummary]) {
    println!("{:<32} {:>10} {:>12}", "TOPIC", "PARTITIONS", "RECORDS");
    for t in topics {
        println!("{:<32} {:>10} {:>12}", t.name, t.partitions, t.records);
    }
}
