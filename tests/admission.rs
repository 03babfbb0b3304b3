//! Admission control and the listener's bounds under hostile peers, over
//! real TCP: the source IP allowlist, the per-IP cap, the global cap with
//! half-open connections, slowloris on many connections, oversize frames
//! and junk floods. Waits are generous; nothing asserts on elapsed time.

mod common;

use hl7bridge::record::WithHeaders;
use std::sync::Arc;
use std::time::Duration;

use common::process::Bridge;
use common::secure::*;
use common::*;
use hl7bridge::server::{Admission, IpAllowlist, Security};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(10);

fn security(allow: &[&str], per_ip: usize) -> Security {
    Security {
        tls: None,
        admission: Arc::new(Admission::new(IpAllowlist::parse(allow).unwrap(), per_ip)),
    }
}

#[tokio::test]
async fn an_address_outside_the_allowlist_is_refused_before_anything_is_read() {
    let server = start_secure(security(&["127.0.0.1/32"], 0), 64, limits()).await;
    // 127.0.0.2 is loopback too, but not allowed.
    let mut refused = StreamClient::new(connect_from("127.0.0.2", server.addr).await);
    assert!(refused.closed_within(WAIT).await, "closed at once");
    let _ = refused.send(&adt("DENIED1", "M1")).await;
    assert_eq!(refused.recv_within(Duration::from_secs(1)).await, None);

    let mut allowed = StreamClient::new(connect_from("127.0.0.1", server.addr).await);
    let ack = allowed.roundtrip(&adt("ALLOWED1", "M1")).await.unwrap();
    assert_eq!(ack.code(), "AA");
    let stored = server.records("hl7v2.adt");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].header("hl7.control_id"), Some("ALLOWED1"));
    assert!(server.records("hl7v2.dlq").is_empty());
}

#[tokio::test]
async fn an_allowlist_of_other_networks_refuses_loopback() {
    let server = start_secure(security(&["10.0.0.0/8", "fd00::/8"], 0), 64, limits()).await;
    let mut c = server.connect().await;
    assert!(c.closed_within(WAIT).await);
    assert!(server.records("hl7v2.adt").is_empty());
}

#[tokio::test]
async fn the_per_ip_cap_refuses_one_more_while_the_others_keep_working() {
    let server = start_secure(security(&[], 2), 64, limits()).await;
    let mut a = StreamClient::new(connect_from("127.0.0.1", server.addr).await);
    let mut b = StreamClient::new(connect_from("127.0.0.1", server.addr).await);
    assert_eq!(a.roundtrip(&adt("IP1", "M")).await.unwrap().code(), "AA");
    assert_eq!(b.roundtrip(&adt("IP2", "M")).await.unwrap().code(), "AA");
    let mut third = StreamClient::new(connect_from("127.0.0.1", server.addr).await);
    assert!(
        third.closed_within(WAIT).await,
        "the third from 127.0.0.1 is refused"
    );
    // The admitted two still work, and another address has its own count.
    assert_eq!(a.roundtrip(&adt("IP3", "M")).await.unwrap().code(), "AA");
    assert_eq!(b.roundtrip(&adt("IP4", "M")).await.unwrap().code(), "AA");
    let mut other = StreamClient::new(connect_from("127.0.0.3", server.addr).await);
    assert_eq!(
        other.roundtrip(&adt("IP5", "M")).await.unwrap().code(),
        "AA"
    );
    // Closing one frees its slot (the server notices the EOF first).
    drop(a);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = StreamClient::new(connect_from("127.0.0.1", server.addr).await);
        if let Some(ack) = c.roundtrip(&adt("IP6", "M")).await {
            again = Some(ack);
            break;
        }
    }
    assert_eq!(again.expect("a freed slot is reused").code(), "AA");
    assert_eq!(server.records("hl7v2.adt").len(), 6);
}

#[test]
fn refusals_are_counted_by_reason_on_the_real_binary() {
    let data = tempfile::tempdir().unwrap();
    let (bridge, metrics) = Bridge::serve_with_metrics(
        data.path(),
        &[
            "--allow-ip",
            "127.0.0.1,127.0.0.3",
            "--max-connections-per-ip",
            "1",
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut denied = StreamClient::new(connect_from("127.0.0.2", bridge.addr).await);
        assert!(denied.closed_within(WAIT).await);
        let mut first = StreamClient::new(connect_from("127.0.0.1", bridge.addr).await);
        assert_eq!(first.roundtrip(&adt("M1", "M")).await.unwrap().code(), "AA");
        let mut second = StreamClient::new(connect_from("127.0.0.1", bridge.addr).await);
        assert!(second.closed_within(WAIT).await);
        let mut other = StreamClient::new(connect_from("127.0.0.3", bridge.addr).await);
        assert_eq!(other.roundtrip(&adt("M2", "M")).await.unwrap().code(), "AA");
        let text = reqwest::get(format!("{metrics}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |reason: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("hl7bridge_refused_connections_total")
                        && l.contains(&format!("reason=\"{reason}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(value("ip_not_allowed").as_deref(), Some("1"), "{text}");
        assert_eq!(value("per_ip_limit").as_deref(), Some("1"), "{text}");
    });
}

#[tokio::test]
async fn half_open_connections_fill_the_cap_then_idle_out_and_a_sender_gets_in() {
    let mut l = limits();
    l.idle_timeout = Duration::from_millis(500);
    let server = start_secure(Security::default(), 8, l).await;
    // Eight connections that never send anything hold every slot.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(server.connect().await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every one is closed by idle_timeout, none is left hanging.
    for c in &mut idle {
        assert!(c.closed_within(WAIT).await, "idle connection closed");
    }
    let mut ok = None;
    for _ in 0..50 {
        let mut c = server.connect().await;
        c.send(&adt("AFTERIDLE", "M")).await;
        if let Some(a) = c.recv_within(Duration::from_secs(2)).await {
            ok = Some(Ack::parse(&a));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ok.expect("a slot is free after the idle ones closed")
            .code(),
        "AA"
    );
}

#[tokio::test]
async fn many_slowloris_connections_are_all_cut_and_a_real_sender_is_served_meanwhile() {
    let mut l = limits();
    l.frame_timeout = Duration::from_millis(500);
    let server = start_secure(Security::default(), 128, l).await;
    let addr = server.addr;
    let mut drips = Vec::new();
    for _ in 0..50 {
        drips.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.stream.write_all(b"\x0bMSH|").await.unwrap();
            // One byte every 200 ms: each write would reset an idle timer,
            // but not the frame timer.
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if c.stream.write_all(b"X").await.is_err() {
                    return true;
                }
                if c.closed_within(Duration::from_millis(1)).await {
                    return true;
                }
            }
            false
        }));
    }
    let mut sender = server.connect().await;
    for i in 0..20 {
        let id = format!("REAL{i}");
        assert_eq!(sender.roundtrip(&adt(&id, "M")).await.code(), "AA");
    }
    for d in drips {
        assert!(d.await.unwrap(), "a dripping connection was closed");
    }
    assert_eq!(server.records("hl7v2.adt").len(), 20);
    assert!(
        server.records("hl7v2.dlq").is_empty(),
        "partial frames are not stored"
    );
}

#[tokio::test]
async fn oversize_frames_on_many_connections_each_get_ar_104_and_are_closed() {
    let mut l = limits();
    l.max_message_bytes = 64 * 1024;
    let server = start_secure(Security::default(), 64, l).await;
    let addr = server.addr;
    let mut tasks = Vec::new();
    for i in 0..16 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut big = adt(&format!("BIG{i}"), "M");
            big.extend(std::iter::repeat_n(b'X', 1 << 20));
            // The server may close before all of it is written.
            let _ = c.stream.write_all(&hl7bridge::mllp::frame(&big)).await;
            let ack = c.recv_within(WAIT).await.map(|a| Ack::parse(&a));
            let closed = c.closed_within(WAIT).await;
            (ack, closed)
        }));
    }
    for t in tasks {
        let (ack, closed) = t.await.unwrap();
        let ack = ack.expect("an AR before the close");
        assert_eq!(ack.code(), "AR");
        assert!(ack.segment("ERR").unwrap()[3].starts_with("104^"));
        assert!(closed);
    }
    let dlq = server.records("hl7v2.dlq");
    assert_eq!(dlq.len(), 16);
    assert!(dlq.iter().all(|r| r.value.len() <= 64 * 1024));
    assert!(server.records("hl7v2.adt").is_empty());
}

#[tokio::test]
async fn a_junk_flood_is_discarded_without_storing_and_the_connection_still_works() {
    let server = start_secure(Security::default(), 64, limits()).await;
    let mut c = server.connect().await;
    // 8 MiB with no start block: nothing to frame, nothing to keep.
    let junk = vec![b'J'; 1 << 20];
    for _ in 0..8 {
        c.stream.write_all(&junk).await.unwrap();
    }
    let ack = c.roundtrip(&adt("AFTERJUNK", "M")).await;
    assert_eq!((ack.code(), ack.control_id()), ("AA", "AFTERJUNK"));
    assert_eq!(server.records("hl7v2.adt").len(), 1);
    assert!(
        server.records("hl7v2.dlq").is_empty(),
        "junk is not a message"
    );
}
