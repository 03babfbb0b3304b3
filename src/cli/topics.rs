//! `hl7bridge topics`.

use std::process::ExitCode;

use super::StoreArgs;
use crate::log::embedded::EmbeddedReader;

pub fn run(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    let reader = EmbeddedReader::open(&cfg.data_dir)?;
    println!("{:<32} {:>10} {:>12}", "TOPIC", "PARTITIONS", "RECORDS");
    for t in reader.topics()? {
        println!("{:<32} {:>10} {:>12}", t.name, t.partitions, t.records);
    }
    Ok(ExitCode::SUCCESS)
}
