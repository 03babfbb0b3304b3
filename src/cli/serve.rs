//! `hl7bridge serve`.

use std::process::ExitCode;

use clap::Args;

use super::{IntakeArgs, ListenerArgs, RetentionArgs, StageArgs, StoreArgs};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    listener: ListenerArgs,
    #[command(flatten)]
    intake: IntakeArgs,
    #[command(flatten)]
    stage: StageArgs,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Do not run the streaming stage inside serve (run `hl7bridge transform` instead).
    #[arg(long)]
    no_transform: bool,
    /// Partitions of each new topic [default: 6].
    #[arg(long, env = "HL7BRIDGE_PARTITIONS")]
    partitions: Option<u32>,
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = self.store.config()?;
        self.listener.apply(&mut c);
        self.intake.apply(&mut c);
        self.stage.apply(&mut c);
        self.retention.apply(&mut c);
        if self.no_transform {
            c.transform.enabled = false;
        }
        if let Some(v) = self.partitions {
            c.partitions = v;
        }
        c.validate()?;
        Ok(c)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    crate::telemetry::init(&cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::app::serve::serve(cfg))?;
    Ok(ExitCode::SUCCESS)
}
