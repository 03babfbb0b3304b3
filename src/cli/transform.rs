//! `hl7bridge transform`: the streaming stage as its own process, on Kafka
//! (a consumer group) or on the embedded store (`--data-dir`).

use std::process::ExitCode;

use clap::Args;

use super::{IntakeArgs, StageArgs, StoreArgs};

#[derive(Debug, Args)]
pub struct TransformArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    intake: IntakeArgs,
    #[command(flatten)]
    stage: StageArgs,
    /// Partitions for output topics created by this command [default: those of the inputs].
    #[arg(long, env = "HL7BRIDGE_PARTITIONS")]
    partitions: Option<u32>,
    /// Run even if output and input partition counts differ: outputs then go
    /// by murmur2(key), and exactly-once is given up (ids stay deterministic).
    #[arg(long)]
    at_least_once: bool,
    /// Input records per transaction on the embedded store [default: 512].
    #[arg(long, default_value_t = 512)]
    batch: usize,
}

pub fn run(args: TransformArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = args.store.config()?;
    args.intake.apply(&mut cfg);
    args.stage.apply(&mut cfg);
    // `transform` has its own metrics port, so it runs beside `serve` on one
    // host; --metrics-listen (or its variable) still moves it.
    if args.stage.metrics_listen.is_none() {
        cfg.metrics_listen = cfg.transform.metrics_listen.clone();
    }
    if let Some(v) = args.partitions {
        cfg.partitions = v;
    }
    cfg.transform.at_least_once |= args.at_least_once;
    cfg.validate()?;
    crate::telemetry::init(&cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::app::transform::transform(cfg, args.batch))?;
    Ok(ExitCode::SUCCESS)
}
