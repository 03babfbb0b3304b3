//! `hl7bridge reconcile`: see [`crate::reconcile`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{IntakeArgs, StageArgs, StoreArgs};
use crate::config::Config;
use crate::reconcile::Options;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only raw records written at or after this: an age (2h, 7d) or an RFC 3339 time.
    #[arg(long, value_parser = crate::config::parse_instant)]
    since: Option<i64>,
    /// Only raw records written at or before this: an age (10m) or an RFC 3339 time.
    #[arg(long, value_parser = crate::config::parse_instant)]
    until: Option<i64>,
    /// Print the summary and the findings as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    intake: IntakeArgs,
    #[command(flatten)]
    stage: StageArgs,
    /// Also write the gap counts to FILE, atomically, in the Prometheus
    /// textfile-collector format (name it *.prom in the collector's directory).
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Re-drive missing and partial raw records through the transform and
    /// append the outputs they lack, then check again (embedded store only).
    #[arg(long)]
    repair: bool,
}

impl ReconcileArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = self.store.config()?;
        self.intake.apply(&mut c);
        self.stage.apply(&mut c);
        c.validate()?;
        Ok(c)
    }
}

pub fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    let opts = Options {
        since: args.since,
        until: args.until,
        json: args.json,
        metrics_file: args.metrics_file.clone(),
        repair: args.repair,
    };
    Ok(if crate::reconcile::run(&cfg, &opts)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
