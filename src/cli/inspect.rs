//! `hl7bridge inspect FILE|DIR...`: every message as a readable tree, with
//! structural problems flagged at their line and column (see
//! [`crate::inspect`]). Exit status: 0 if no message has a problem, 1 if any
//! has one or some input was dropped, 2 if a file cannot be read or there is
//! no message at all.

use std::process::ExitCode;

use clap::Args;

use super::input::InputArgs;
use crate::inspect::{self, Format};

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Print one JSON object per message (JSON Lines) instead of the tree.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let summary = inspect::run(
        &args.input.paths,
        &args.input.discovery(),
        args.input.verbose,
        format,
        &mut out,
        &mut std::io::stderr(),
    )?;
    Ok(
        if summary.with_problems == 0 && summary.input_warnings == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
