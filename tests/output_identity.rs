//! What the bridge emits for every fixture, byte for byte, against a kept
//! snapshot (`tests/golden/outputs.jsonl`): the ACKs (MSH-7 and MSH-10
//! masked, they are a clock and a counter), every stored raw record with its
//! headers, and every FHIR Avro record with its headers.
//!
//! Everything goes through the real binary: `serve` on a fresh data
//! directory, the fixtures sent over one MLLP connection in file order, the
//! stage left to finish, then `tail` of every topic. A change that moves code
//! around must leave this file untouched; a change that means to alter the
//! output regenerates it with `UPDATE_GOLDEN=1` and shows the diff in review.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{bin, Bridge};
use common::{fixture, fixtures_dir, Client};
use serde::Deserialize;
use serde_json::Value;

const SNAPSHOT: &str = "tests/golden/outputs.jsonl";

#[derive(Deserialize)]
struct Manifest {
    fixture: Vec<Fixture>,
}

#[derive(Deserialize)]
struct Fixture {
    file: String,
    messages: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    ack: String,
}

/// Headers whose values change from run to run: a clock and the ports of
/// this run's connection.
const VOLATILE_HEADERS: &[&str] = &["bridge.received_at", "bridge.peer", "bridge.listener"];

/// An ACK with its clock and generated control IDs blanked: MSH-7 and
/// MSH-10, and in a batch reply FHS-7/BHS-7 and FHS-11/BHS-11.
fn masked_ack(ack: &[u8]) -> String {
    let text = String::from_utf8_lossy(ack).into_owned();
    let fs = text.chars().nth(3).unwrap_or('|');
    text.split('\r')
        .map(|seg| {
            let volatile: &[usize] = match seg.get(..3) {
                Some("MSH") => &[7, 10],
                Some("FHS" | "BHS") => &[7, 11],
                _ => return seg.to_owned(),
            };
            let mut f: Vec<&str> = seg.split(fs).collect();
            // Field 1 is the separator itself, so field n is at index n-1.
            for &n in volatile {
                if f.len() > n - 1 {
                    f[n - 1] = "*";
                }
            }
            f.join(&fs.to_string())
        })
        .collect::<Vec<_>>()
        .join("\r")
}

fn masked_record(line: &str) -> String {
    let mut v: Value = serde_json::from_str(line).expect("tail prints JSON");
    v["timestamp"] = Value::from("*");
    if let Some(h) = v["headers"].as_object_mut() {
        for name in VOLATILE_HEADERS {
            if h.contains_key(*name) {
                h.insert((*name).to_owned(), Value::from("*"));
            }
        }
    }
    v.to_string()
}

fn run(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run hl7bridge")
}

async fn send_every_fixture(addr: std::net::SocketAddr, out: &mut Vec<String>) {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.toml")).unwrap();
    let manifest: Manifest = toml::from_str(&text).unwrap();
    let mut client = Client::connect(addr).await;
    for fx in &manifest.fixture {
        let raw = fixture(&fx.file);
        client.send(&raw).await;
        let batch = raw.starts_with(b"FHS") || raw.starts_with(b"BHS");
        let acks = fx.messages.iter().filter(|m| m.ack != "none").count();
        let replies = if batch { acks.min(1) } else { acks };
        for _ in 0..replies {
            let ack = client.recv().await;
            out.push(serde_json::json!({"fixture": fx.file, "ack": masked_ack(&ack)}).to_string());
        }
    }
}

/// Waits until `reconcile` finds every raw record accounted for and none
/// pending: the stage yields to ingest, so it may still be behind when the
/// last ACK arrives.
fn wait_for_stage(dir: &Path) {
    let start = Instant::now();
    loop {
        let out = run(&["reconcile", "--json"], dir);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.success() && report["summary"]["pending"] == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the stage did not finish the fixtures within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn outputs() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    let mut lines = Vec::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(send_every_fixture(bridge.addr, &mut lines));
    wait_for_stage(dir.path());
    assert!(bridge
        .terminate(Duration::from_secs(20))
        .is_some_and(|s| s.success()));

    let topics = run(&["topics"], dir.path());
    assert!(topics.status.success());
    let names: Vec<String> = String::from_utf8(topics.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(names.iter().any(|n| n == "fhir.observation"), "{names:?}");
    for topic in &names {
        let out = run(
            &["tail", topic, "--from-beginning", "--format", "json"],
            dir.path(),
        );
        assert!(out.status.success(), "tail {topic}");
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            lines.push(masked_record(line));
        }
    }
    lines
}

#[test]
fn every_fixture_yields_the_same_acks_raw_records_and_fhir_records_as_the_snapshot() {
    let got = outputs();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got.join("\n") + "\n").unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).expect("snapshot (UPDATE_GOLDEN=1 writes it)");
    let want: Vec<&str> = want.lines().collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {} of {SNAPSHOT} differs", i + 1);
    }
    assert_eq!(got.len(), want.len(), "number of lines in {SNAPSHOT}");
}
