//! The MLLP listener: accept, admit, hand each socket to a [`Connection`].
//!
//! Shutdown follows mini-redis: one signal (a `CancellationToken`) is seen by
//! the accept loop and by every connection; connections stop reading, finish
//! storing and answering what they hold, then close; `serve` returns when the
//! last one has.
//!
//! Before a socket becomes a connection it passes admission control
//! ([`admission`]: source IP allowlist, per-IP cap, global cap) and, when
//! TLS is on, a handshake bounded by `tls.handshake_timeout` ([`tls`]).

pub mod admission;
pub mod connection;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::internal_events as ev;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admission::{Admission, IpAllowlist, Refusal};
pub use connection::{Closed, Connection, ConnectionLimits};
pub use tls::{TlsClient, TlsListener};

use crate::intake::Intake;
use crate::log::Log;

pub struct Server {
    pub listener: TcpListener,
    pub intake: Arc<Intake>,
    pub log: Arc<dyn Log>,
    pub limits: ConnectionLimits,
    pub max_connections: usize,
}

/// TLS and admission control for a listener. The default is plain TCP,
/// open to every address, with no per-IP cap.
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<Arc<TlsListener>>,
    pub admission: Arc<Admission>,
}

impl Server {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `shutdown` is cancelled, then drains every connection.
    pub async fn run(self, shutdown: CancellationToken) {
        self.run_with(Security::default(), shutdown).await
    }

    /// Like [`Server::run`], with TLS and admission control.
    pub async fn run_with(self, security: Security, shutdown: CancellationToken) {
        let listen = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let tracker = TaskTracker::new();
        let open = Arc::new(AtomicUsize::new(0));
        // Each connection's open and close is a debug line; an operator gets
        // one INFO line a minute with the counts, when there were any.
        let accepted_total = Arc::new(AtomicUsize::new(0));
        tokio::spawn(summarise_connections(
            open.clone(),
            accepted_total.clone(),
            shutdown.clone(),
        ));
        tracing::info!(
            listen = %listen,
            backend = self.log.kind(),
            max_connections = self.max_connections,
            max_connections_per_ip = security.admission.max_per_ip(),
            tls = security.tls.is_some(),
            mtls = security.tls.as_ref().is_some_and(|t| t.mutual()),
            sender_allowlist = security.tls.as_ref().is_some_and(|t| t.has_allowlist()),
            "MLLP listener ready"
        );
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (socket, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let refuse = |r: Refusal, limit: usize| {
                ev::ConnectionRefused {
                    peer: &peer.to_string(),
                    reason: r.label(),
                    limit,
                }
                .emit()
            };
            // Refused sockets are dropped here: nothing is read from them.
            let ip_slot = match security.admission.admit(peer.ip()) {
                Ok(g) => g,
                Err(r) => {
                    let limit = match r {
                        Refusal::PerIpLimit => security.admission.max_per_ip(),
                        _ => 0,
                    };
                    refuse(r, limit);
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                refuse(Refusal::MaxConnections, self.max_connections);
                continue;
            };
            let _ = socket.set_nodelay(true);
            let conn = Connection {
                intake: self.intake.clone(),
                log: self.log.clone(),
                limits: self.limits.clone(),
                listener: listen.clone(),
                peer: peer.to_string(),
                sender: None,
            };
            let token = shutdown.clone();
            let open = open.clone();
            let tls = security.tls.clone();
            ev::ConnectionsOpen(open.fetch_add(1, Ordering::Relaxed) + 1).emit();
            accepted_total.fetch_add(1, Ordering::Relaxed);
            tracker.spawn(async move {
                let why = match tls {
                    None => {
                        tracing::debug!(peer = %peer, "connection opened");
                        Some(conn.run(socket, token).await)
                    }
                    Some(tls) => serve_tls(&tls, conn, socket, token).await,
                };
                if let Some(why) = why {
                    tracing::debug!(peer = %peer, reason = ?why, "connection closed");
                }
                ev::ConnectionsOpen(open.fetch_sub(1, Ordering::Relaxed) - 1).emit();
                drop(permit);
                drop(ip_slot);
            });
        }
        tracker.close();
        tracing::info!(open = tracker.len(), "shutting down: draining connections");
        tracker.wait().await;
        tracing::info!("all connections drained");
    }
}

/// How often the connection summary is logged.
const CONNECTION_SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Logs, once per [`CONNECTION_SUMMARY_EVERY`] in which connections were
/// accepted or closed, how many were, and how many are open.
async fn summarise_connections(
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(CONNECTION_SUMMARY_EVERY);
    tick.tick().await;
    let (mut last_accepted, mut last_open) = (0, 0);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (now_accepted, now_open) = (
            accepted.load(Ordering::Relaxed),
            open.load(Ordering::Relaxed),
        );
        let new = now_accepted - last_accepted;
        // Closed in the interval: what was open, plus what came, less what is.
        let closed = (last_open + new).saturating_sub(now_open);
        if new > 0 || closed > 0 {
            tracing::info!(
                accepted = new,
                closed,
                open = now_open,
                interval_s = CONNECTION_SUMMARY_EVERY.as_secs(),
                "connections"
            );
        }
        (last_accepted, last_open) = (now_accepted, now_open);
    }
}

/// Handshakes, applies the client certificate's policy, then serves the
/// connection. None when the handshake failed.
async fn serve_tls(
    tls: &TlsListener,
    mut conn: Connection,
    socket: TcpStream,
    shutdown: CancellationToken,
) -> Option<Closed> {
    let stream = handshake(tls, socket, &conn.peer, &shutdown).await?;
    conn.sender = tls
        .policy_for(stream.get_ref().1.peer_certificates())
        .map(Arc::new);
    let client_cert = conn.sender.as_ref().map_or("", |s| s.identity.as_str());
    if conn
        .sender
        .as_ref()
        .and_then(|s| s.facilities.as_ref())
        .is_some_and(|f| f.is_empty())
    {
        tracing::warn!(peer = %conn.peer, client_cert,
            "client certificate matches no [[tls.allow]] entry: every message it sends will be rejected");
    }
    tracing::debug!(peer = %conn.peer, tls = true, client_cert, "connection opened");
    Some(conn.run(stream, shutdown).await)
}

/// The server side of a TLS handshake, bounded by `handshake_timeout` and
/// abandoned at shutdown. None when it failed (already logged and counted).
async fn handshake(
    tls: &TlsListener,
    socket: TcpStream,
    peer: &str,
    shutdown: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let accept = tokio::time::timeout(tls.handshake_timeout, tls.acceptor().accept(socket));
    let result = tokio::select! {
        _ = shutdown.cancelled() => return None,
        r = accept => r,
    };
    match result {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            ev::TlsHandshakeFailed {
                peer,
                reason: "error",
                error: &e.to_string(),
            }
            .emit();
            None
        }
        Err(_) => {
            ev::TlsHandshakeFailed {
                peer,
                reason: "timeout",
                error: "not completed within tls.handshake_timeout",
            }
            .emit();
            None
        }
    }
}
