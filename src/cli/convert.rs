//! `hl7bridge convert FILE|DIR...`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::app::convert::Format;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Files or directories (read recursively, in sorted order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "ndjson")]
    format: Format,
    /// Code tables to use instead of the built-in mappings/tables.toml.
    #[arg(long)]
    mappings: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let mapped = crate::app::convert::convert(&args.paths, args.format, args.mappings.as_deref())?;
    Ok(if mapped {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
