//! Retention on the embedded store, through the real `serve`: a long run
//! with byte caps stays bounded on disk, and every message it ACKed still
//! reached FHIR before its raw record went.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::Bridge;
use common::{oru, Client};
use hl7bridge::log::embedded::DB_FILE;

/// The database's size as a reader sees it (pages in use, WAL included),
/// and its two files on disk. The files alone depend on when the last
/// checkpoint ran; the page count does not.
fn sizes_of(dir: &Path) -> (u64, u64, u64) {
    let len = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
    let c = rusqlite::Connection::open_with_flags(
        dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let pages: u64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let page_size: u64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    (
        pages * page_size,
        len(DB_FILE),
        len(&format!("{DB_FILE}-wal")),
    )
}

fn stage_outcomes(dir: &Path) -> (i64, i64) {
    let c = rusqlite::Connection::open_with_flags(
        dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mapped: i64 = c
        .query_row(
            "SELECT COALESCE(SUM(count), 0) FROM stage_outcomes WHERE outcome = 'resources'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let all: i64 = c
        .query_row(
            "SELECT COALESCE(SUM(count), 0) FROM stage_outcomes",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (mapped, all)
}

fn class_bytes(dir: &Path, like: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(
        "SELECT COALESCE(SUM(bytes), 0) FROM partition_offsets WHERE topic LIKE ?1 AND topic NOT LIKE '%.dlq'",
        [like],
        |r| r.get(0),
    )
    .unwrap()
}

/// Sends `n` ORU^R01 (8 OBX) on one connection; every one must get AA.
async fn send(bridge: &Bridge, from: usize, n: usize) {
    let mut c = Client::connect(bridge.addr).await;
    for i in from..from + n {
        let ack = c
            .roundtrip(&oru(&format!("RET{i:06}"), &format!("MRN{}", i % 97), 8))
            .await;
        assert_eq!(ack.code(), "AA", "message {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_byte_caps_a_long_run_stays_bounded_and_every_acked_message_reaches_fhir() {
    const ROUNDS: usize = 8;
    const PER_ROUND: usize = 250;
    const RAW_CAP: i64 = 128 * 1024;
    const FHIR_CAP: i64 = 512 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hl7bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[retention]\nraw_bytes = {RAW_CAP}\nfhir_bytes = {FHIR_CAP}\ncheck_every = \"100ms\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let bridge = Bridge::serve(&data, &["--config", config.to_str().unwrap()]);

    let mut sizes = Vec::new();
    for round in 0..ROUNDS {
        send(&bridge, round * PER_ROUND, PER_ROUND).await;
        // Let the stage catch up and a sweep run before measuring.
        let sent = ((round + 1) * PER_ROUND) as i64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while stage_outcomes(&data).1 < sent {
            assert!(Instant::now() < deadline, "the stage did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A sweep (every 100 ms) has brought both classes under their caps.
        while class_bytes(&data, "hl7v2.%") > RAW_CAP || class_bytes(&data, "fhir.%") > FHIR_CAP {
            assert!(
                Instant::now() < deadline,
                "retention did not bring the store under its caps"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sizes.push(sizes_of(&data));
    }
    let total = (ROUNDS * PER_ROUND) as i64;
    let (mapped, all) = stage_outcomes(&data);
    let raw = class_bytes(&data, "hl7v2.%");
    let fhir = class_bytes(&data, "fhir.%");
    println!("retention run: {total} ORU^R01 (8 OBX) sent, {mapped} mapped; raw {raw} B (cap {RAW_CAP}), FHIR {fhir} B (cap {FHIR_CAP})");
    for (i, (live, db, wal)) in sizes.iter().enumerate() {
        println!(
            "  after {:>5} messages: pages in use {live:>9} B (files: db {db:>9} B, wal {wal:>9} B)",
            (i + 1) * PER_ROUND
        );
    }
    bridge.terminate(Duration::from_secs(10));

    // Every ACKed message reached FHIR: the stage mapped each one (its
    // outcome commits with its outputs) before retention could touch it.
    assert_eq!(all, total);
    assert_eq!(mapped, total);
    // The caps hold once the stage is done and a sweep has run.
    assert!(raw <= RAW_CAP, "raw {raw} B over its cap");
    assert!(fhir <= FHIR_CAP, "FHIR {fhir} B over its cap");
    // The store stops growing: the second half of the run adds little to
    // the pages in use (the dedup window keeps one small row per message),
    // although it wrote as much as the first half.
    let half = sizes[ROUNDS / 2 - 1].0;
    let end = sizes[ROUNDS - 1].0;
    assert!(
        end <= half + half / 4,
        "the database grew from {half} B to {end} B over the second half"
    );
}
