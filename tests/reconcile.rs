//! `hl7bridge reconcile`, the safety net after the real-time path: every raw
//! record has its recorded outcome (FHIR records with indexes exactly
//! 0..source.count, a fhir.dlq entry, no FHIR content, or a sender
//! duplicate), and an output lost, written twice or left without its raw
//! record is found and named by coordinates and control ID, never content.
//! The gap counts go to a Prometheus textfile with `--metrics-file`; on the
//! embedded store `--repair` re-drives missing and partial records through
//! the transform, idempotently, and reports what an append-only log cannot
//! repair.

mod common;

use hl7bridge::record::WithHeaders;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{bin, Bridge};
use common::stage::{
    decoded_by_source, embedded_decoder, output_id, outputs, source_id, wait_for_stage, OutputId,
};
use common::tansu::Tansu;
use common::{adt, kafka_config, oru, Client};
use hl7bridge::log::embedded::{EmbeddedReader, DB_FILE};
use hl7bridge::record::StoredRecord;
use hl7bridge::transform::{Mapped, Mapper};
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

/// An ADT with neither PID nor PV1: valid, with nothing to map (with a PID
/// it would update the Patient).
fn adt_without_content(control_id: &str) -> Vec<u8> {
    String::from_utf8(adt(control_id, "NOPID"))
        .unwrap()
        .replace("PID|1||NOPID^^^GENHOSP^MR||TESTPATIENT^ALPHA\r", "")
        .replace("PV1|1|I|4WEST^401^A\r", "")
        .into_bytes()
}

/// An ORU whose OBX has no OBX-3: the stage dead-letters it to fhir.dlq.
/// An ORU whose only content is an OBX without OBX-3: nothing else to map
/// (no PID, no OBR), so the whole message is dead-lettered.
fn unmappable_oru(control_id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|LABAPP|TESTFAC|HL7BRIDGE|INT|20261122120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1\rOBX|1|ST|||SECRETVALUE||||||F\r").into_bytes()
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
            adt_without_content("ADT-2"),
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
    assert_eq!(
        summary(&report, "no_content"),
        1,
        "the ADT without PID and PV1"
    );
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
            adt_without_content("KADT-2"),
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

/// The store id of the output of the raw record at `src` on `topic` with this
/// `source.index`.
fn output_of(all: &[StoredRecord], topic: &str, src: &(String, i64, i64), index: usize) -> i64 {
    all.iter()
        .find(|r| output_id(r) == (topic.to_owned(), src.0.clone(), src.1 as i32, src.2, index))
        .unwrap_or_else(|| panic!("no {topic} output {index} of {src:?}"))
        .id
}

fn ids(all: &[StoredRecord]) -> Vec<OutputId> {
    let mut v: Vec<OutputId> = all.iter().map(output_id).collect();
    v.sort();
    v
}

/// The gauges of a textfile written by `--metrics-file`, by name and labels.
fn gauges(path: &Path) -> std::collections::HashMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains("# TYPE reconciliation_gap_count gauge\n"),
        "{text}"
    );
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, v) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn gap_gauges(path: &Path) -> [f64; 5] {
    let g = gauges(path);
    let at = |k: &str| *g.get(k).unwrap_or_else(|| panic!("no {k} in {g:?}"));
    let stamp = at("reconciliation_last_run_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - 600.0..=now + 1.0).contains(&stamp), "{stamp}");
    [
        at("reconciliation_gap_count{finding=\"missing\"}"),
        at("reconciliation_gap_count{finding=\"partial\"}"),
        at("reconciliation_gap_count{finding=\"duplicated\"}"),
        at("reconciliation_gap_count{finding=\"orphan\"}"),
        at("reconciliation_pending_records"),
    ]
}

/// Lost outputs are re-driven through the transform: the repaired store is
/// the one the stage would have written (same outputs, same FHIR), a repeat
/// writes nothing, and the gap gauges go back to zero.
#[tokio::test(flavor = "multi_thread")]
async fn repair_re_drives_missing_and_partial_records_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    send_all(
        bridge.addr,
        &[
            adt("REP-ADT", "PHIMRN1"),
            oru("REP-ORU", "PHIMRN2", 3),
            unmappable_oru("REP-BAD"),
            adt_without_content("REP-NONE"),
            // A resend after a lost ACK: stored twice, emitted once.
            adt("REP-ADT", "PHIMRN1"),
        ],
    )
    .await;
    wait_for_stage(dir.path(), GROUP, WAIT);
    bridge.terminate(Duration::from_secs(10));
    let reader = EmbeddedReader::open(dir.path()).unwrap();
    let written = outputs(&reader);
    // REP-ADT: an Encounter and the Patient; REP-ORU: an Encounter, its
    // three Observations, the Patient and the DiagnosticReport; REP-BAD: a
    // dead letter.
    assert_eq!(written.len(), 2 + 6 + 1, "{:?}", ids(&written));

    // Lost: REP-ADT's Encounter and Patient and REP-BAD's dead letter (missing), and the
    // second of REP-ORU's Observations (partial).
    let adt_src = raw_coordinates(dir.path(), "hl7v2.adt", "REP-ADT");
    let oru_src = raw_coordinates(dir.path(), "hl7v2.oru", "REP-ORU");
    let bad_src = raw_coordinates(dir.path(), "hl7v2.oru", "REP-BAD");
    for id in [
        output_of(&written, "fhir.encounter", &adt_src, 0),
        output_of(&written, "fhir.patient", &adt_src, 1),
        output_of(&written, "fhir.observation", &oru_src, 2),
        output_of(&written, "fhir.dlq", &bad_src, 0),
    ] {
        tamper(dir.path(), &format!("DELETE FROM records WHERE id = {id}"));
    }
    let metrics_dir = tempfile::tempdir().unwrap();
    let prom = metrics_dir.path().join("hl7bridge_reconcile.prom");
    let prom_arg = prom.to_str().unwrap();

    let (code, report) = reconcile_json(dir.path(), &["--metrics-file", prom_arg]);
    assert_eq!(code, 1, "{report:#}");
    // With its first copy gone, the resend of REP-ADT is missing too.
    assert_eq!(
        (summary(&report, "missing"), summary(&report, "partial")),
        (3, 1),
        "{report:#}"
    );
    assert_eq!(report["gap_count"], 4, "{report:#}");
    assert_eq!(gap_gauges(&prom), [3.0, 1.0, 0.0, 0.0, 0.0]);

    let (code, report) = reconcile_json(dir.path(), &["--repair", "--metrics-file", prom_arg]);
    assert_eq!(code, 0, "{report:#}");
    let repair = &report["repair"];
    assert_eq!(repair["before"]["gap_count"], 4, "{repair:#}");
    assert_eq!(repair["targets"], 4, "{repair:#}");
    assert_eq!(
        repair["repaired"], 3,
        "REP-ADT, REP-ORU, REP-BAD: {repair:#}"
    );
    assert_eq!(
        repair["outputs_written"], 4,
        "REP-ADT's Encounter and Patient, REP-ORU's Observation, REP-BAD's dead letter: {repair:#}"
    );
    assert_eq!(repair["appends"], 1, "one transaction: {repair:#}");
    assert_eq!(
        repair["duplicates_skipped"], 1,
        "the resend stays a duplicate: {repair:#}"
    );
    assert_eq!(
        repair["not_repairable"],
        serde_json::json!([]),
        "{repair:#}"
    );
    // The summary is the check after the repair.
    assert_eq!(report["gap_count"], 0, "{report:#}");
    assert_eq!(summary(&report, "findings"), 0, "{report:#}");
    assert_eq!(gap_gauges(&prom), [0.0; 5]);
    assert_eq!(
        std::fs::read_dir(metrics_dir.path()).unwrap().count(),
        1,
        "no temporary file is left beside the textfile"
    );

    // Exactly the outputs the stage wrote, each once.
    let repaired = outputs(&reader);
    assert_eq!(ids(&repaired), ids(&written));
    // Decoding to the same FHIR as mapping the raw records directly.
    let mut decoder = embedded_decoder(dir.path());
    let decoded = decoded_by_source(&mut decoder, &repaired).await;
    let mapper = Mapper::default();
    let inputs = common::stage::inputs(&reader);
    let sid = |c: &(String, i64, i64)| (c.0.clone(), c.1 as i32, c.2);
    let mut checked = 0;
    for input in &inputs {
        let got = decoded.get(&source_id(input)).cloned().unwrap_or_default();
        match mapper.map(&input.value) {
            Ok(Mapped::Resources(want))
                if [sid(&adt_src), sid(&oru_src)].contains(&source_id(input)) =>
            {
                assert_eq!(got, want, "outputs of {:?}", source_id(input));
                checked += 1;
            }
            // The resend, the ADT without PID and PV1 and the dead-lettered ORU.
            _ => assert!(got.is_empty(), "{:?}", source_id(input)),
        }
    }
    assert_eq!(checked, 2);
    let dead: Vec<&StoredRecord> = repaired.iter().filter(|r| r.topic == "fhir.dlq").collect();
    let bad = inputs
        .iter()
        .find(|r| source_id(r) == sid(&bad_src))
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].value, bad.value,
        "the dead letter carries the raw bytes"
    );
    assert_eq!(dead[0].header("hl7.control_id"), Some("REP-BAD"));

    // A plain check agrees; the resend is a duplicate again.
    let (code, report) = reconcile_json(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["gap_count"], 0);
    assert_eq!(
        (
            summary(&report, "resources"),
            summary(&report, "dead_lettered"),
            summary(&report, "no_content"),
            summary(&report, "duplicate")
        ),
        (2, 1, 1, 1),
        "{report:#}"
    );

    // Repairing again writes nothing.
    let (code, text) = reconcile(dir.path(), &["--repair"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("repair: 0 of 0 raw record(s)")
                && l.contains("0 output(s) appended")),
        "{text}"
    );
    assert_eq!(outputs(&reader).len(), repaired.len());
}

/// An output written twice, or left without its raw record, cannot be
/// taken back on an append-only log: reported, and the exit status stays 1
/// after the gaps that can be repaired are.
#[tokio::test(flavor = "multi_thread")]
async fn duplicated_outputs_are_reported_as_not_repairable() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    send_all(
        bridge.addr,
        &[adt("DUP-ADT", "PHIMRN1"), oru("DUP-ORU", "PHIMRN2", 2)],
    )
    .await;
    wait_for_stage(dir.path(), GROUP, WAIT);
    bridge.terminate(Duration::from_secs(10));
    tamper(
        dir.path(),
        "INSERT INTO records (topic, partition, offset, timestamp_ms, key, headers, value)
         SELECT topic, partition, offset + 1000, timestamp_ms, key, headers, value FROM records
         WHERE id = (SELECT MIN(id) FROM records WHERE topic='fhir.encounter')",
    );
    tamper(
        dir.path(),
        "DELETE FROM records WHERE topic='fhir.observation' AND id = (SELECT MAX(id) FROM records WHERE topic='fhir.observation')",
    );
    let adt_src = raw_coordinates(dir.path(), "hl7v2.adt", "DUP-ADT");
    let (code, report) = reconcile_json(dir.path(), &["--repair"]);
    assert_eq!(code, 1, "{report:#}");
    let repair = &report["repair"];
    assert_eq!(repair["repaired"], 1, "DUP-ORU: {repair:#}");
    assert_eq!(repair["outputs_written"], 1, "{repair:#}");
    let not = repair["not_repairable"].as_array().unwrap();
    assert_eq!(not.len(), 1, "{repair:#}");
    assert_eq!(
        (
            not[0]["finding"].as_str().unwrap(),
            not[0]["topic"].as_str().unwrap(),
            not[0]["partition"].as_i64().unwrap(),
            not[0]["offset"].as_i64().unwrap(),
            not[0]["control_id"].as_str().unwrap()
        ),
        (
            "duplicated",
            adt_src.0.as_str(),
            adt_src.1,
            adt_src.2,
            "DUP-ADT"
        )
    );
    // What is left after the repair is the duplicate alone.
    assert_eq!(
        findings(&report, "duplicated"),
        vec![with_control_id(adt_src.clone(), "DUP-ADT")]
    );
    assert_eq!(report["gap_count"], 1, "{report:#}");

    let (code, text) = reconcile(dir.path(), &["--repair"]);
    assert_eq!(code, 1, "{text}");
    let at = format!("{}/{}/{}", adt_src.0, adt_src.1, adt_src.2);
    assert!(
        text.lines()
            .any(|l| l.starts_with("not repairable: duplicated")
                && l.contains(&at)
                && l.contains("DUP-ADT")),
        "{text}"
    );
}

/// On Kafka only the transform group may write the output partitions.
#[test]
fn repair_is_refused_on_kafka() {
    let out = Command::new(bin())
        .args(["reconcile", "--repair", "--kafka-brokers", "127.0.0.1:9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for why in [
        "embedded store only",
        "source.covered",
        "--at-least-once",
        "stop the transform group",
    ] {
        assert!(err.contains(why), "{why:?} not in {err}");
    }
    assert!(out.stdout.is_empty(), "refused before reading anything");
}
