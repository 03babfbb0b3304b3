//! Observable events. Each type records its Prometheus metrics (and, where
//! the event deserves one, its log line) in one place, so the two never
//! drift apart. Labels carry message types, codes, topics and backends only:
//! never content, patient keys or peers' data.
//!
//! Without an installed recorder (tests, `convert`) the metrics are no-ops.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub const MESSAGES_RECEIVED: &str = "hl7bridge_messages_received_total";
pub const ACKS_SENT: &str = "hl7bridge_acks_total";
pub const NAKS: &str = "hl7bridge_naks_total";
pub const ACK_LATENCY: &str = "hl7bridge_ack_latency_seconds";
pub const STORE_COMMIT: &str = "hl7bridge_store_commit_seconds";
pub const GROUP_COMMITS: &str = "hl7bridge_store_group_commits_total";
pub const GROUP_APPENDS: &str = "hl7bridge_store_group_appends_total";
pub const STORE_FAILURES: &str = "hl7bridge_store_failures_total";
pub const DLQ_RECORDS: &str = "hl7bridge_dlq_records_total";
pub const JUNK_BYTES: &str = "hl7bridge_junk_bytes_total";
pub const OVERSIZE_FRAMES: &str = "hl7bridge_oversize_frames_total";
pub const OPEN_CONNECTIONS: &str = "hl7bridge_open_connections";
pub const REFUSED_CONNECTIONS: &str = "hl7bridge_refused_connections_total";
pub const TRANSFORM_IN: &str = "hl7bridge_transform_records_in_total";
pub const TRANSFORM_OUT: &str = "hl7bridge_transform_records_out_total";
pub const TRANSFORM_LAG: &str = "hl7bridge_transform_lag_records";
pub const DEDUP_HITS: &str = "hl7bridge_dedup_hits_total";
pub const END_TO_END: &str = "hl7bridge_end_to_end_seconds";

/// A message read from a frame. Labels come from the peer, so they are
/// bounded: rejected messages count as type "rejected", and a trigger that
/// is not three letters or digits counts as "other".
pub struct MessageReceived<'a> {
    pub message_type: &'a str,
    pub trigger_event: &'a str,
    pub accepted: bool,
}

impl MessageReceived<'_> {
    pub fn emit(&self) {
        let short = |s: &str| {
            if s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                s.to_ascii_uppercase()
            } else {
                "other".to_owned()
            }
        };
        let (t, e) = if self.accepted {
            (short(self.message_type), short(self.trigger_event))
        } else {
            ("rejected".to_owned(), "other".to_owned())
        };
        counter!(MESSAGES_RECEIVED, "type" => t, "trigger" => e).increment(1);
    }
}

/// One ACK (or NAK) sent; `error_code` is the ERR code of a NAK.
pub struct AckSent<'a> {
    pub code: &'a str,
    pub error_code: Option<u16>,
    pub latency: Duration,
}

impl AckSent<'_> {
    pub fn emit(&self) {
        counter!(ACKS_SENT, "code" => self.code.to_owned()).increment(1);
        if let Some(e) = self.error_code {
            counter!(NAKS, "error_code" => e.to_string()).increment(1);
        }
        histogram!(ACK_LATENCY).record(self.latency.as_secs_f64());
    }
}

/// A durable append finished (or failed, or timed out).
pub struct StoreCommitted {
    pub backend: &'static str,
    pub ok: bool,
    pub latency: Duration,
}

impl StoreCommitted {
    pub fn emit(&self) {
        histogram!(STORE_COMMIT, "backend" => self.backend).record(self.latency.as_secs_f64());
        if !self.ok {
            counter!(STORE_FAILURES, "backend" => self.backend).increment(1);
        }
    }
}

/// The embedded store's writer committed one group of ingest appends in one
/// transaction and one fsync. appends / commits is the mean group size: how
/// many messages share an fsync at the current load.
pub struct GroupCommitted {
    pub appends: usize,
}

impl GroupCommitted {
    pub fn emit(&self) {
        counter!(GROUP_COMMITS).increment(1);
        counter!(GROUP_APPENDS).increment(self.appends as u64);
    }
}

/// A record written to a dead-letter topic.
pub struct DeadLettered<'a> {
    pub topic: &'a str,
}

impl DeadLettered<'_> {
    pub fn emit(&self) {
        counter!(DLQ_RECORDS, "topic" => self.topic.to_owned()).increment(1);
    }
}

/// Bytes outside MLLP frames, discarded.
pub struct JunkDiscarded<'a> {
    pub peer: &'a str,
    pub bytes: u64,
}

impl JunkDiscarded<'_> {
    pub fn emit(&self) {
        tracing::warn!(peer = %self.peer, junk_bytes = self.bytes, "discarded bytes outside MLLP frames");
        counter!(JUNK_BYTES).increment(self.bytes);
    }
}

/// A frame larger than `max_message_bytes`.
pub struct OversizeFrame<'a> {
    pub peer: &'a str,
    pub limit: usize,
}

impl OversizeFrame<'_> {
    pub fn emit(&self) {
        tracing::warn!(peer = %self.peer, limit_bytes = self.limit, "MLLP frame exceeds max_message_bytes; rejecting and closing");
        counter!(OVERSIZE_FRAMES).increment(1);
    }
}

/// The number of open MLLP connections changed.
pub struct ConnectionsOpen(pub usize);

impl ConnectionsOpen {
    pub fn emit(&self) {
        gauge!(OPEN_CONNECTIONS).set(self.0 as f64);
    }
}

/// A connection turned away before anything was read from it. `reason` is
/// the metric label: `max_connections`, `per_ip_limit` or `ip_not_allowed`;
/// `limit` is the cap that was reached (0 for `ip_not_allowed`).
pub struct ConnectionRefused<'a> {
    pub peer: &'a str,
    pub reason: &'static str,
    pub limit: usize,
}

impl ConnectionRefused<'_> {
    pub fn emit(&self) {
        tracing::warn!(peer = %self.peer, reason = self.reason, limit = self.limit, "connection refused");
        counter!(REFUSED_CONNECTIONS, "reason" => self.reason).increment(1);
    }
}

pub const TLS_HANDSHAKE_FAILURES: &str = "hl7bridge_tls_handshake_failures_total";

/// A TLS handshake that failed (`error`: bad or missing client certificate,
/// protocol error, not TLS at all) or did not finish within
/// `tls.handshake_timeout` (`timeout`). `error` is rustls' description, which
/// names certificate problems, never traffic content.
pub struct TlsHandshakeFailed<'a> {
    pub peer: &'a str,
    pub reason: &'static str,
    pub error: &'a str,
}

impl TlsHandshakeFailed<'_> {
    pub fn emit(&self) {
        tracing::warn!(peer = %self.peer, reason = self.reason, error = self.error, "TLS handshake failed; connection closed");
        counter!(TLS_HANDSHAKE_FAILURES, "reason" => self.reason).increment(1);
    }
}

/// Raw records the stage has durably handled, by outcome (resources,
/// no_content, duplicate, dead), and the FHIR records it wrote for them.
pub struct TransformCommitted {
    pub outcome: &'static str,
    pub records: u64,
    pub outputs: u64,
}

impl TransformCommitted {
    pub fn emit(&self) {
        counter!(TRANSFORM_IN, "outcome" => self.outcome).increment(self.records);
        if self.outputs > 0 {
            counter!(TRANSFORM_OUT).increment(self.outputs);
        }
    }
}

/// A sender resend (same facility, MSH-10 and bytes) not emitted again.
pub struct DuplicateSkipped<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub control_id: &'a str,
}

impl DuplicateSkipped<'_> {
    pub fn emit(&self) {
        tracing::info!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            control_id = self.control_id,
            "sender duplicate not emitted"
        );
        counter!(DEDUP_HITS).increment(1);
    }
}

/// Raw records not yet handled by the stage.
pub struct TransformLag(pub u64);

impl TransformLag {
    pub fn emit(&self) {
        gauge!(TRANSFORM_LAG).set(self.0 as f64);
    }
}

/// A raw record's FHIR outputs became durable: from its `bridge.received_at`
/// (RFC 3339) to now. Unparseable or future stamps are not recorded.
pub struct EndToEnd<'a> {
    pub received_at: &'a str,
}

impl EndToEnd<'_> {
    pub fn emit(&self) {
        if let Some(age) = humantime::parse_rfc3339(self.received_at)
            .ok()
            .and_then(|t| t.elapsed().ok())
        {
            histogram!(END_TO_END).record(age.as_secs_f64());
        }
    }
}

pub const STORE_BYTES: &str = "hl7bridge_store_bytes";
pub const STORE_FILE_BYTES: &str = "hl7bridge_store_file_bytes";
pub const DISK_FREE_BYTES: &str = "hl7bridge_disk_free_bytes";
pub const RETENTION_DELETED: &str = "hl7bridge_retention_deleted_records_total";

/// A retention sweep of the embedded store ended: what it deleted, by class.
pub struct RetentionSwept<'a> {
    pub deleted: &'a [(&'static str, u64, u64)],
    pub took: Duration,
}

impl RetentionSwept<'_> {
    pub fn emit(&self) {
        let mut total = 0;
        for (class, records, _) in self.deleted {
            counter!(RETENTION_DELETED, "class" => *class).increment(*records);
            total += records;
        }
        if total > 0 {
            let by_class = |c: &str| {
                self.deleted
                    .iter()
                    .find(|(k, _, _)| *k == c)
                    .map_or((0, 0), |(_, r, b)| (*r, *b))
            };
            let (raw, raw_b) = by_class("raw");
            let (fhir, fhir_b) = by_class("fhir");
            let (dlq, dlq_b) = by_class("dlq");
            tracing::info!(
                raw,
                raw_bytes = raw_b,
                fhir,
                fhir_bytes = fhir_b,
                dlq,
                dlq_bytes = dlq_b,
                took_ms = self.took.as_millis() as u64,
                "retention deleted records"
            );
        }
    }
}

/// How much the embedded store holds, and how much room is left on its
/// filesystem: the gauges an operator alerts on.
pub struct StoreSize<'a> {
    /// Record bytes (value, headers, key) per topic class.
    pub class_bytes: &'a [(&'static str, u64)],
    /// The database and its WAL on disk.
    pub file_bytes: u64,
    /// Free bytes on the data directory's filesystem, when known.
    pub free_bytes: Option<u64>,
}

impl StoreSize<'_> {
    pub fn emit(&self) {
        for (class, bytes) in self.class_bytes {
            gauge!(STORE_BYTES, "class" => *class).set(*bytes as f64);
        }
        gauge!(STORE_FILE_BYTES).set(self.file_bytes as f64);
        if let Some(free) = self.free_bytes {
            gauge!(DISK_FREE_BYTES).set(free as f64);
        }
    }
}
