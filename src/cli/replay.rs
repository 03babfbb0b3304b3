//! `hl7bridge replay FILE|DIR... --to HOST:PORT`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;

use crate::hl7::message::{read, ReadOptions};
use crate::hl7::split;
use crate::replay::{self, Progress, ReplayOptions, Report};
use crate::server::tls::{ClientTlsOptions, TlsClient};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Files or directories (read recursively, in sorted order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// MLLP listener to send to.
    #[arg(long, default_value = "127.0.0.1:2575")]
    to: String,
    /// Concurrent connections; each waits for an ACK before sending its next message.
    #[arg(long, short = 'c', default_value_t = 1)]
    connections: usize,
    /// Messages per second across all connections (default: as fast as ACKs come).
    #[arg(long)]
    rate: Option<f64>,
    /// Send the whole set this many times.
    #[arg(long, default_value_t = 1)]
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

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let files = split::files(&args.paths).context("reading input paths")?;
    let mut messages = Vec::new();
    for f in &files {
        let content = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        messages.extend(
            split::split(&content)
                .into_iter()
                .enumerate()
                .map(|(i, m)| (f.clone(), i + 1, m)),
        );
    }
    if args.dry_run {
        return Ok(dry_run(&files, &messages));
    }
    anyhow::ensure!(
        !messages.is_empty(),
        "no messages found in {} file(s)",
        files.len()
    );
    let tls = match &args.tls_ca {
        Some(_) => Some(
            TlsClient::new(
                &ClientTlsOptions {
                    ca: args.tls_ca.clone(),
                    cert: args.tls_cert.clone(),
                    key: args.tls_key.clone(),
                    server_name: args.tls_server_name.clone(),
                },
                host_of(&args.to),
            )
            .context("setting up TLS")?,
        ),
        None => None,
    };
    let to = tokio::net::lookup_host(&args.to);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let to = rt
        .block_on(to)
        .with_context(|| format!("resolving {}", args.to))?
        .next()
        .with_context(|| format!("{} did not resolve", args.to))?;
    let opts = ReplayOptions {
        to,
        connections: args.connections,
        rate: args.rate,
        repeat: args.repeat,
        unique_control_ids: args.unique_control_ids,
        timeout: args.timeout,
    };
    let bodies: Arc<Vec<Bytes>> = Arc::new(messages.into_iter().map(|(_, _, m)| m).collect());
    let total = (bodies.len() * args.repeat.max(1)) as u64;
    let progress = Arc::new(Progress::default());
    let report = rt.block_on(async {
        let shown = tokio::spawn(show_progress(progress.clone(), total));
        let report = replay::run_with(bodies, opts, tls, progress.clone()).await;
        shown.abort();
        report
    });
    print_summary(&report);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.accepted == report.sent {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(to: &str) -> &str {
    let host = to.rsplit_once(':').map_or(to, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

async fn show_progress(p: Arc<Progress>, total: u64) {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        loop {
            bar.set_position(p.done.load(Ordering::Relaxed));
            bar.set_message(format!(
                "not accepted: {}",
                p.not_accepted.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            eprintln!(
                "replay: {}/{} sent, {} not accepted",
                p.done.load(Ordering::Relaxed),
                total,
                p.not_accepted.load(Ordering::Relaxed)
            );
        }
    }
}

fn print_summary(r: &Report) {
    let codes = [
        "AA", "AE", "AR", "CA", "CE", "CR", "timeout", "mismatch", "error",
    ];
    println!(
        "{:<16} {:>8} {}",
        "MESSAGE TYPE",
        "SENT",
        codes.map(|c| format!("{c:>8}")).join("")
    );
    for (kind, counts) in &r.by_type {
        let sent: u64 = counts.values().sum();
        let cols: String = codes
            .iter()
            .map(|c| format!("{:>8}", counts.get(*c).copied().unwrap_or(0)))
            .collect();
        println!("{kind:<16} {sent:>8} {cols}");
    }
    let cols: String = codes
        .iter()
        .map(|c| format!("{:>8}", r.outcomes.get(*c).copied().unwrap_or(0)))
        .collect();
    println!("{:<16} {:>8} {cols}", "total", r.sent);
    println!(
        "{:.0} msgs/s over {:.2} s; ACK latency ms: p50 {:.3}, p90 {:.3}, p99 {:.3}, max {:.3}",
        r.msgs_per_s,
        r.elapsed_s,
        r.latency_ms.p50,
        r.latency_ms.p90,
        r.latency_ms.p99,
        r.latency_ms.max
    );
}

/// Splits and checks without sending. Problems are reported by file and
/// message number, never by content.
fn dry_run(files: &[PathBuf], messages: &[(PathBuf, usize, Bytes)]) -> ExitCode {
    let mut by_type = std::collections::BTreeMap::<String, u64>::new();
    let mut problems = 0;
    for (file, i, m) in messages {
        match read(m, ReadOptions::default()) {
            Ok(p) => {
                *by_type
                    .entry(format!(
                        "{}^{}",
                        p.header.message_type, p.header.trigger_event
                    ))
                    .or_default() += 1
            }
            Err(e) => {
                problems += 1;
                println!("{}: message {i}: {e}", file.display());
            }
        }
    }
    println!(
        "{} file(s), {} message(s), {} with problems",
        files.len(),
        messages.len(),
        problems
    );
    for (kind, n) in by_type {
        println!("  {kind:<16} {n}");
    }
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
