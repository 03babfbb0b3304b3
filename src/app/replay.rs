//! `replay`: send files of HL7 messages over MLLP and check every ACK; the
//! analyst's tool and the project's load generator.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

use crate::hl7::message::{read, ReadOptions};
use crate::hl7::split;
use crate::replay::{self, Progress, ReplayOptions, Report};
use crate::server::tls::{ClientTlsOptions, TlsClient};

/// What to send, where, and how.
#[derive(Debug, Clone)]
pub struct ReplayJob {
    /// Files or directories (read recursively, in sorted order).
    pub paths: Vec<PathBuf>,
    /// The MLLP listener, `host:port`.
    pub to: String,
    pub connections: usize,
    /// Messages per second across all connections.
    pub rate: Option<f64>,
    pub repeat: usize,
    pub unique_control_ids: bool,
    /// How long to wait for each ACK.
    pub timeout: Duration,
    /// Where to write the summary as JSON.
    pub report: Option<PathBuf>,
    /// Split and check only.
    pub dry_run: bool,
    /// TLS towards the listener when `tls.ca` is set.
    pub tls: ClientTlsOptions,
}

/// Sends every message of `job.paths` and checks each ACK; true when every
/// message was accepted (or, with `dry_run`, read without a problem).
pub fn replay(job: &ReplayJob) -> anyhow::Result<bool> {
    let args = job;
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
    let tls = match &args.tls.ca {
        Some(_) => Some(TlsClient::new(&args.tls, host_of(&args.to)).context("setting up TLS")?),
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
    Ok(report.accepted == report.sent)
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
        "AA", "AE", "AR", "CA", "CE", "CR", "no-ack", "timeout", "mismatch", "error",
    ];
    println!(
        "{:<16} {:>8} {}",
        "MESSAGE TYPE",
        "SENT",
        codes.map(|c| format!(" {c:>8}")).join("")
    );
    for (kind, counts) in &r.by_type {
        let sent: u64 = counts.values().sum();
        let cols: String = codes
            .iter()
            .map(|c| format!(" {:>8}", counts.get(*c).copied().unwrap_or(0)))
            .collect();
        println!("{kind:<16} {sent:>8} {cols}");
    }
    let cols: String = codes
        .iter()
        .map(|c| format!(" {:>8}", r.outcomes.get(*c).copied().unwrap_or(0)))
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
fn dry_run(files: &[PathBuf], messages: &[(PathBuf, usize, Bytes)]) -> bool {
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
    problems == 0
}
