//! A TCP proxy that can cut the network: for broker-unreachable tests where
//! the broker itself keeps its state.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut_tx: watch::Sender<u64>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `target_port`.
    pub async fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, target_port)
    }

    /// Forwards from an already-bound listener (so the port can be chosen first).
    pub fn serve(listener: TcpListener, target_port: u16) -> Self {
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let flag = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound); // network down: connection reset
                    continue;
                }
                let mut cut = cut_rx.clone();
                // Only cuts after this connection opened should close it.
                cut.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cut_tx }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut_tx.send_modify(|n| *n += 1);
    }

    pub fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
