//! The input arguments `replay`, `convert` and `inspect` share.

use std::path::PathBuf;

use clap::Args;

use crate::hl7::files::Discovery;

#[derive(Debug, Args)]
pub struct InputArgs {
    /// Files or directories. A directory means its files with an HL7
    /// extension (.hl7 .hl7v2 .txt .msg .dat, each also .gz), recursively,
    /// in sorted order; a file named here is always read.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Extensions a directory is searched for instead, e.g. --ext hl7,mllp
    /// (each also matches with .gz after it).
    #[arg(long, value_delimiter = ',')]
    pub ext: Vec<String>,
    /// Name every file a directory held that was skipped.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

impl InputArgs {
    pub fn discovery(&self) -> Discovery {
        Discovery::with_extensions(&self.ext)
    }
}
