//! The streaming stage on the embedded store: `serve` maps what it stores to
//! Avro FHIR records, once per raw record, and `transform --data-dir`
//! survives SIGKILL without losing or duplicating an output.

mod common;

use hl7bridge::record::WithHeaders;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::process::{bin, spawn_transform, Bridge};
use common::stage::*;
use common::{adt, contains_whole, fixtures_dir, oru, Client};
use hl7bridge::log::embedded::EmbeddedReader;
use hl7bridge::registry::store::RegistryStore;
use hl7bridge::transform::{Mapped, Mapper};

const GROUP: &str = "hl7bridge-transform";
const WAIT: Duration = Duration::from_secs(60);

async fn send_all(addr: std::net::SocketAddr, messages: &[Vec<u8>]) {
    let mut c = Client::connect(addr).await;
    for m in messages {
        assert_eq!(c.roundtrip(m).await.code(), "AA");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_maps_every_stored_fixture_to_avro_fhir_equal_to_the_direct_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    let replay = std::process::Command::new(bin())
        .args(["replay", "--to", &bridge.addr.to_string()])
        .arg(fixtures_dir())
        .output()
        .unwrap();
    assert!(!replay.stdout.is_empty() || !replay.stderr.is_empty());
    wait_for_stage(dir.path(), GROUP, WAIT);

    let reader = EmbeddedReader::open(dir.path()).unwrap();
    let inputs = inputs(&reader);
    let outputs = outputs(&reader);
    let mut decoder = embedded_decoder(dir.path());
    let decoded = decoded_by_source(&mut decoder, &outputs).await;
    let mapper = Mapper::default();
    let mut resources = 0;
    for input in &inputs {
        let got = decoded.get(&source_id(input)).cloned().unwrap_or_default();
        match mapper.map(&input.value) {
            Ok(
                Mapped::Resources(want)
                | Mapped::Partial {
                    resources: want, ..
                },
            ) => {
                // Avro round trip through the pipeline is lossless.
                assert_eq!(got, want, "outputs of {:?}", source_id(input));
                resources += want.len();
            }
            other => assert!(got.is_empty(), "{:?} gave {other:?}", source_id(input)),
        }
    }
    assert!(
        resources >= 40,
        "only {resources} resources: fixtures not replayed?"
    );

    for out in &outputs {
        let source = inputs
            .iter()
            .find(|i| {
                let (_, t, p, o, _) = output_id(out);
                (t, p, o) == source_id(i)
            })
            .expect("every output names its input");
        // Co-partitioned and keyed like the raw record.
        assert_eq!(out.partition, source.partition);
        assert_eq!(out.key, source.key);
        for h in [
            "hl7.control_id",
            "hl7.sending_facility",
            "hl7.message_type",
            "bridge.received_at",
        ] {
            assert_eq!(out.header(h), source.header(h), "header {h}");
        }
        // Confluent wire format: magic byte 0, then a 4-byte schema id (a
        // dead letter keeps the raw message instead).
        if out.topic != "fhir.dlq" {
            assert_eq!(out.value[0], 0);
        }
    }

    let outcomes: HashMap<String, u64> =
        hl7bridge::stage::progress::outcomes(reader.connection(), GROUP)
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        outcomes.values().sum::<u64>(),
        inputs.len() as u64,
        "every raw record has exactly one outcome: {outcomes:?}"
    );

    let registry =
        RegistryStore::open(&dir.path().join(hl7bridge::registry::store::DB_FILE)).unwrap();
    assert_eq!(
        registry.subjects().unwrap(),
        vec![
            "fhir.diagnosticreport-value",
            "fhir.encounter-value",
            "fhir.observation-value",
            "fhir.patient-value",
            "fhir.servicerequest-value",
            "fhir.specimen-value",
        ]
    );
    drop(bridge);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_resend_with_identical_bytes_is_emitted_once_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    let first = adt("RESEND-1", "M1");
    let corrected = String::from_utf8(first.clone())
        .unwrap()
        .replace("4WEST^401", "4WEST^402");
    send_all(bridge.addr, &[first.clone(), first, corrected.into_bytes()]).await;
    wait_for_stage(dir.path(), GROUP, WAIT);
    let reader = EmbeddedReader::open(dir.path()).unwrap();
    let encounters = reader.read("fhir.encounter", 0, 100).unwrap();
    assert_eq!(inputs(&reader).len(), 3, "ingest stores every copy");
    assert_eq!(
        encounters.len(),
        2,
        "the identical resend is not emitted; the correction is"
    );
    let outcomes: HashMap<String, u64> =
        hl7bridge::stage::progress::outcomes(reader.connection(), GROUP)
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(outcomes.get("duplicate"), Some(&1));
    assert_eq!(outcomes.get("resources"), Some(&2));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmappable_record_goes_to_fhir_dlq_with_a_reason_and_the_stage_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    // OBX-3 (the observation code) is required by FHIR and missing here.
    let bad = b"MSH|^~\\&|LABAPP|TESTFAC|HL7BRIDGE|INT|20261122120000||ORU^R01^ORU_R01|BAD-1|P|2.5.1\rPID|1||SECRETMRN^^^GENHOSP^MR||SECRETNAME^ALPHA\rOBR|1|P1|F1|X^Y^LN\rOBX|1|ST|||SECRETVALUE||||||F\r".to_vec();
    send_all(bridge.addr, &[bad.clone(), oru("GOOD-1", "M2", 2)]).await;
    wait_for_stage(dir.path(), GROUP, WAIT);
    let reader = EmbeddedReader::open(dir.path()).unwrap();
    let dlq = reader.read("fhir.dlq", 0, 100).unwrap();
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(&d.value[..], &bad[..], "the raw bytes are kept");
    assert_eq!(d.header("error.code"), Some("map"));
    let reason = d.header("error.reason").unwrap();
    assert!(reason.contains("OBX-3"), "{reason}");
    for h in &d.headers {
        for secret in ["SECRETMRN", "SECRETNAME", "SECRETVALUE"] {
            assert!(
                !contains_whole(&h.1, secret),
                "header {} leaks content",
                h.0
            );
        }
    }
    assert_eq!(d.header("source.topic"), Some("hl7v2.oru"));
    assert_eq!(
        reader.read("fhir.observation", 0, 100).unwrap().len(),
        2,
        "the next record is mapped"
    );
}

/// One bad segment costs only what depends on it: an ORU whose second OBX
/// has no OBX-3 still yields its Patient, Encounter, the other Observations
/// and its DiagnosticReport (whose results name only those), and the bad
/// OBX goes to `fhir.dlq` on its own, with the message's coordinates, the
/// segment and its position, indexed among the message's outputs. The
/// outcome is counted `partial`, and `reconcile` finds nothing missing.
#[tokio::test(flavor = "multi_thread")]
async fn one_bad_obx_costs_only_its_observation_and_is_dead_lettered_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    let raw = std::fs::read(fixtures_dir().join("oru_r01_one_bad_obx.hl7")).unwrap();
    send_all(bridge.addr, &[raw.clone()]).await;
    wait_for_stage(dir.path(), GROUP, WAIT);
    let reader = EmbeddedReader::open(dir.path()).unwrap();
    let observations = reader.read("fhir.observation", 0, 100).unwrap();
    assert_eq!(observations.len(), 2, "OBX 1 and OBX 3");
    for topic in ["fhir.patient", "fhir.encounter", "fhir.diagnosticreport"] {
        assert_eq!(reader.read(topic, 0, 100).unwrap().len(), 1, "{topic}");
    }
    let dlq = reader.read("fhir.dlq", 0, 100).unwrap();
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(&d.value[..], &raw[..], "the raw bytes are kept");
    assert_eq!(d.header("error.segment"), Some("OBX"));
    assert_eq!(d.header("error.segment_index"), Some("2"));
    assert!(d.header("error.reason").unwrap().contains("OBX-3"));
    assert_eq!(d.header("source.topic"), Some("hl7v2.oru"));
    // 5 resources and the dead part: indexes 0..6, the part last.
    assert_eq!(d.header("source.count"), Some("6"));
    assert_eq!(d.header("source.index"), Some("5"));
    let report = reader.read("fhir.diagnosticreport", 0, 1).unwrap();
    let mut decoder = embedded_decoder(dir.path());
    let report = decoder.decode(&report[0].value).await.unwrap();
    let ids: Vec<String> = observations
        .iter()
        .map(|o| format!("Observation/{}", o.header("fhir.id").unwrap()))
        .collect();
    let results: Vec<&str> = report["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        results, ids,
        "the report's results are the mapped Observations"
    );
    let outcomes: HashMap<String, u64> =
        hl7bridge::stage::progress::outcomes(reader.connection(), GROUP)
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(outcomes.get("partial"), Some(&1));
    drop(bridge);
    let rec = std::process::Command::new(bin())
        .args(["reconcile", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&rec.stdout).unwrap();
    assert!(rec.status.success(), "{report:#}");
    assert_eq!(report["summary"]["partly_mapped"], 1, "{report:#}");

    let convert = std::process::Command::new(bin())
        .arg("convert")
        .arg(fixtures_dir().join("oru_r01_one_bad_obx.hl7"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&convert.stderr);
    assert_eq!(convert.status.code(), Some(1), "{err}");
    assert!(err.contains("message 1: OBX 2 not mapped"), "{err}");
    assert!(err.contains("1 partly mapped"), "{err}");
    assert_eq!(String::from_utf8_lossy(&convert.stdout).lines().count(), 5);
}

/// Ingests `n` ORUs with `serve --no-transform`, then runs `transform
/// --data-dir`, SIGKILLing it at `kills` points before letting it finish.
#[tokio::test(flavor = "multi_thread")]
async fn transform_killed_mid_stream_emits_every_output_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &["--no-transform"]);
    let messages: Vec<Vec<u8>> = (0..400)
        .map(|i| oru(&format!("EO-{i}"), &format!("P{}", i % 37), 1 + i % 6))
        .collect();
    send_all(bridge.addr, &messages).await;
    bridge.terminate(Duration::from_secs(10));

    let reader = EmbeddedReader::open(dir.path()).unwrap();
    let want: usize = inputs(&reader)
        .iter()
        .map(|r| expected_output_count(&r.value))
        .sum();
    let spawn = || spawn_transform(dir.path(), &["--batch", "16"]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut progress = Vec::new();
    for k in 1..=5u64 {
        let mut child = spawn();
        // Kill once about k/6 of the outputs exist, plus a random delay, so
        // the kills land mid-stream at points that differ from run to run.
        let target = want * k as usize / 6;
        let start = std::time::Instant::now();
        while outputs(&reader).len() < target && start.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        let jitter = seed.wrapping_mul(k * 7919) % 40;
        std::thread::sleep(Duration::from_millis(jitter));
        child.kill().unwrap();
        child.wait().unwrap();
        progress.push((target, jitter, outputs(&reader).len()));
    }
    eprintln!("kills (target outputs, jitter ms, outputs at kill): {progress:?}");
    let mut child = spawn();
    wait_for_stage(dir.path(), GROUP, WAIT);
    child.kill().unwrap();
    child.wait().unwrap();

    let outputs = outputs(&reader);
    let unique: HashSet<OutputId> = outputs.iter().map(output_id).collect();
    assert_eq!(unique.len(), outputs.len(), "no output is duplicated");
    assert_eq!(outputs.len(), want, "no output is lost");
    assert!(
        progress
            .iter()
            .filter(|(_, _, n)| *n > 0 && *n < want)
            .count()
            >= 3,
        "at least one kill landed mid-stream: {progress:?}"
    );
}

/// The stage's commits skip their own fsync (`synchronous=NORMAL`): they
/// become durable with the next ingest commit's fsync. This test loses
/// every write after that fsync, as a power cut would, by rebuilding the
/// store from the database file and the WAL as they were when the last
/// ingest commit returned, and shows the stage then redoes exactly what was
/// lost: every output once, none twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_power_cut_after_unsynced_stage_commits_loses_only_work_the_stage_redoes() {
    use hl7bridge::log::embedded::DB_FILE;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bridge = Bridge::serve(&data, &["--no-transform"]);
    let transform = |data: &std::path::Path| spawn_transform(data, &[]);
    let batch = |name: &str, n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| oru(&format!("{name}-{i}"), &format!("P{}", i % 7), 1 + i % 4))
            .collect()
    };

    // A: stored (fsynced), then mapped by the stage (not fsynced).
    send_all(bridge.addr, &batch("A", 30)).await;
    let mut stage = transform(&data);
    wait_for_stage(&data, GROUP, WAIT);
    stage.kill().unwrap();
    stage.wait().unwrap();
    let reader = EmbeddedReader::open(&data).unwrap();
    let outputs_of_a = outputs(&reader).len();
    let cursor_after_a = hl7bridge::stage::progress::cursor(reader.connection(), GROUP).unwrap();

    // B: stored; its fsync makes A's outputs durable too. This is the last fsync.
    send_all(bridge.addr, &batch("B", 10)).await;
    let wal = data.join(format!("{DB_FILE}-wal"));
    let synced_wal = std::fs::metadata(&wal).unwrap().len();
    let db_at_sync = std::fs::read(data.join(DB_FILE)).unwrap();

    // B mapped (not fsynced); then the power goes.
    let mut stage = transform(&data);
    wait_for_stage(&data, GROUP, WAIT);
    stage.kill().unwrap();
    stage.wait().unwrap();
    bridge.kill();
    assert_eq!(
        std::fs::read(data.join(DB_FILE)).unwrap(),
        db_at_sync,
        "no checkpoint may run in between, or the image below is not what a power cut leaves"
    );
    assert!(
        std::fs::metadata(&wal).unwrap().len() > synced_wal,
        "B's outputs were written after the fsync"
    );

    // The store as the disk held it: the database file and the WAL up to the
    // last fsync (SQLite reads a WAL up to its last complete commit frame).
    let image = dir.path().join("after-power-cut");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::write(image.join(DB_FILE), &db_at_sync).unwrap();
    let wal_bytes = std::fs::read(&wal).unwrap();
    std::fs::write(
        image.join(format!("{DB_FILE}-wal")),
        &wal_bytes[..synced_wal as usize],
    )
    .unwrap();
    for f in std::fs::read_dir(&data).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        // The registry's own file: schema registration is idempotent.
        if !name.starts_with(DB_FILE) && !name.ends_with(".lock") && f.is_file() {
            std::fs::copy(&f, image.join(&name)).unwrap();
        }
    }

    let reader = EmbeddedReader::open(&image).unwrap();
    assert_eq!(
        inputs(&reader).len(),
        40,
        "every ACKed message survives the power cut"
    );
    assert_eq!(
        outputs(&reader).len(),
        outputs_of_a,
        "A's outputs were made durable by B's fsync"
    );
    assert_eq!(
        hl7bridge::stage::progress::cursor(reader.connection(), GROUP).unwrap(),
        cursor_after_a,
        "the cursor went back with the outputs it describes"
    );

    // The stage redoes B, and only B.
    let mut stage = transform(&image);
    wait_for_stage(&image, GROUP, WAIT);
    stage.kill().unwrap();
    stage.wait().unwrap();
    let want: usize = inputs(&reader)
        .iter()
        .map(|r| expected_output_count(&r.value))
        .sum();
    let outputs = outputs(&reader);
    let unique: HashSet<OutputId> = outputs.iter().map(output_id).collect();
    assert_eq!(unique.len(), outputs.len(), "no output is duplicated");
    assert_eq!(outputs.len(), want, "no output is lost");
}

/// The analyst's view: `tail fhir.observation --format fhir` prints each
/// Avro record as FHIR JSON, decoded through the embedded registry.
#[tokio::test(flavor = "multi_thread")]
async fn tail_format_fhir_prints_the_observations_as_fhir_json() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    send_all(
        bridge.addr,
        &[oru("TAIL-1", "T1", 3), oru("TAIL-2", "T2", 2)],
    )
    .await;
    wait_for_stage(dir.path(), GROUP, WAIT);
    let tail = |extra: &[&str]| {
        let out = std::process::Command::new(bin())
            .args([
                "tail",
                "fhir.observation",
                "--from-beginning",
                "--format",
                "fhir",
                "--data-dir",
            ])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let all = tail(&[]);
    let mut want = Vec::new();
    for m in [oru("TAIL-1", "T1", 3), oru("TAIL-2", "T2", 2)] {
        let Ok(Mapped::Resources(rs)) = Mapper::default().map(&m) else {
            panic!()
        };
        want.extend(
            rs.into_iter()
                .filter(|r| r["resourceType"] == "Observation"),
        );
    }
    assert_eq!(all.len(), 5);
    for w in &want {
        assert!(all.contains(w), "missing {}", w["id"]);
    }
    let one_patient = tail(&["--key", "GENHOSP|T2"]);
    assert_eq!(one_patient.len(), 2, "--key filters by patient key");
    assert_eq!(tail(&["--max", "1"]).len(), 1);
    assert_eq!(
        tail(&["--since", "2099-01-01T00:00:00Z"]).len(),
        0,
        "--since filters by time"
    );
}
