//! `replay`: send files of HL7 messages over MLLP and check every ACK; the
//! analyst's tool and the project's load generator.
//!
//! Exit status: 0 when every message was accepted (or needed no ACK) and no
//! input was dropped; 1 when some message was not accepted or some input
//! was dropped with a warning; 2 when the run could not start (no
//! messages, unreadable input, an endpoint that does not resolve, a bad
//! `--resume` report); 130 when SIGINT or SIGTERM stopped it.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::hl7::files::{self, Discovery};
use crate::hl7::message::{read, read_header_only, ReadOptions};
use crate::replay::{self, Delivered, Endpoint, Item, Progress, ReplayOptions, Report, Stop};
use crate::server::tls::{ClientTlsOptions, TlsClient};

/// What to send, where, and how.
#[derive(Debug, Clone)]
pub struct ReplayJob {
    /// Files or directories (read recursively, in sorted order).
    pub paths: Vec<PathBuf>,
    /// Which files a directory stands for.
    pub discovery: Discovery,
    /// Name each skipped file.
    pub verbose: bool,
    /// MLLP listeners, `host:port`, in failover order.
    pub to: Vec<String>,
    pub connections: usize,
    /// Messages per second across all connections.
    pub rate: Option<f64>,
    pub repeat: usize,
    pub unique_control_ids: bool,
    /// How long to wait for each ACK.
    pub timeout: Duration,
    /// Sends per message at most.
    pub attempts: u32,
    /// Resend a message answered AE/CE.
    pub resend_error_acks: bool,
    /// Where to write the summary as JSON.
    pub report: Option<PathBuf>,
    /// A previous report: skip what it records as accepted.
    pub resume: Option<PathBuf>,
    /// Split and check only.
    pub dry_run: bool,
    /// TLS towards the listener when `tls.ca` is set.
    pub tls: ClientTlsOptions,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every message accepted, nothing dropped.
    Clean,
    /// Some message not accepted, or some input dropped.
    Problems,
    /// SIGINT/SIGTERM.
    Interrupted,
}

/// How long outstanding ACKs are waited for after SIGINT/SIGTERM.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// Sends every message of `job.paths` and checks each ACK.
pub fn replay(job: &ReplayJob) -> anyhow::Result<Ended> {
    let found = job.discovery.find(&job.paths)?;
    let mut stderr = std::io::stderr();
    files::note_skipped(&found, job.verbose, &mut stderr);
    let mut items = Vec::new();
    let mut warnings = 0u64;
    for f in &found.files {
        let loaded = files::load(f, &mut stderr)?;
        warnings += loaded.split.dropped.len() as u64;
        items.extend(
            loaded
                .split
                .messages
                .into_iter()
                .enumerate()
                .map(|(i, body)| Item {
                    file: f.clone(),
                    index: i + 1,
                    control_id: read_header_only(&body, ReadOptions::default())
                        .map(|h| h.control_id)
                        .unwrap_or_default(),
                    body,
                }),
        );
    }
    if items.is_empty() {
        return Err(files::empty(&job.paths, &found).into());
    }
    if job.dry_run {
        let clean = dry_run(found.files.len(), &items) && warnings == 0;
        return Ok(if clean { Ended::Clean } else { Ended::Problems });
    }
    let skip = match &job.resume {
        Some(path) => resume(path, &items, job.repeat)?,
        None => HashSet::new(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut to = Vec::new();
    for name in &job.to {
        let addr = rt
            .block_on(tokio::net::lookup_host(name.as_str()))
            .with_context(|| format!("resolving --to {name}"))?
            .next()
            .with_context(|| format!("--to {name} did not resolve to an address"))?;
        let tls = match &job.tls.ca {
            Some(_) => Some(
                TlsClient::new(&job.tls, host_of(name))
                    .with_context(|| format!("setting up TLS towards {name}"))?,
            ),
            None => None,
        };
        to.push(Endpoint {
            name: name.clone(),
            addr,
            tls,
        });
    }
    anyhow::ensure!(!to.is_empty(), "--to names no endpoint");
    let opts = ReplayOptions {
        to,
        connections: job.connections,
        rate: job.rate,
        repeat: job.repeat,
        unique_control_ids: job.unique_control_ids,
        timeout: job.timeout,
        attempts: job.attempts.max(1),
        resend_error_acks: job.resend_error_acks,
        skip,
    };
    let skipped = opts.skip.len() as u64;
    let total = (items.len() * job.repeat.max(1)) as u64 - skipped;
    if skipped > 0 {
        eprintln!("replay: --resume: skipping {skipped} message(s) already accepted");
    }
    let progress = Arc::new(Progress::default());
    let stop = Stop::default();
    let grace = INTERRUPT_GRACE.min(job.timeout);
    let mut report = rt.block_on(async {
        let shown = tokio::spawn(show_progress(progress.clone(), total));
        let signals = tokio::spawn(on_signal(stop.clone(), grace));
        let report = replay::run(Arc::new(items), opts, progress.clone(), stop).await;
        shown.abort();
        signals.abort();
        report
    });
    report.skipped_accepted = skipped;
    report.files_read = found.files.len() as u64;
    report.files_skipped = found.skipped.len() as u64;
    report.input_warnings = warnings;
    print_summary(&report);
    if let Some(path) = &job.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    Ok(if report.interrupted {
        Ended::Interrupted
    } else if report.accepted == report.messages && warnings == 0 {
        Ended::Clean
    } else {
        Ended::Problems
    })
}

/// SIGINT or SIGTERM: stop sending, wait `grace` for the ACKs outstanding,
/// then stop waiting. The summary and report follow as for any run.
async fn on_signal(stop: Stop, grace: Duration) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("replay: cannot watch SIGTERM ({e}); Ctrl-C still stops the run cleanly");
            let _ = tokio::signal::ctrl_c().await;
            return interrupt(stop, grace).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    interrupt(stop, grace).await
}

async fn interrupt(stop: Stop, grace: Duration) {
    eprintln!(
        "replay: interrupted; waiting up to {} for outstanding ACKs",
        humantime::format_duration(grace)
    );
    stop.sending.cancel();
    tokio::time::sleep(grace).await;
    stop.waiting.cancel();
}

/// Positions of the run a previous report records as accepted: the same
/// file, index in file, MSH-10 as in the file and round.
fn resume(path: &Path, items: &[Item], repeat: usize) -> anyhow::Result<HashSet<usize>> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading the --resume report {}", path.display()))?;
    let previous: Report = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a replay report (written by --report); check the path",
            path.display()
        )
    })?;
    let done: HashSet<&Delivered> = previous.delivered.iter().collect();
    let mut skip = HashSet::new();
    for round in 0..repeat.max(1) {
        for (n, item) in items.iter().enumerate() {
            let key = Delivered {
                file: item.file.clone(),
                index: item.index,
                control_id: item.control_id.clone(),
                round,
            };
            if done.contains(&key) {
                skip.insert(round * items.len() + n);
            }
        }
    }
    Ok(skip)
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
                "not accepted: {}, resent: {}",
                p.not_accepted.load(Ordering::Relaxed),
                p.resent.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        // One line a second at most, and only when it says something new.
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let line = format!(
                "replay: {}/{} done, {} not accepted, {} resent",
                p.done.load(Ordering::Relaxed),
                total,
                p.not_accepted.load(Ordering::Relaxed),
                p.resent.load(Ordering::Relaxed)
            );
            if line != last {
                eprintln!("{line}");
                last = line;
            }
        }
    }
}

fn print_summary(r: &Report) {
    let codes = [
        "AA",
        "AE",
        "AR",
        "CA",
        "CE",
        "CR",
        "no-ack",
        "timeout",
        "closed",
        "unsent",
        "interrupted",
        "mismatch",
    ];
    let shown: Vec<&str> = codes
        .iter()
        .copied()
        .filter(|c| {
            matches!(*c, "AA" | "AE" | "AR" | "timeout" | "mismatch") || r.outcomes.contains_key(*c)
        })
        .collect();
    let width = |c: &str| c.len().max(8);
    println!(
        "{:<16} {:>8}{}",
        "MESSAGE TYPE",
        "SENT",
        shown
            .iter()
            .map(|c| format!(" {c:>w$}", w = width(c)))
            .collect::<String>()
    );
    let row = |counts: &std::collections::BTreeMap<String, u64>| -> String {
        shown
            .iter()
            .map(|c| {
                format!(
                    " {:>w$}",
                    counts.get(*c).copied().unwrap_or(0),
                    w = width(c)
                )
            })
            .collect()
    };
    for (kind, counts) in &r.by_type {
        let sent: u64 = counts
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "unsent" | "interrupted"))
            .map(|(_, n)| n)
            .sum();
        println!("{kind:<16} {sent:>8}{}", row(counts));
    }
    println!("{:<16} {:>8}{}", "total", r.sent, row(&r.outcomes));
    let mut notes = vec![
        format!("{} message(s)", r.messages),
        format!("{} accepted", r.accepted),
    ];
    if r.not_sent > 0 {
        notes.push(format!("{} never sent", r.not_sent));
    }
    notes.push(format!("{} resent", r.resent));
    if r.skipped_accepted > 0 {
        notes.push(format!(
            "{} skipped as accepted before (--resume)",
            r.skipped_accepted
        ));
    }
    if r.files_skipped > 0 {
        notes.push(format!("{} file(s) skipped", r.files_skipped));
    }
    if r.input_warnings > 0 {
        notes.push(format!("{} input warning(s)", r.input_warnings));
    }
    if r.interrupted {
        notes.push("INTERRUPTED".into());
    }
    println!("{}", notes.join(", "));
    if r.endpoints.len() > 1 || r.resent > 0 {
        println!(
            "{:<30} {:>8} {:>8} {:>8} {:>8}",
            "ENDPOINT", "SENT", "ACKED", "RESENT", "FAILURES"
        );
        for e in &r.endpoints {
            println!(
                "{:<30} {:>8} {:>8} {:>8} {:>8}",
                e.address, e.sent, e.acknowledged, e.resent, e.failures
            );
        }
    }
    println!(
        "{:.0} msgs/s over {:.2} s; ACK latency ms: p50 {:.3}, p90 {:.3}, p99 {:.3}, max {:.3}",
        r.msgs_per_s,
        r.elapsed_s,
        r.latency_ms.p50,
        r.latency_ms.p90,
        r.latency_ms.p99,
        r.latency_ms.max
    );
    if !r.failed.is_empty() {
        println!("not accepted:");
        for f in &r.failed {
            let id = match &f.sent_control_id {
                Some(sent) if !sent.is_empty() && *sent != f.control_id => {
                    format!("{:?} (sent as {sent:?})", f.control_id)
                }
                _ => format!("{:?}", f.control_id),
            };
            let at = f
                .endpoint
                .as_deref()
                .map(|e| format!(" [{e}]"))
                .unwrap_or_default();
            println!(
                "  {}: message {}{}: MSH-10 {id}: {}{at}",
                f.file.display(),
                f.index,
                if f.round > 0 {
                    format!(" (round {})", f.round + 1)
                } else {
                    String::new()
                },
                f.reason
            );
        }
    }
}

/// Splits and checks without sending. Problems are reported by file and
/// message number, never by content.
fn dry_run(files: usize, items: &[Item]) -> bool {
    let mut by_type = std::collections::BTreeMap::<String, u64>::new();
    let mut problems = 0;
    for m in items {
        match read(&m.body, ReadOptions::default()) {
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
                println!("{}: message {}: {e}", m.file.display(), m.index);
            }
        }
    }
    println!(
        "{files} file(s), {} message(s), {problems} with problems",
        items.len()
    );
    for (kind, n) in by_type {
        println!("  {kind:<16} {n}");
    }
    problems == 0
}
