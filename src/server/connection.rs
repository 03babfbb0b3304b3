//! One MLLP connection: read frames, store them, answer in order.
//!
//! Pipelined senders may send several frames before reading an ACK. Each
//! frame becomes a future (intake, append, reply) in a `FuturesOrdered`, so
//! ACKs leave in arrival order however the appends finish. At most
//! `max_in_flight` frames are pending; past that the connection stops reading
//! and TCP backpressure reaches the sender.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::codec::FramedRead;

use crate::internal_events as ev;
use tokio_util::sync::CancellationToken;

use crate::intake::{FrameWork, Intake, Origin, SenderPolicy};
use crate::log::Log;
use crate::mllp::{frame, MllpCodec, MllpError};

#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_message_bytes: usize,
    pub max_in_flight: usize,
    pub frame_timeout: Duration,
    pub idle_timeout: Duration,
    pub ack_timeout: Duration,
}

pub struct Connection {
    pub intake: Arc<Intake>,
    pub log: Arc<dyn Log>,
    pub limits: ConnectionLimits,
    pub listener: String,
    pub peer: String,
    /// Set on mTLS connections: the certificate's subject and the MSH-4
    /// facilities it may send as.
    pub sender: Option<Arc<SenderPolicy>>,
}

/// Why a connection ended (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    PeerClosed,
    IdleTimeout,
    FrameTimeout,
    Oversize,
    Shutdown,
    WriteFailed,
    ReadFailed,
}

impl Connection {
    /// Serves one stream (plain TCP or TLS) until the peer leaves, a limit
    /// closes it, or `shutdown` fires and what is in flight is answered.
    pub async fn run<S>(self, socket: S, shutdown: CancellationToken) -> Closed
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        // One stream, no split: ACKs are written from this task, between
        // reads, through the reader's own handle on the stream.
        let mut reader = FramedRead::with_capacity(
            socket,
            MllpCodec::new(self.limits.max_message_bytes),
            16 * 1024,
        );
        let mut pending = FuturesOrdered::new();
        let mut last_activity = Instant::now();
        let mut frame_started: Option<Instant> = None;
        let mut draining: Option<Closed> = None;
        // The loop wakes at least this often to check the frame timer, since
        // partial reads complete inside the codec without waking it.
        let tick = (self.limits.frame_timeout.min(self.limits.idle_timeout) / 4)
            .max(Duration::from_millis(50));

        let closed = loop {
            let junk = reader.decoder_mut().take_junk_bytes();
            if junk > 0 {
                ev::JunkDiscarded {
                    peer: &self.peer,
                    bytes: junk,
                }
                .emit();
            }
            if let Some(reason) = draining {
                if pending.is_empty() {
                    break reason;
                }
            }
            let now = Instant::now();
            frame_started = match (reader.decoder().in_partial_frame(), frame_started) {
                (true, None) => Some(now),
                (true, s) => s,
                (false, _) => None,
            };
            let deadline = match frame_started {
                Some(start) => start + self.limits.frame_timeout,
                None if pending.is_empty() => last_activity + self.limits.idle_timeout,
                None => now + self.limits.ack_timeout * 2,
            };
            let can_read = draining.is_none() && pending.len() < self.limits.max_in_flight;

            tokio::select! {
                biased;
                Some(reply) = pending.next(), if !pending.is_empty() => {
                    let reply: Option<Vec<u8>> = reply;
                    if let Some(bytes) = reply {
                        let framed = frame(&bytes);
                        match timeout(self.limits.frame_timeout, reader.get_mut().write_all(&framed)).await {
                            Ok(Ok(())) => {}
                            _ => break Closed::WriteFailed,
                        }
                    }
                    last_activity = Instant::now();
                }
                _ = shutdown.cancelled(), if draining.is_none() => {
                    draining = Some(Closed::Shutdown);
                }
                read = reader.next(), if can_read => {
                    match read {
                        Some(Ok(payload)) => {
                            frame_started = None;
                            last_activity = Instant::now();
                            pending.push_back(self.handle(payload));
                        }
                        Some(Err(MllpError::Oversize { limit, head })) => {
                            ev::OversizeFrame { peer: &self.peer, limit }.emit();
                            let work = self.intake.oversize(head, limit, &self.origin());
                            pending.push_back(self.store_and_reply(work));
                            draining = Some(Closed::Oversize);
                        }
                        Some(Err(MllpError::Io(_))) => draining = Some(Closed::ReadFailed),
                        None => draining = Some(Closed::PeerClosed),
                    }
                }
                _ = sleep_until(deadline.min(now + tick)) => {
                    let now = Instant::now();
                    if let Some(start) = frame_started {
                        if now >= start + self.limits.frame_timeout {
                            break Closed::FrameTimeout;
                        }
                    } else if pending.is_empty() && draining.is_none() && now >= last_activity + self.limits.idle_timeout {
                        break Closed::IdleTimeout;
                    }
                }
            }
        };
        let _ = reader.get_mut().shutdown().await;
        closed
    }

    fn origin(&self) -> Origin {
        Origin {
            listener: self.listener.clone(),
            peer: self.peer.clone(),
            received_at: OffsetDateTime::now_utc(),
        }
    }

    fn handle(&self, payload: Bytes) -> futures::future::BoxFuture<'static, Option<Vec<u8>>> {
        let work = self
            .intake
            .frame_from(payload, &self.origin(), self.sender.as_deref());
        self.store_and_reply(work)
    }

    /// Appends the frame's records and builds the reply. The reply says AA
    /// only if the append resolved Ok within `ack_timeout`.
    fn store_and_reply(
        &self,
        work: FrameWork,
    ) -> futures::future::BoxFuture<'static, Option<Vec<u8>>> {
        let intake = self.intake.clone();
        let log = self.log.clone();
        let ack_timeout = self.limits.ack_timeout;
        let peer = self.peer.clone();
        let client_cert = self.sender.clone();
        // ACK latency runs from here: the frame is complete and read.
        let received = Instant::now();
        Box::pin(async move {
            let mut work = work;
            let records = std::mem::take(&mut work.records);
            let n = records.len();
            let dead: Vec<String> = records
                .iter()
                .filter(|r| r.topic.ends_with("dlq"))
                .map(|r| r.topic.clone())
                .collect();
            let started = Instant::now();
            let stored = match timeout(ack_timeout, log.append(records)).await {
                Ok(Ok(positions)) => {
                    for (item, p) in work.items.iter().zip(&positions) {
                        tracing::debug!(
                            control_id = item.control_id(),
                            topic = %p.topic, partition = p.partition, offset = p.offset,
                            accepted = item.verdict.is_ok(),
                            "stored"
                        );
                    }
                    true
                }
                Ok(Err(e)) => {
                    tracing::error!(peer = %peer, records = n, error = %e, "append failed; answering AE/CE");
                    false
                }
                Err(_) => {
                    tracing::error!(peer = %peer, records = n, timeout_ms = ack_timeout.as_millis() as u64, "append not confirmed in time; answering AE/CE");
                    false
                }
            };
            for item in &work.items {
                if let Err(r) = &item.verdict {
                    let h = item.header.as_ref();
                    tracing::info!(
                        control_id = item.control_id(),
                        message_type = h.map(|h| h.message_type.as_str()).unwrap_or(""),
                        sending_application =
                            h.map(|h| h.sending_application.as_str()).unwrap_or(""),
                        sending_facility = h.map(|h| h.sending_facility.as_str()).unwrap_or(""),
                        error_code = r.code.code(),
                        reason = r.reason,
                        client_cert = client_cert.as_ref().map_or("", |s| s.identity.as_str()),
                        "message rejected"
                    );
                }
            }
            ev::StoreCommitted {
                backend: log.kind(),
                ok: stored,
                latency: started.elapsed(),
            }
            .emit();
            if stored {
                for topic in &dead {
                    ev::DeadLettered { topic }.emit();
                }
            }
            let reply = intake.reply(&work, stored);
            let latency = received.elapsed();
            for item in &work.items {
                let h = item.header.as_ref();
                ev::MessageReceived {
                    message_type: h.map_or("", |h| h.message_type.as_str()),
                    trigger_event: h.map_or("", |h| h.trigger_event.as_str()),
                    accepted: item.verdict.is_ok(),
                }
                .emit();
                if let Some(code) = item.ack_code(stored) {
                    let error_code = match (&item.verdict, stored) {
                        (_, false) => {
                            Some(crate::hl7::error::ErrorCode::ApplicationInternal.code())
                        }
                        (Err(r), true) => Some(r.code.code()),
                        (Ok(()), true) => None,
                    };
                    ev::AckSent {
                        code: code.as_str(),
                        error_code,
                        latency,
                    }
                    .emit();
                }
            }
            tracing::trace!(
                records = n,
                elapsed_us = started.elapsed().as_micros() as u64,
                stored,
                "frame done"
            );
            reply
        })
    }
}
