//! `hl7bridge replay FILE|DIR... --to HOST:PORT`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::input::InputArgs;
use crate::app::replay::{Ended, ReplayJob};
use crate::server::tls::ClientTlsOptions;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    input: InputArgs,
    /// MLLP listeners to send to, in failover order: HOST:PORT[,HOST:PORT...].
    /// A refused connect, a lost connection or an ACK time-out moves to the
    /// next one, and the message is sent again there.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2575")]
    to: Vec<String>,
    /// Sends per message at most, the first included; each failed attempt
    /// moves to the next --to endpoint [default: 3, or one more than the
    /// endpoints when there are more, so each is tried].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: Option<u32>,
    /// Send a message answered AE or CE again (AR and CR are never resent).
    #[arg(long)]
    resend_error_acks: bool,
    /// A previous --report: skip the messages it records as accepted (same
    /// file, index in the file and MSH-10).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Concurrent connections; each waits for an ACK before sending its next message.
    #[arg(long, short = 'c', default_value_t = 1, value_parser = at_least_one)]
    connections: usize,
    /// Messages per second across all connections (default: as fast as ACKs come).
    #[arg(long)]
    rate: Option<f64>,
    /// Send the whole set this many times.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    repeat: usize,
    /// Rewrite MSH-10 with a fresh ID per message, so a set can be sent again.
    #[arg(long)]
    unique_control_ids: bool,
    /// How long to wait for each ACK, e.g. 10s.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Split and check the files without sending anything.
    #[arg(long)]
    dry_run: bool,
    /// Connect with TLS, verifying the server against this CA bundle (PEM).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS; needs --tls-key and --tls-ca.
    #[arg(long, requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the server certificate must carry [default: the host of --to].
    #[arg(long, requires = "tls_ca")]
    tls_server_name: Option<String>,
}

/// A count that must be at least 1: 0 would silently mean 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a whole number, got {s:?}")),
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let attempts = args
        .attempts
        .unwrap_or_else(|| 3.max(args.to.len() as u32 + 1));
    let job = ReplayJob {
        discovery: args.input.discovery(),
        verbose: args.input.verbose,
        paths: args.input.paths,
        to: args.to,
        attempts,
        resend_error_acks: args.resend_error_acks,
        resume: args.resume,
        connections: args.connections,
        rate: args.rate,
        repeat: args.repeat,
        unique_control_ids: args.unique_control_ids,
        timeout: args.timeout,
        report: args.report,
        dry_run: args.dry_run,
        tls: ClientTlsOptions {
            ca: args.tls_ca,
            cert: args.tls_cert,
            key: args.tls_key,
            server_name: args.tls_server_name,
        },
    };
    Ok(match crate::app::replay::replay(&job)? {
        Ended::Clean => ExitCode::SUCCESS,
        Ended::Problems => ExitCode::from(1),
        // 128 + SIGINT, as shells report a command Ctrl-C stopped.
        Ended::Interrupted => ExitCode::from(130),
    })
}
