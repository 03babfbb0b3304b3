//! `hl7bridge inspect FILE|DIR...`: every message as a readable tree, with
//! structural problems flagged at their line and column (see
//! [`crate::inspect`]). Exit status: 0 if no message has a problem, 1 if any
//! has one, 2 if a file cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::inspect::{self, Format};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Files or directories (read recursively, in sorted order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
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
    let summary = inspect::run(&args.paths, format, &mut out, &mut std::io::stderr())?;
    Ok(if summary.with_problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
