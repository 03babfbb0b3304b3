//! `hl7bridge replay`: an MLLP client that sends files through the real
//! pipeline and checks every ACK. It is also the project's load generator.
//!
//! Each connection sends one message, waits for its ACK, then sends the
//! next, as interface engines do. Every ACK's MSA-2 must equal the MSH-10
//! that was sent; anything else is a mismatch.
//!
//! Failover, as an engine does with a backup host: with several `--to`
//! endpoints, a refused connect, a connection lost before the ACK or an ACK
//! time-out moves the sender to the next endpoint (round robin, after a
//! short back-off), and the message is sent again there, with the same
//! MSH-10, up to `attempts` times. AR/CR is final and never resent; AE/CE
//! is resent only when asked (`resend_error_acks`). A resent message may
//! have been stored by the first endpoint too: the same control ID twice,
//! which the stage's sender dedup removes.

mod outcome;
mod report;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::hl7::message::{read_header_only, ReadOptions};
use crate::mllp::{frame, MllpCodec};
use crate::server::TlsClient;

pub use outcome::{read_ack, Outcome, Reason};
pub use report::{summarise, Delivered, EndpointReport, Failure, Final, Latency, Report};

/// One message of the input, and where it came from.
#[derive(Debug, Clone)]
pub struct Item {
    pub file: PathBuf,
    /// 1-based position in the file.
    pub index: usize,
    /// MSH-10 as in the file (empty when unreadable).
    pub control_id: String,
    pub body: Bytes,
}

/// A `--to` endpoint: its name as given, its address, TLS if configured.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub addr: SocketAddr,
    pub tls: Option<TlsClient>,
}

#[derive(Clone)]
pub struct ReplayOptions {
    pub to: Vec<Endpoint>,
    pub connections: usize,
    /// Messages per second across all connections; None is as fast as ACKs allow.
    pub rate: Option<f64>,
    pub repeat: usize,
    pub unique_control_ids: bool,
    pub timeout: Duration,
    /// Sends per message at most, first send included.
    pub attempts: u32,
    /// Send a message that got AE/CE again (as the next attempt).
    pub resend_error_acks: bool,
    /// Positions in the run (round * items + item) not to send: a previous
    /// run delivered them (`--resume`).
    pub skip: HashSet<usize>,
}

/// Live counters, for the progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub not_accepted: AtomicU64,
    pub resent: AtomicU64,
}

/// How a run is stopped from outside: `sending` ends the sending of new
/// messages; `waiting` then ends the wait for ACKs still outstanding.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    pub sending: CancellationToken,
    pub waiting: CancellationToken,
}

/// One message's turn: its position in the run and how often it was tried.
#[derive(Debug, Clone, Copy)]
struct Job {
    seq: usize,
    attempt: u32,
    written: bool,
}

/// The work shared by the connections: positions not yet taken, and
/// messages to send again (taken first).
struct Queue {
    next: AtomicUsize,
    total: usize,
    retry: Mutex<VecDeque<Job>>,
    skip: HashSet<usize>,
}

impl Queue {
    fn take(&self) -> Option<Job> {
        if let Some(j) = self.retry.lock().ok()?.pop_front() {
            return Some(j);
        }
        loop {
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            if seq >= self.total {
                return None;
            }
            if !self.skip.contains(&seq) {
                return Some(Job {
                    seq,
                    attempt: 0,
                    written: false,
                });
            }
        }
    }

    fn again(&self, job: Job) {
        if let Ok(mut r) = self.retry.lock() {
            r.push_back(job);
        }
    }

    /// Positions never taken (an interrupt came first).
    fn untaken(&self) -> u64 {
        let from = self.next.load(Ordering::Relaxed).min(self.total);
        let queued = self.retry.lock().map(|r| r.len()).unwrap_or(0);
        ((from..self.total)
            .filter(|s| !self.skip.contains(s))
            .count()
            + queued) as u64
    }
}

#[derive(Default)]
struct EndpointCounters {
    sent: AtomicU64,
    acknowledged: AtomicU64,
    resent: AtomicU64,
    failures: AtomicU64,
}

/// Everything the connection tasks share.
struct Shared {
    items: Arc<Vec<Item>>,
    opts: ReplayOptions,
    queue: Queue,
    /// The endpoint new connections go to.
    active: AtomicUsize,
    counters: Vec<EndpointCounters>,
    pacer: Mutex<Instant>,
    finals: Mutex<Vec<Final>>,
    progress: Arc<Progress>,
    stop: Stop,
    run_id: u32,
    /// The last connection event printed, so a burst of the same one is one line.
    last_event: Mutex<String>,
}

/// Sends every item (`repeat` times, less `skip`) and returns the report.
pub async fn run(
    items: Arc<Vec<Item>>,
    opts: ReplayOptions,
    progress: Arc<Progress>,
    stop: Stop,
) -> Report {
    let total = items.len() * opts.repeat.max(1);
    let run_id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
        & 0xff_ffff) as u32;
    let shared = Arc::new(Shared {
        counters: opts
            .to
            .iter()
            .map(|_| EndpointCounters::default())
            .collect(),
        queue: Queue {
            next: AtomicUsize::new(0),
            total,
            retry: Mutex::new(VecDeque::new()),
            skip: opts.skip.clone(),
        },
        items,
        opts,
        active: AtomicUsize::new(0),
        pacer: Mutex::new(Instant::now()),
        finals: Mutex::new(Vec::new()),
        progress,
        stop,
        run_id,
        last_event: Mutex::new(String::new()),
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..shared.opts.connections.max(1))
        .map(|_| tokio::spawn(sender(shared.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let mut finals = std::mem::take(&mut *shared.finals.lock().unwrap_or_else(|p| p.into_inner()));
    // Messages put back for another attempt when the run was interrupted;
    // one never attempted counts with those never taken.
    let (untried, left): (Vec<Job>, Vec<Job>) = shared
        .retry_left()
        .into_iter()
        .partition(|j| j.attempt == 0);
    for job in left {
        let item = &shared.items[job.seq % shared.items.len()];
        finals.push(Final {
            at: Delivered {
                file: item.file.clone(),
                index: item.index,
                control_id: item.control_id.clone(),
                round: job.seq / shared.items.len(),
            },
            sent_control_id: None,
            kind: read_header_only(&item.body, ReadOptions::default())
                .map(|h| format!("{}^{}", h.message_type, h.trigger_event))
                .unwrap_or_else(|| "unparseable".into()),
            outcome: Outcome::Failed(Reason::Interrupted),
            written: job.written,
            attempts: job.attempt,
            endpoint: None,
            latency: Duration::ZERO,
        });
    }
    let endpoints = shared
        .opts
        .to
        .iter()
        .zip(&shared.counters)
        .map(|(e, c)| EndpointReport {
            address: e.name.clone(),
            sent: c.sent.load(Ordering::Relaxed),
            acknowledged: c.acknowledged.load(Ordering::Relaxed),
            resent: c.resent.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        })
        .collect();
    let pending = shared.queue.untaken() + untried.len() as u64;
    let mut report = summarise(&finals, pending, endpoints, elapsed);
    report.interrupted = shared.stop.sending.is_cancelled();
    report
}

/// What one attempt came to.
enum Attempt {
    /// Nothing was written.
    Unsent(Reason),
    /// Written, and the connection was lost (or timed out) before an answer.
    Lost(Reason),
    /// An answer, or none expected.
    Answered(Outcome),
}

/// One connection's loop: take a message, send it, wait for its ACK.
async fn sender(s: Arc<Shared>) {
    let mut conn: Option<(usize, Conn)> = None;
    let n = s.opts.to.len().max(1);
    loop {
        if s.stop.sending.is_cancelled() {
            break;
        }
        let Some(mut job) = s.queue.take() else { break };
        if let Some(rate) = s.opts.rate {
            let slot = {
                let Ok(mut next) = s.pacer.lock() else { break };
                let slot = (*next).max(Instant::now());
                *next = slot + Duration::from_secs_f64(1.0 / rate.max(0.001));
                slot
            };
            tokio::select! {
                _ = tokio::time::sleep_until(slot.into()) => {}
                _ = s.stop.sending.cancelled() => { s.queue.again(job); break }
            }
        }
        let item = &s.items[job.seq % s.items.len()];
        let message = if s.opts.unique_control_ids {
            with_control_id(&item.body, &format!("R{:06x}{:09}", s.run_id, job.seq))
        } else {
            item.body.clone()
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

        let ep = match &conn {
            Some((e, _)) => *e,
            None => s.active.load(Ordering::Relaxed) % n,
        };
        let t0 = Instant::now();
        let attempt = match conn.as_mut() {
            Some((_, c)) => {
                exchange(c, &message, &control_id, s.opts.timeout, expect, &s.stop).await
            }
            None => match connect(&s.opts.to[ep], s.opts.timeout, &s.stop).await {
                Ok(mut c) => {
                    let a = exchange(
                        &mut c,
                        &message,
                        &control_id,
                        s.opts.timeout,
                        expect,
                        &s.stop,
                    )
                    .await;
                    conn = Some((ep, c));
                    a
                }
                Err(r) => Attempt::Unsent(r),
            },
        };
        let written = !matches!(attempt, Attempt::Unsent(_));
        if written {
            s.counters[ep].sent.fetch_add(1, Ordering::Relaxed);
            if job.attempt > 0 {
                s.counters[ep].resent.fetch_add(1, Ordering::Relaxed);
                s.progress.resent.fetch_add(1, Ordering::Relaxed);
            }
        }
        job.written |= written;
        job.attempt += 1;
        let outcome = match attempt {
            Attempt::Answered(o) => {
                if matches!(o, Outcome::Ack { .. } | Outcome::Mismatch { .. }) {
                    s.counters[ep].acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                if o.is_error_ack() && s.opts.resend_error_acks && job.attempt < s.opts.attempts {
                    s.queue.again(job);
                    continue;
                }
                o
            }
            Attempt::Unsent(Reason::Interrupted) | Attempt::Lost(Reason::Interrupted) => {
                conn = None;
                Outcome::Failed(Reason::Interrupted)
            }
            Attempt::Unsent(r) | Attempt::Lost(r) => {
                // The stream's state is unknown: start afresh, on the next endpoint.
                conn = None;
                s.counters[ep].failures.fetch_add(1, Ordering::Relaxed);
                let next = (ep + 1) % n;
                let _ = s
                    .active
                    .compare_exchange(ep, next, Ordering::Relaxed, Ordering::Relaxed);
                let retry = job.attempt < s.opts.attempts && !s.stop.sending.is_cancelled();
                s.event(ep, &r, retry.then_some(next));
                if retry {
                    s.queue.again(job);
                    // A short back-off, longer each time round, so a
                    // restarting host is not hammered.
                    let wait = Duration::from_millis(100 * u64::from(job.attempt.min(10)));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = s.stop.sending.cancelled() => {}
                    }
                    continue;
                }
                Outcome::Failed(r)
            }
        };
        s.progress.done.fetch_add(1, Ordering::Relaxed);
        if !outcome.accepted() {
            s.progress.not_accepted.fetch_add(1, Ordering::Relaxed);
        }
        let rewritten = s.opts.unique_control_ids.then(|| control_id.clone());
        let f = Final {
            at: Delivered {
                file: item.file.clone(),
                index: item.index,
                control_id: item.control_id.clone(),
                round: job.seq / s.items.len(),
            },
            sent_control_id: rewritten,
            kind,
            outcome,
            written: job.written,
            attempts: job.attempt,
            endpoint: Some(s.opts.to[ep].name.clone()),
            latency: t0.elapsed(),
        };
        if let Ok(mut finals) = s.finals.lock() {
            finals.push(f);
        }
    }
}

impl Shared {
    fn retry_left(&self) -> Vec<Job> {
        self.queue
            .retry
            .lock()
            .map(|mut r| r.drain(..).collect())
            .unwrap_or_default()
    }

    /// A connection failure on stderr: where, what, and what happens next.
    /// Repeats of the line just printed are not printed again.
    fn event(&self, ep: usize, reason: &Reason, next: Option<usize>) {
        let then = match next {
            Some(i) if self.opts.to.len() > 1 => {
                format!("; sending to {} next", self.opts.to[i].name)
            }
            Some(_) => "; reconnecting".to_owned(),
            None => String::new(),
        };
        let what = format!("replay: {}: {reason}", self.opts.to[ep].name);
        if let Ok(mut last) = self.last_event.lock() {
            if *last != what {
                eprintln!("{what}{then}");
                *last = what;
            }
        }
    }
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

/// How long an answer is looked for after a write failed.
const WRITE_FAILED_GRACE: Duration = Duration::from_millis(500);

/// A plain TCP or TLS stream.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

struct Conn {
    stream: Box<dyn Stream>,
    codec: MllpCodec,
    buf: BytesMut,
}

/// Opens a connection (TLS when configured), within `timeout`.
async fn connect(to: &Endpoint, timeout: Duration, stop: &Stop) -> Result<Conn, Reason> {
    let open = async {
        let tcp = TcpStream::connect(to.addr).await.map_err(|e| {
            Reason::Connect(match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ => format!("cannot connect: {e}"),
            })
        })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &to.tls {
            Some(t) => Box::new(
                t.connector
                    .connect(t.server_name.clone(), tcp)
                    .await
                    .map_err(|e| Reason::Connect(format!("TLS handshake: {e}")))?,
            ),
            None => Box::new(tcp),
        };
        Ok(Conn {
            stream,
            codec: MllpCodec::new(16 << 20),
            buf: BytesMut::with_capacity(4096),
        })
    };
    tokio::select! {
        r = tokio::time::timeout(timeout, open) => r.unwrap_or_else(|_| {
            Err(Reason::Connect(format!("no connection within {}", humantime::format_duration(timeout))))
        }),
        _ = stop.waiting.cancelled() => Err(Reason::Interrupted),
    }
}

/// Sends one message and waits for its ACK (as long as MSH-15 says one comes).
async fn exchange(
    c: &mut Conn,
    message: &[u8],
    control_id: &str,
    timeout: Duration,
    expect: AckExpected,
    stop: &Stop,
) -> Attempt {
    let framed = frame(message);
    let write = tokio::time::timeout(timeout, c.stream.write_all(&framed));
    let written = match tokio::select! {
        r = write => r,
        _ = stop.waiting.cancelled() => return Attempt::Unsent(Reason::Interrupted),
    } {
        Err(_) => return Attempt::Lost(Reason::Timeout(timeout)),
        // The listener may have answered and closed mid-frame (AR to an
        // oversize message): its answer is read if it is there.
        Ok(Err(_)) => false,
        Ok(Ok(())) => true,
    };
    if written && expect == AckExpected::Never {
        return Attempt::Answered(Outcome::NoAckExpected);
    }
    let wait = if written {
        expect.wait(timeout)
    } else {
        WRITE_FAILED_GRACE.min(timeout)
    };
    let receive = async {
        loop {
            match c.codec.decode(&mut c.buf) {
                Ok(Some(ack)) => return Some(ack),
                Ok(None) => {}
                Err(_) => return None,
            }
            if c.stream.read_buf(&mut c.buf).await.ok()? == 0 {
                return None;
            }
        }
    };
    let answer = tokio::select! {
        r = tokio::time::timeout(wait, receive) => r,
        _ = stop.waiting.cancelled() => return Attempt::Lost(Reason::Interrupted),
    };
    match answer {
        Err(_) | Ok(None) if !written => Attempt::Unsent(Reason::Closed),
        // ER: no error came back within the grace, so it was accepted.
        Err(_) if expect == AckExpected::OnError => Attempt::Answered(Outcome::NoAckExpected),
        Err(_) => Attempt::Lost(Reason::Timeout(timeout)),
        Ok(None) => Attempt::Lost(Reason::Closed),
        Ok(Some(ack)) => Attempt::Answered(match read_ack(&ack) {
            Some((code, id, error)) if id == control_id => Outcome::Ack { code, error },
            Some((_, got, _)) => Outcome::Mismatch { got },
            None => Outcome::Mismatch { got: String::new() },
        }),
    }
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
}
