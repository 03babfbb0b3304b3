//! `hl7bridge replay`: an MLLP client that sends files through the real
//! pipeline and checks every ACK. It is also the project's load generator.
//!
//! Each connection sends one message, waits for its ACK, then sends the
//! next, as interface engines do. Every ACK's MSA-2 must equal the MSH-10
//! that was sent; anything else is a mismatch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::hl7::message::{read_header_only, ReadOptions};
use crate::mllp::{frame, MllpCodec};
use crate::server::TlsClient;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub to: SocketAddr,
    pub connections: usize,
    /// Messages per second across all connections; None is as fast as ACKs allow.
    pub rate: Option<f64>,
    pub repeat: usize,
    pub unique_control_ids: bool,
    pub timeout: Duration,
}

/// How one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// MSA-1 as received (AA, AE, AR, CA, CE, CR).
    Ack(String),
    /// MSA-2 did not match the MSH-10 sent.
    Mismatch,
    Timeout,
    /// Connection refused or broken.
    Error,
    /// Enhanced mode with MSH-15 NE (never), or ER (on errors only) and no
    /// error came back: chapter 2 says no accept ACK comes, so none is
    /// waited for.
    NoAckExpected,
}

impl Outcome {
    fn label(&self) -> &str {
        match self {
            Outcome::Ack(c) => c,
            Outcome::Mismatch => "mismatch",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::NoAckExpected => "no-ack",
        }
    }

    /// Accepted, or sent where the sender asked for no accept ACK.
    pub fn accepted(&self) -> bool {
        matches!(self, Outcome::Ack(c) if c == "AA" || c == "CA") || *self == Outcome::NoAckExpected
    }
}

/// Live counters, for the progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub not_accepted: AtomicU64,
}

/// The run's figures; also the `--report` JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub sent: u64,
    pub accepted: u64,
    /// Outcome label -> count (AA, AE, AR, CA, CE, CR, timeout, mismatch, error).
    pub outcomes: BTreeMap<String, u64>,
    /// Message type (MSH-9.1^9.2) -> outcome label -> count.
    pub by_type: BTreeMap<String, BTreeMap<String, u64>>,
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

struct Sample {
    kind: String,
    outcome: Outcome,
    latency: Duration,
}

/// Sends `messages` (`repeat` times) and returns the report.
pub async fn run(
    messages: Arc<Vec<Bytes>>,
    opts: ReplayOptions,
    progress: Arc<Progress>,
) -> Report {
    run_with(messages, opts, None, progress).await
}

/// Like [`run`], over TLS when `tls` is given (one handshake per connection).
pub async fn run_with(
    messages: Arc<Vec<Bytes>>,
    opts: ReplayOptions,
    tls: Option<TlsClient>,
    progress: Arc<Progress>,
) -> Report {
    let total = messages.len() * opts.repeat.max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let pacer = Arc::new(Mutex::new(Instant::now()));
    let run_id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
        & 0xff_ffff) as u32;
    let samples = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..opts.connections.max(1) {
        let (messages, opts, next, pacer, samples, progress, tls) = (
            messages.clone(),
            opts.clone(),
            next.clone(),
            pacer.clone(),
            samples.clone(),
            progress.clone(),
            tls.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<Conn> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(rate) = opts.rate {
                    let slot = {
                        let Ok(mut n) = pacer.lock() else { break };
                        let slot = (*n).max(Instant::now());
                        *n = slot + Duration::from_secs_f64(1.0 / rate.max(0.001));
                        slot
                    };
                    tokio::time::sleep_until(slot.into()).await;
                }
                let original = &messages[i % messages.len()];
                let message = if opts.unique_control_ids {
                    with_control_id(original, &format!("R{run_id:06x}{i:09}"))
                } else {
                    original.clone()
                };
                let header = read_header_only(&message, ReadOptions::default());
                let kind = header
                    .as_ref()
                    .map(|h| format!("{}^{}", h.message_type, h.trigger_event))
                    .unwrap_or_else(|| "unparseable".into());
                let expect = header
                    .as_ref()
                    .map(|h| AckExpected::of(&h.accept_ack_type))
                    .unwrap_or(AckExpected::Always);
                let control_id = header.map(|h| h.control_id).unwrap_or_default();
                let t0 = Instant::now();
                let outcome = send_one(
                    &mut conn,
                    opts.to,
                    tls.as_ref(),
                    &message,
                    &control_id,
                    opts.timeout,
                    expect,
                )
                .await;
                if !matches!(
                    outcome,
                    Outcome::Ack(_) | Outcome::Mismatch | Outcome::NoAckExpected
                ) {
                    conn = None; // the stream's state is unknown: start afresh
                }
                progress.done.fetch_add(1, Ordering::Relaxed);
                if !outcome.accepted() {
                    progress.not_accepted.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut s) = samples.lock() {
                    s.push(Sample {
                        kind,
                        outcome,
                        latency: t0.elapsed(),
                    });
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    summarise(&samples, elapsed)
}

/// What MSH-15 (accept acknowledgment type) says the listener will answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckExpected {
    /// Original mode, or AL/SU/empty.
    Always,
    /// NE: never.
    Never,
    /// ER: only when the message is not accepted.
    OnError,
}

/// How long an ER message waits for an error ACK before counting as
/// accepted: a listener answers an error at once, and the stored case has
/// nothing to wait for.
const ER_GRACE: Duration = Duration::from_millis(250);

impl AckExpected {
    fn of(msh15: &str) -> Self {
        match msh15.trim().to_ascii_uppercase().as_str() {
            "NE" => AckExpected::Never,
            "ER" => AckExpected::OnError,
            _ => AckExpected::Always,
        }
    }

    /// How long to wait for an answer (NE waits for none).
    fn wait(self, timeout: Duration) -> Duration {
        match self {
            AckExpected::OnError => ER_GRACE.min(timeout),
            AckExpected::Always | AckExpected::Never => timeout,
        }
    }
}

/// A plain TCP or TLS stream.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

struct Conn {
    stream: Box<dyn Stream>,
    codec: MllpCodec,
    buf: BytesMut,
}

async fn send_one(
    conn: &mut Option<Conn>,
    to: SocketAddr,
    tls: Option<&TlsClient>,
    message: &[u8],
    control_id: &str,
    timeout: Duration,
    expect: AckExpected,
) -> Outcome {
    let send = async {
        if conn.is_none() {
            let tcp = TcpStream::connect(to).await.ok()?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = match tls {
                Some(t) => Box::new(t.connector.connect(t.server_name.clone(), tcp).await.ok()?),
                None => Box::new(tcp),
            };
            *conn = Some(Conn {
                stream,
                codec: MllpCodec::new(16 << 20),
                buf: BytesMut::with_capacity(4096),
            });
        }
        let c = conn.as_mut()?;
        c.stream.write_all(&frame(message)).await.ok()
    };
    match tokio::time::timeout(timeout, send).await {
        Err(_) => return Outcome::Timeout,
        Ok(None) => return Outcome::Error,
        Ok(Some(())) => {}
    }
    if expect == AckExpected::Never {
        return Outcome::NoAckExpected;
    }
    let Some(c) = conn.as_mut() else {
        return Outcome::Error;
    };
    let receive = async {
        loop {
            if let Ok(Some(ack)) = c.codec.decode(&mut c.buf) {
                return Some(ack);
            }
            if c.stream.read_buf(&mut c.buf).await.ok()? == 0 {
                return None;
            }
        }
    };
    match tokio::time::timeout(expect.wait(timeout), receive).await {
        // ER: no error came back within the grace, so it was accepted.
        Err(_) if expect == AckExpected::OnError => Outcome::NoAckExpected,
        Err(_) => Outcome::Timeout,
        Ok(None) => Outcome::Error,
        Ok(Some(ack)) => match msa(&ack) {
            Some((code, id)) if id == control_id => Outcome::Ack(code),
            _ => Outcome::Mismatch,
        },
    }
}

/// MSA-1 and MSA-2 of an ACK (the first MSA, for a batch reply).
fn msa(ack: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(ack);
    let fs = text.chars().nth(3)?;
    let line = text.split(['\r', '\n']).find(|l| l.starts_with("MSA"))?;
    let mut f = line.split(fs).skip(1);
    Some((f.next()?.to_owned(), f.next().unwrap_or("").to_owned()))
}

/// Replaces MSH-10 in a message's raw bytes.
pub fn with_control_id(message: &Bytes, id: &str) -> Bytes {
    let Some(&fs) = message.get(3) else {
        return message.clone();
    };
    let line_end = message
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(message.len());
    let seps: Vec<usize> = message[..line_end]
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == fs)
        .map(|(i, _)| i)
        .collect();
    // MSH-10 follows the 9th field separator (MSH-1 is the first).
    let Some(&start) = seps.get(8) else {
        return message.clone();
    };
    let end = seps.get(9).copied().unwrap_or(line_end);
    let mut out = Vec::with_capacity(message.len() + id.len());
    out.extend_from_slice(&message[..start + 1]);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&message[end..]);
    Bytes::from(out)
}

fn summarise(samples: &[Sample], elapsed: Duration) -> Report {
    let mut outcomes = BTreeMap::new();
    let mut by_type: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut lat: Vec<f64> = Vec::with_capacity(samples.len());
    for s in samples {
        *outcomes.entry(s.outcome.label().to_owned()).or_insert(0) += 1;
        *by_type
            .entry(s.kind.clone())
            .or_default()
            .entry(s.outcome.label().to_owned())
            .or_insert(0) += 1;
        if matches!(s.outcome, Outcome::Ack(_)) {
            lat.push(s.latency.as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    let sent = samples.len() as u64;
    let secs = elapsed.as_secs_f64();
    Report {
        sent,
        accepted: samples.iter().filter(|s| s.outcome.accepted()).count() as u64,
        outcomes,
        by_type,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_msh10_only() {
        let m = Bytes::from_static(b"MSH|^~\\&|A|B|C|D|T||ADT^A01|OLD|P|2.5\rPID|||OLD\r");
        assert_eq!(
            &with_control_id(&m, "NEW1")[..],
            b"MSH|^~\\&|A|B|C|D|T||ADT^A01|NEW1|P|2.5\rPID|||OLD\r"
        );
        let short = Bytes::from_static(b"MSH|^~\\&|A|B|C|D|T||ADT^A01|OLD\r");
        assert_eq!(
            &with_control_id(&short, "N")[..],
            b"MSH|^~\\&|A|B|C|D|T||ADT^A01|N\r"
        );
    }

    #[test]
    fn msa_fields() {
        assert_eq!(
            msa(b"MSH|^~\\&|x\rMSA|AE|C1|text\r"),
            Some(("AE".into(), "C1".into()))
        );
        assert_eq!(msa(b"garbage"), None);
    }
}
