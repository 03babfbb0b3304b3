//! `hl7bridge convert FILE|DIR...`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::input::InputArgs;
use crate::app::convert::Format;

/// Exit status: 0 when every message was mapped, 1 when some was not (or
/// only partly) or some input was dropped, 2 when nothing could be read.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    input: InputArgs,
    #[arg(long, value_enum, default_value = "ndjson")]
    format: Format,
    /// Code tables to use instead of the built-in mappings/tables.toml.
    #[arg(long)]
    mappings: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let mapped = crate::app::convert::convert(
        &args.input.paths,
        &args.input.discovery(),
        args.input.verbose,
        args.format,
        args.mappings.as_deref(),
    )?;
    Ok(if mapped {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
