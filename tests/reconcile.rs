//! `hl7bridge reconcile`, the safety net after the real-time path: every raw
//! record has its recorded outcome (FHIR records with indexes exactly
//! 0..source.count, a fhir.dlq entry, no FHIR content, or a sender
//! duplicate), and an output lost, written twice or left without its raw
//! record is found and named by coordinates and control ID, never content.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{bin, Bridge};
use common::stage::wait_for_stage;
use common::tansu::Tansu;
use common::{adt, kafka_config, oru, Client};
use hl7bridge::log::embedded::{EmbeddedReader, DB_FILE};
use serde_json::Value;

const GROUP: &str = "hl7bridge-transform";
const WAIT: Duration = Duration::from_secs(60);
/// Content that must never appear in reconcile's output.
const PHI: [&str; 4] = ["PHIMRN", "TESTPATIENT", "SECRETVALUE", "4WEST"];

async fn send_all(addr: std::net::SocketAddr, messages: &[Vec<u8>]) {
    let mut c = Client::connect(addr).await;
    for m in messages {
        assert_eq!(c.roundtrip(m).await.code(), "AA");
    }
}

/// An ADT with no PV1: valid, with nothing to map.
fn adt_without_pv1(control_id: &str, mrn: &str) -> Vec<u8> {
    String::from_utf8(adt(control_id, mrn))
        .unwrap()
        .replace("PV1|1|I|4WEST^401^A\r", "")
        .into_bytes()
}

/// An ORU whose OBX has no OBX-3: the stage dead-letters it to fhir.dlq.
fn unmappable_oru(control_id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|LABAPP|TESTFAC|HL7BRIDGE|INT|20261122120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1\rPID|1||PHIMRN9^^^GENHOSP^MR||TESTPATIENT^BETA\rOBR|1|P1|F1|X^Y^LN\rOBX|1|ST|||SECRETVALUE||||||F\r").into_bytes()
}

/// Runs `reconcile --data-dir DIR --json ...`: exit status and the report.
fn reconcile_json(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let (code, out) = reconcile(dir, &[&["--json"], extra].concat());
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (code, report)
}

/// Runs `reconcile --data-dir DIR ...`: exit status and stdout.
fn reconcile(dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .arg("reconcile")
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    for secret in PHI {
        assert!(
            !stdout.contains(secret),
            "output leaks message content: {stdout}"
        );
    }
    let code = out.status.code().expect("exit status");
    assert!(
        code == 0 || code == 1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

fn summary(report: &Value, name: &str) -> u64 {
    report["summary"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("summary.{name}: {report}"))
}

/// `(topic, partition, offset)` of the raw record with this control ID.
fn raw_coordinates(dir: &Path, topic: &str, control_id: &str) -> (String, i64, i64) {
    let reader = EmbeddedReader::open(dir).unwrap();
    let r = reader
        .read(topic, 0, 1000)
        .unwrap()
        .into_iter()
        .find(|r| r.header("hl7.control_id") == Some(control_id))
        .unwrap_or_else(|| panic!("no {control_id} on {topic}"));
    (r.topic, r.partition as i64, r.offset)
}

fn findings(report: &Value, kind: &str) -> Vec<(String, i64, i64, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["finding"] == kind)
        .map(|f| {
            (
                f["topic"].as_str().unwrap().to_owned(),
                f["partition"].as_i64().unwrap(),
                f["offset"].as_i64().unwrap(),
                f["control_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn with_control_id(c: (String, i64, i64), control_id: &str) -> (String, i64, i64, String) {
    (c.0, c.1, c.2, control_id.to_owned())
}

fn tamper(dir: &Path, sql: &str) {
    let db = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    assert_eq!(db.execute(sql, []).unwrap(), 1, "{sql}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_raw_record_has_its_outcome_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    send_all(
        bridge.addr,
        &[
            adt("ADT-1", "PHIMRN1"),
            // A resend after a lost ACK: stored twice, emitted once.
            adt("ADT-1", "PHIMRN1"),
            adt_without_pv1("ADT-2", "PHIMRN2"),
            oru("ORU-1", "PHIMRN3", 3),
            unmappable_oru("ORU-BAD"),
            oru("ORU-2", "PHIMRN4", 2),
        ],
    )
    .await;
    wait_for_stage(dir.path(), GROUP, WAIT);
    bridge.terminate(Duration::from_secs(10));

    // A clean run: every record accounted for, exit 0.
    let (code, report) = reconcile_json(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(summary(&report, "raw"), 6);
    assert_eq!(summary(&report, "resources"), 3, "ADT-1, ORU-1, ORU-2");
    assert_eq!(summary(&report, "no_content"), 1, "the ADT without PV1");
    assert_eq!(summary(&report, "duplicate"), 1, "the resend of ADT-1");
    assert_eq!(
        summary(&report, "dead_lettered"),
        1,
        "the ORU without OBX-3"
    );
    assert_eq!(summary(&report, "pending"), 0);
    assert_eq!(summary(&report, "findings"), 0);
    let (code, text) = reconcile(dir.path(), &[]);
    assert_eq!(code, 0);
    for row in [
        "resources",
        "no_content",
        "duplicate",
        "dead-lettered",
        "pending",
        "missing",
        "partial",
        "duplicated",
        "orphan",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(row)),
            "no {row} row in:\n{text}"
        );
    }

    // The last Observation of ORU-2 is lost: ORU-2 is partial.
    tamper(
        dir.path(),
        "DELETE FROM records WHERE topic='fhir.observation' AND id = (SELECT MAX(id) FROM records WHERE topic='fhir.observation')",
    );
    let oru2 = raw_coordinates(dir.path(), "hl7v2.oru", "ORU-2");
    let (code, report) = reconcile_json(dir.path(), &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        findings(&report, "partial"),
        vec![with_control_id(oru2.clone(), "ORU-2")]
    );
    assert_eq!(summary(&report, "findings"), 1, "{report:#}");
    assert_eq!(summary(&report, "resources"), 2);
    let (code, text) = reconcile(dir.path(), &[]);
    assert_eq!(code, 1);
    let line = format!("{}/{}/{}", oru2.0, oru2.1, oru2.2);
    assert!(
        text.lines()
            .any(|l| l.starts_with("partial") && l.contains(&line) && l.contains("ORU-2")),
        "no finding line for {line}:\n{text}"
    );

    // ADT-1's Encounter is written a second time: duplicated.
    tamper(
        dir.path(),
        "INSERT INTO records (topic, partition, offset, timestamp_ms, key, headers, value)
         SELECT topic, partition, offset + 1000, timestamp_ms, key, headers, value FROM records
         WHERE id = (SELECT MIN(id) FROM records WHERE topic='fhir.encounter')",
    );
    let adt1 = raw_coordinates(dir.path(), "hl7v2.adt", "ADT-1");
    let (code, report) = reconcile_json(dir.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&report, "duplicated"),
        vec![with_control_id(adt1, "ADT-1")]
    );
    assert_eq!(findings(&report, "partial").len(), 1);
    assert_eq!(
        summary(&report, "duplicate"),
        1,
        "the resend is still only a duplicate"
    );

    // ORU-1's raw record disappears: its four outputs are orphans.
    let oru1 = raw_coordinates(dir.path(), "hl7v2.oru", "ORU-1");
    tamper(
        dir.path(),
        &format!(
            "DELETE FROM records WHERE topic='hl7v2.oru' AND partition={} AND offset={}",
            oru1.1, oru1.2
        ),
    );
    let (code, report) = reconcile_json(dir.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&report, "orphan"),
        vec![with_control_id(oru1, "ORU-1")]
    );
    assert_eq!(summary(&report, "raw"), 5);

    // A window: the last hour still sees everything; a window in the future
    // holds no raw record, so nothing in it can be wrong.
    let (code, report) = reconcile_json(dir.path(), &["--since", "1h"]);
    assert_eq!(code, 1);
    assert_eq!(summary(&report, "findings"), 3, "{report:#}");
    let (code, report) = reconcile_json(dir.path(), &["--since", "2099-01-01T00:00:00Z"]);
    assert_eq!((code, summary(&report, "raw")), (0, 0), "{report:#}");
    let (code, report) = reconcile_json(dir.path(), &["--until", "2000-01-01T00:00:00Z"]);
    assert_eq!((code, summary(&report, "raw")), (0, 0), "{report:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_the_stage_has_not_reached_are_pending_not_missing() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &["--no-transform"]);
    send_all(
        bridge.addr,
        &[
            adt("PEND-1", "PHIMRN1"),
            oru("PEND-2", "PHIMRN2", 2),
            unmappable_oru("PEND-3"),
        ],
    )
    .await;
    bridge.terminate(Duration::from_secs(10));

    let (code, report) = reconcile_json(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (summary(&report, "raw"), summary(&report, "pending")),
        (3, 3)
    );
    assert_eq!(summary(&report, "missing"), 0);

    // Once the stage has run, they have their outcomes.
    let mut transform = Command::new(bin())
        .args(["transform", "--registry-listen", "", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_stage(dir.path(), GROUP, WAIT);
    transform.kill().unwrap();
    transform.wait().unwrap();
    let (code, report) = reconcile_json(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(summary(&report, "pending"), 0);
    assert_eq!(summary(&report, "resources"), 2);
    assert_eq!(summary(&report, "dead_lettered"), 1);
}

/// Runs `reconcile --kafka-brokers B --json`: exit status and the report.
fn reconcile_kafka(brokers: &str) -> (i32, Value) {
    let out = Command::new(bin())
        .args(["reconcile", "--json", "--kafka-brokers", brokers])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    for secret in PHI {
        assert!(
            !stdout.contains(secret),
            "output leaks message content: {stdout}"
        );
    }
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().expect("exit status"), report)
}

/// On Kafka: before the stage runs every record is pending (the consumer
/// group has committed nothing); after, each has its outcome.
#[tokio::test(flavor = "multi_thread")]
async fn on_kafka_records_are_pending_until_the_group_commits_then_accounted_for() {
    let Some(broker) = Tansu::memory() else {
        return;
    };
    let brokers = broker.brokers();
    let cfg = kafka_config(&brokers).await;
    let outputs: Vec<String> = ["fhir.encounter", "fhir.observation", "fhir.dlq"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    hl7bridge::log::kafka::create_topics(&cfg, &outputs, 6, 1)
        .await
        .unwrap();
    let serve_dir = tempfile::tempdir().unwrap();
    let (bridge, registry) =
        Bridge::serve_with_registry(serve_dir.path(), &["--kafka-brokers", &brokers]);
    send_all(
        bridge.addr,
        &[
            adt("KADT-1", "PHIMRN1"),
            adt("KADT-1", "PHIMRN1"),
            adt_without_pv1("KADT-2", "PHIMRN2"),
            oru("KORU-1", "PHIMRN3", 3),
            unmappable_oru("KORU-BAD"),
        ],
    )
    .await;

    let (code, report) = tokio::task::block_in_place(|| reconcile_kafka(&brokers));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (summary(&report, "raw"), summary(&report, "pending")),
        (5, 5),
        "{report:#}"
    );

    let work = tempfile::tempdir().unwrap();
    let mut transform = Command::new(bin())
        .args([
            "transform",
            "--kafka-brokers",
            &brokers,
            "--schema-registry-url",
            &registry,
        ])
        .arg("--data-dir")
        .arg(work.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The group commits its offsets about once a second.
    let start = std::time::Instant::now();
    let report = loop {
        let (code, report) = tokio::task::block_in_place(|| reconcile_kafka(&brokers));
        if summary(&report, "pending") == 0 {
            assert_eq!(code, 0, "{report:#}");
            break report;
        }
        assert!(start.elapsed() < WAIT * 2, "still pending: {report:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    transform.kill().unwrap();
    transform.wait().unwrap();
    assert_eq!(summary(&report, "resources"), 2, "{report:#}");
    assert_eq!(summary(&report, "no_content"), 1);
    assert_eq!(summary(&report, "duplicate"), 1);
    assert_eq!(summary(&report, "dead_lettered"), 1);
    assert_eq!(summary(&report, "findings"), 0);
    drop(bridge);
}
