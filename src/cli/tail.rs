//! `hl7bridge tail`.

use std::process::ExitCode;

use clap::Args;

use super::StoreArgs;
use crate::app::tail::{Format, TailOptions};
use crate::log::Start;

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read, e.g. hl7v2.adt or fhir.observation.
    topic: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Start at the first record instead of the end.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records (after filtering).
    #[arg(long)]
    max: Option<u64>,
    /// Keep waiting for new records (the default unless --from-beginning is given).
    #[arg(long)]
    follow: bool,
    /// Output format [default: fhir on the FHIR topics, json elsewhere].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Only records with this key (a patient key, e.g. GENHOSP|MRN10001).
    #[arg(long)]
    key: Option<String>,
    /// Only records written at or after this: an age (10m, 2h) or an RFC 3339 time.
    #[arg(long, value_parser = crate::config::parse_instant)]
    since: Option<i64>,
    /// Schema registry for --format fhir [default: the embedded one in --data-dir].
    #[arg(long, env = "HL7BRIDGE_SCHEMA_REGISTRY_URL")]
    schema_registry_url: Option<String>,
}

pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = args.store.config()?;
    if let Some(url) = &args.schema_registry_url {
        cfg.transform.schema_registry_url = url.clone();
    }
    let opts = TailOptions {
        topic: args.topic,
        start: if args.from_beginning {
            Start::Beginning
        } else {
            Start::End
        },
        follow: args.follow || !args.from_beginning,
        format: args.format,
        key: args.key,
        since: args.since,
        max: args.max,
    };
    crate::app::tail::tail(&cfg, opts)?;
    Ok(ExitCode::SUCCESS)
}
