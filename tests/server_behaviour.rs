//! The listener's contract under pipelining, hostile framing, timeouts,
//! storage faults and shutdown, over real TCP.

mod common;

use hl7bridge::record::WithHeaders;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use hl7bridge::intake::IntakeConfig;
use hl7bridge::log::{Log, LogError};
use hl7bridge::record::{Position, Record};
use tokio::io::AsyncWriteExt;

/// A backend whose disk has failed: every append errors.
struct FailingLog;
impl Log for FailingLog {
    fn append(&self, _: Vec<Record>) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        async { Err(LogError::Commit("disk I/O error".into())) }.boxed()
    }
    fn kind(&self) -> &'static str {
        "failing"
    }
}

/// A backend that never confirms (a hung disk or unreachable broker).
struct HangingLog;
impl Log for HangingLog {
    fn append(&self, _: Vec<Record>) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        futures::future::pending().boxed()
    }
    fn kind(&self) -> &'static str {
        "hanging"
    }
}

/// The real store, reached slowly: for holding messages in flight.
struct SlowLog(Arc<dyn Log>, Duration);
impl Log for SlowLog {
    fn append(&self, r: Vec<Record>) -> BoxFuture<'static, Result<Vec<Position>, LogError>> {
        let (inner, delay) = (self.0.append(r), self.1);
        async move {
            tokio::time::sleep(delay).await;
            inner.await
        }
        .boxed()
    }
    fn kind(&self) -> &'static str {
        "slow"
    }
}

#[tokio::test]
async fn pipelined_frames_are_acked_in_arrival_order() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let mut burst = Vec::new();
    for i in 0..16 {
        burst.extend(hl7bridge::mllp::frame(&adt(
            &format!("PIPE{i:02}"),
            &format!("M{}", i % 3),
        )));
    }
    client.stream.write_all(&burst).await.unwrap();
    for i in 0..16 {
        let ack = Ack::parse(&client.recv().await);
        assert_eq!(
            (ack.code(), ack.control_id()),
            ("AA", format!("PIPE{i:02}").as_str())
        );
    }
    assert_eq!(server.records("hl7v2.adt").len(), 16);
}

#[tokio::test]
async fn junk_between_frames_is_discarded_and_the_message_still_acked() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client
        .stream
        .write_all(b"\r\n\r\nGET / HTTP/1.0\r\n")
        .await
        .unwrap();
    let ack = client.roundtrip(&adt("JUNK1", "M1")).await;
    assert_eq!(ack.code(), "AA");
    assert_eq!(server.records("hl7v2.adt").len(), 1);
}

#[tokio::test]
async fn an_oversize_frame_gets_ar_104_is_dead_lettered_truncated_and_the_connection_closes() {
    let mut l = limits();
    l.max_message_bytes = 4096;
    let server = TestServer::start_with(l, IntakeConfig::default(), |l| l).await;
    let mut client = server.connect().await;
    let mut big = adt("BIG1", "M1");
    big.extend(std::iter::repeat_n(b'X', 10_000));
    client.send(&big).await;
    let ack = Ack::parse(&client.recv().await);
    assert_eq!((ack.code(), ack.control_id()), ("AR", "BIG1"));
    assert_eq!(ack.segment("ERR").unwrap()[3], "104^Value too long^HL70357");
    assert!(client.closed_within(Duration::from_secs(5)).await);
    let dlq = server.records("hl7v2.dlq");
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].header("dlq.truncated").is_some());
    assert!(dlq[0].value.len() <= 64 * 1024);
    assert!(server.records("hl7v2.adt").is_empty());
}

#[tokio::test]
async fn a_stalled_partial_frame_is_closed_after_frame_timeout() {
    let mut l = limits();
    l.frame_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(l, IntakeConfig::default(), |l| l).await;
    let mut client = server.connect().await;
    client
        .stream
        .write_all(b"\x0bMSH|^~\\&|SLOW")
        .await
        .unwrap();
    assert!(
        client.closed_within(Duration::from_secs(5)).await,
        "closed by frame_timeout"
    );
    assert!(server.records("hl7v2.adt").is_empty());
}

#[tokio::test]
async fn a_slowloris_drip_does_not_reset_the_frame_timer() {
    let mut l = limits();
    l.frame_timeout = Duration::from_millis(400);
    let server = TestServer::start_with(l, IntakeConfig::default(), |l| l).await;
    let mut client = server.connect().await;
    client.stream.write_all(b"\x0b").await.unwrap();
    let start = std::time::Instant::now();
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client.stream.write_all(b"M").await.is_err() {
            closed = true;
            break;
        }
        if client.closed_within(Duration::from_millis(1)).await {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a frame dripping one byte per 100 ms is closed (elapsed {:?})",
        start.elapsed()
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_idle_timeout() {
    let mut l = limits();
    l.idle_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(l, IntakeConfig::default(), |l| l).await;
    let mut client = server.connect().await;
    assert_eq!(client.roundtrip(&adt("IDLE1", "M1")).await.code(), "AA");
    assert!(client.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn storage_failure_answers_ae_207_never_aa() {
    let server =
        TestServer::start_with(limits(), IntakeConfig::default(), |_| Arc::new(FailingLog)).await;
    let mut client = server.connect().await;
    let ack = client.roundtrip(&adt("FAIL1", "M1")).await;
    assert_eq!((ack.code(), ack.control_id()), ("AE", "FAIL1"));
    assert!(ack.segment("ERR").unwrap()[3].starts_with("207^"));
    // A message that would be rejected is also answered AE: its dead-letter
    // copy was not stored, so the sender must keep and resend it.
    let ack = client
        .roundtrip(b"MSH|^~\\&|A|B|C|D|2026||SIU^S12|FAIL2|P|2.5.1\r")
        .await;
    assert_eq!(ack.code(), "AE");
    // Enhanced mode: CE.
    let ack = client
        .roundtrip(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|FAIL3|P|2.5.1|||AL|NE\rPID|||1\r")
        .await;
    assert_eq!(ack.code(), "CE");
}

#[tokio::test]
async fn an_unconfirmed_append_answers_ae_after_ack_timeout() {
    let mut l = limits();
    l.ack_timeout = Duration::from_millis(200);
    let server = TestServer::start_with(l, IntakeConfig::default(), |_| Arc::new(HangingLog)).await;
    let mut client = server.connect().await;
    let ack = client.roundtrip(&adt("HANG1", "M1")).await;
    assert_eq!((ack.code(), ack.control_id()), ("AE", "HANG1"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_messages_then_stops() {
    let server = TestServer::start_with(limits(), IntakeConfig::default(), |l| {
        Arc::new(SlowLog(l, Duration::from_millis(400)))
    })
    .await;
    let mut client = server.connect().await;
    let mut burst = Vec::new();
    for i in 0..8 {
        burst.extend(hl7bridge::mllp::frame(&adt(&format!("DRAIN{i}"), "M1")));
    }
    client.stream.write_all(&burst).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown.cancel();
    for i in 0..8 {
        let ack = Ack::parse(&client.recv().await);
        assert_eq!(
            (ack.code(), ack.control_id()),
            ("AA", format!("DRAIN{i}").as_str())
        );
    }
    assert!(client.closed_within(Duration::from_secs(5)).await);
    tokio::time::timeout(Duration::from_secs(5), server.handle)
        .await
        .expect("server stops")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
    let dir = server.dir;
    let stored = hl7bridge::log::embedded::EmbeddedReader::open(dir.path())
        .unwrap()
        .read("hl7v2.adt", 0, 100)
        .unwrap();
    assert_eq!(stored.len(), 8);
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        hl7bridge::log::embedded::EmbeddedLog::open(hl7bridge::log::embedded::EmbeddedConfig::new(
            dir.path(),
        ))
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = hl7bridge::server::Server {
        listener,
        intake: Arc::new(hl7bridge::intake::Intake::new(IntakeConfig::default())),
        log,
        limits: limits(),
        max_connections: 2,
    };
    let token = tokio_util::sync::CancellationToken::new();
    tokio::spawn(server.run(token.clone()));
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    assert_eq!(a.roundtrip(&adt("CAP1", "M")).await.code(), "AA");
    assert_eq!(b.roundtrip(&adt("CAP2", "M")).await.code(), "AA");
    let mut c = Client::connect(addr).await;
    assert!(
        c.closed_within(Duration::from_secs(5)).await,
        "third connection is closed"
    );
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = Client::connect(addr).await;
    assert_eq!(
        d.roundtrip(&adt("CAP3", "M")).await.code(),
        "AA",
        "a freed slot is reused"
    );
    token.cancel();
}

#[tokio::test]
async fn eight_concurrent_connections_every_message_acked_and_stored_once() {
    let server = TestServer::start().await;
    let mut tasks = Vec::new();
    for c in 0..8 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            for i in 0..200 {
                let id = format!("C{c}-{i}");
                let ack = client.roundtrip(&adt(&id, &format!("MRN{}", i % 17))).await;
                assert_eq!((ack.code(), ack.control_id()), ("AA", id.as_str()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let records = server.records("hl7v2.adt");
    assert_eq!(records.len(), 1600);
    let mut ids: Vec<_> = records
        .iter()
        .map(|r| r.header("hl7.control_id").unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1600, "each exactly once");
    // Per patient key, offsets within a partition follow send order on a connection.
    for c in 0..8 {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| {
                r.header("hl7.control_id")
                    .unwrap()
                    .starts_with(&format!("C{c}-"))
            })
            .collect();
        for w in mine.windows(2) {
            if w[0].key == w[1].key {
                assert!(w[0].offset < w[1].offset);
            }
        }
    }
}
