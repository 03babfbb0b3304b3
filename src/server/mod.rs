//! The MLLP listener: accept, admit, hand each socket to a [`Connection`].
//!
//! Shutdown follows mini-redis: one signal (a `CancellationToken`) is seen by
//! the accept loop and by every connection; connections stop reading, finish
//! storing and answering what they hold, then close; `serve` returns when the
//! last one has.

pub mod connection;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::internal_events as ev;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use connection::{Closed, Connection, ConnectionLimits};

use crate::intake::Intake;
use crate::log::Log;

pub struct Server {
    pub listener: TcpListener,
    pub intake: Arc<Intake>,
    pub log: Arc<dyn Log>,
    pub limits: ConnectionLimits,
    pub max_connections: usize,
}

impl Server {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `shutdown` is cancelled, then drains every connection.
    pub async fn run(self, shutdown: CancellationToken) {
        let listen = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let tracker = TaskTracker::new();
        let open = Arc::new(AtomicUsize::new(0));
        tracing::info!(listen = %listen, backend = self.log.kind(), max_connections = self.max_connections, "MLLP listener ready");
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
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                ev::ConnectionRefused {
                    peer: &peer.to_string(),
                    max_connections: self.max_connections,
                }
                .emit();
                drop(socket);
                continue;
            };
            let conn = Connection {
                intake: self.intake.clone(),
                log: self.log.clone(),
                limits: self.limits.clone(),
                listener: listen.clone(),
                peer: peer.to_string(),
            };
            let token = shutdown.clone();
            let open = open.clone();
            ev::ConnectionsOpen(open.fetch_add(1, Ordering::Relaxed) + 1).emit();
            tracker.spawn(async move {
                tracing::info!(peer = %peer, "connection opened");
                let why = conn.run(socket, token).await;
                tracing::info!(peer = %peer, reason = ?why, "connection closed");
                ev::ConnectionsOpen(open.fetch_sub(1, Ordering::Relaxed) - 1).emit();
                drop(permit);
            });
        }
        tracker.close();
        tracing::info!(open = tracker.len(), "shutting down: draining connections");
        tracker.wait().await;
        tracing::info!("all connections drained");
    }
}
