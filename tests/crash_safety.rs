//! An ACK is a promise: after SIGKILL and restart, every ACKed message is in
//! the store, exactly once, and offsets continue where they were.

mod common;

use hl7bridge::record::WithHeaders;
use std::collections::HashMap;
use std::time::Duration;

use common::process::Bridge;
use common::*;
use hl7bridge::log::embedded::EmbeddedReader;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_message_survives_sigkill_right_after_the_last_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for round in 0..3 {
        let bridge = Bridge::serve(dir.path(), &[]);
        let mut client = Client::connect(bridge.addr).await;
        for i in 0..150 {
            let id = format!("KILL{round}-{i:03}");
            let ack = client.roundtrip(&adt(&id, &format!("MRN{}", i % 11))).await;
            assert_eq!((ack.code(), ack.control_id()), ("AA", id.as_str()));
            acked.push(id);
        }
        // No pause, no shutdown: the process dies right after the last ACK.
        bridge.kill();
    }
    let restarted = Bridge::serve(dir.path(), &[]);
    let records = EmbeddedReader::open(dir.path())
        .unwrap()
        .read("hl7v2.adt", 0, 10_000)
        .unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *seen
            .entry(r.header("hl7.control_id").unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &acked {
        assert_eq!(seen.get(id), Some(&1), "{id} ACKed, so stored exactly once");
    }
    // Offsets per partition are dense and unique across the restarts.
    let mut by_partition: HashMap<i32, Vec<i64>> = HashMap::new();
    for r in &records {
        by_partition.entry(r.partition).or_default().push(r.offset);
    }
    for (p, mut offs) in by_partition {
        offs.sort_unstable();
        assert_eq!(
            offs,
            (0..offs.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
    restarted.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    let mut client = Client::connect(bridge.addr).await;
    assert_eq!(client.roundtrip(&adt("TERM1", "M1")).await.code(), "AA");
    let status = tokio::task::spawn_blocking(move || bridge.terminate(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit 0 after SIGTERM"
    );
    assert!(client.closed_within(Duration::from_secs(5)).await);
}
