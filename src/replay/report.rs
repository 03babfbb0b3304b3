//! The run's figures: the summary and the `--report` JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Outcome;

/// The `--report` JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Report {
    /// SIGINT or SIGTERM stopped the run before every message was sent.
    pub interrupted: bool,
    /// Messages in this run (after `--resume` skipped some).
    pub messages: u64,
    /// Messages a previous report recorded as accepted, not sent again.
    pub skipped_accepted: u64,
    /// Messages that left at least once (a refused connection sends nothing).
    pub sent: u64,
    /// Messages never sent: every connection attempt failed, or the run was
    /// interrupted first.
    pub not_sent: u64,
    pub accepted: u64,
    /// Sends after a first attempt that got no ACK (a message counts once
    /// per extra send).
    pub resent: u64,
    /// Outcome label -> count (AA, AE, AR, CA, CE, CR, no-ack, timeout,
    /// closed, unsent, interrupted, mismatch); one per message.
    pub outcomes: BTreeMap<String, u64>,
    /// Message type (MSH-9.1^9.2) -> outcome label -> count.
    pub by_type: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per `--to` endpoint, in the order given.
    pub endpoints: Vec<EndpointReport>,
    /// Every message not accepted: where it is and why.
    pub failed: Vec<Failure>,
    /// Every message accepted (AA/CA, or no ACK expected), for `--resume`.
    pub delivered: Vec<Delivered>,
    /// Input files read and files a directory held that were skipped.
    pub files_read: u64,
    pub files_skipped: u64,
    /// Runs of bytes the splitter dropped (each warned about on stderr).
    pub input_warnings: u64,
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct EndpointReport {
    pub address: String,
    /// Sends written to this endpoint (first sends and resends).
    pub sent: u64,
    /// ACKs received from it, of any code.
    pub acknowledged: u64,
    /// Of `sent`, resends.
    pub resent: u64,
    /// Connections refused, closed or timed out.
    pub failures: u64,
}

/// Where a message sits in the input; `--resume` matches on all of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Delivered {
    pub file: PathBuf,
    /// 1-based position of the message in its file.
    pub index: usize,
    /// MSH-10 as in the file.
    pub control_id: String,
    /// 0-based pass over the input (`--repeat`).
    pub round: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub file: PathBuf,
    pub index: usize,
    /// MSH-10 as in the file.
    pub control_id: String,
    /// MSH-10 as sent, when `--unique-control-ids` rewrote it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sent_control_id: Option<String>,
    pub round: usize,
    /// The summary column (AE, AR, timeout, closed, unsent, ...).
    pub outcome: String,
    pub reason: String,
    /// The endpoint of the last attempt.
    pub endpoint: Option<String>,
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// How one message ended, as the engine records it.
#[derive(Debug, Clone)]
pub struct Final {
    pub at: Delivered,
    pub sent_control_id: Option<String>,
    pub kind: String,
    pub outcome: Outcome,
    /// Some attempt was written to a connection.
    pub written: bool,
    pub attempts: u32,
    pub endpoint: Option<String>,
    /// From the last send to its ACK.
    pub latency: Duration,
}

/// The report for `finals` (one per message that was attempted); `pending`
/// messages were never attempted (an interrupt came first).
pub fn summarise(
    finals: &[Final],
    pending: u64,
    endpoints: Vec<EndpointReport>,
    elapsed: Duration,
) -> Report {
    let mut outcomes = BTreeMap::new();
    let mut by_type: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut lat: Vec<f64> = Vec::new();
    let mut failed = Vec::new();
    let mut delivered = Vec::new();
    for f in finals {
        let label = f.outcome.label().to_owned();
        *outcomes.entry(label.clone()).or_insert(0) += 1;
        *by_type
            .entry(f.kind.clone())
            .or_default()
            .entry(label.clone())
            .or_insert(0) += 1;
        if matches!(f.outcome, Outcome::Ack { .. }) {
            lat.push(f.latency.as_secs_f64() * 1000.0);
        }
        if f.outcome.accepted() {
            delivered.push(f.at.clone());
        } else {
            failed.push(Failure {
                file: f.at.file.clone(),
                index: f.at.index,
                control_id: f.at.control_id.clone(),
                sent_control_id: f.sent_control_id.clone(),
                round: f.at.round,
                outcome: label,
                reason: f.outcome.reason(),
                endpoint: f.endpoint.clone(),
                attempts: f.attempts,
            });
        }
    }
    failed.sort_by(|a, b| (&a.file, a.round, a.index).cmp(&(&b.file, b.round, b.index)));
    delivered.sort();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    let sent = finals.iter().filter(|f| f.written).count() as u64;
    let secs = elapsed.as_secs_f64();
    Report {
        interrupted: false,
        messages: finals.len() as u64 + pending,
        skipped_accepted: 0,
        sent,
        not_sent: finals.len() as u64 - sent + pending,
        accepted: delivered.len() as u64,
        resent: endpoints.iter().map(|e| e.resent).sum(),
        outcomes,
        by_type,
        endpoints,
        failed,
        delivered,
        files_read: 0,
        files_skipped: 0,
        input_warnings: 0,
        elapsed_s: secs,
        msgs_per_s: if secs > 0.0 { sent as f64 / secs } else { 0.0 },
        latency_ms: Latency {
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: lat.last().copied().unwrap_or(0.0),
        },
    }
}
