//! The reconciler against hand-built records.

use super::check::*;
use super::report::*;
use super::*;
use crate::headers as h;
use bytes::Bytes;

fn stage() -> StageConfig {
    StageConfig::new("hl7v2.")
}

fn adt(control_id: &str, pv1: bool) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|APP|FAC|HL7BRIDGE|INT|20261122120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\rEVN|A01|20261122120000\rPID|1||M1^^^GENHOSP^MR||DOE^JANE\r"
    );
    if pv1 {
        m.push_str("PV1|1|I|4WEST^401^A\r");
    }
    m.into_bytes()
}

fn raw(partition: i32, offset: i64, ts: i64, value: &[u8]) -> StoredRecord {
    let cid = String::from_utf8_lossy(value)
        .split('|')
        .nth(9)
        .unwrap_or("")
        .to_owned();
    StoredRecord {
        id: offset + 1,
        topic: "hl7v2.adt".into(),
        partition,
        offset,
        timestamp_ms: ts,
        key: None,
        headers: vec![
            (h::CONTROL_ID.into(), cid),
            (h::SENDING_FACILITY.into(), "FAC".into()),
        ],
        value: Bytes::copy_from_slice(value),
    }
}

fn output(topic: &str, src: (i32, i64), index: u32, count: u32, ts: i64) -> StoredRecord {
    StoredRecord {
        id: 0,
        topic: topic.into(),
        partition: src.0,
        offset: 0,
        timestamp_ms: ts,
        key: None,
        headers: vec![
            (h::SOURCE_TOPIC.into(), "hl7v2.adt".into()),
            (h::SOURCE_PARTITION.into(), src.0.to_string()),
            (h::SOURCE_OFFSET.into(), src.1.to_string()),
            (h::SOURCE_INDEX.into(), index.to_string()),
            (h::SOURCE_COUNT.into(), count.to_string()),
        ],
        value: Bytes::new(),
    }
}

fn kinds(r: &Reconciler<'_>) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.kind).collect()
}

#[test]
fn indexes_must_be_exactly_zero_to_count_each_once() {
    let mapper = Mapper::default();
    let st = stage();
    let mut r = Reconciler::new(&st, &mapper, Window::default(), false);
    // (0,0): complete; (0,1): index 1 of 3 missing; (0,2): index 0 twice.
    for (src, idx, n) in [
        ((0, 0), 0, 1),
        ((0, 1), 0, 3),
        ((0, 1), 2, 3),
        ((0, 2), 0, 1),
        ((0, 2), 0, 1),
    ] {
        r.add_output(&output("fhir.encounter", src, idx, n, 5));
    }
    for o in 0..3 {
        r.add_raw(&raw(0, o, 1, &adt(&format!("C{o}"), true)), false);
    }
    assert_eq!(r.summary.resources, 1);
    assert_eq!(kinds(&r), vec!["partial", "duplicated"]);
    assert!(
        r.findings[0]
            .detail
            .contains("1 of 3 missing (source.index 1)"),
        "{:?}",
        r.findings[0]
    );
    assert!(!r.findings.iter().any(|f| f.detail.contains("DOE")));
}

#[test]
fn a_duplicate_needs_an_earlier_copy_with_its_outcome() {
    let mapper = Mapper::default();
    let st = stage();
    let m = adt("R1", true);
    // Embedded order: the copy with no outputs comes first, so it is missing.
    let mut r = Reconciler::new(&st, &mapper, Window::default(), false);
    r.add_output(&output("fhir.encounter", (0, 1), 0, 1, 5));
    r.add_raw(&raw(0, 0, 1, &m), false);
    r.add_raw(&raw(0, 1, 1, &m), false);
    let rep = r.finish(&Store::none(), &[]).unwrap();
    assert_eq!(rep.findings.len(), 1);
    assert_eq!(
        (rep.findings[0].kind, rep.findings[0].offset),
        ("missing", 0)
    );

    // Kafka: the first copy may be on another partition, read later.
    let mut r = Reconciler::new(&st, &mapper, Window::default(), true);
    r.add_output(&output("fhir.encounter", (1, 0), 0, 1, 5));
    r.add_raw(&raw(0, 0, 1, &m), false);
    r.add_raw(&raw(1, 0, 1, &m), false);
    let rep = r.finish(&Store::none(), &[]).unwrap();
    assert!(rep.findings.is_empty(), "{:?}", rep.findings);
    assert_eq!((rep.summary.duplicate, rep.summary.resources), (1, 1));
}

#[test]
fn no_content_pending_and_dead_letters_are_outcomes() {
    let mapper = Mapper::default();
    let st = stage();
    let mut r = Reconciler::new(&st, &mapper, Window::default(), false);
    r.add_output(&output("fhir.dlq", (0, 2), 0, 1, 5));
    // No PID and no PV1: nothing to map (a PID alone yields a Patient).
    r.add_raw(
        &raw(
            0,
            0,
            1,
            b"MSH|^~\\&|APP|FAC|HL7BRIDGE|INT|20261122120000||ADT^A01^ADT_A01|N1|P|2.5.1\rEVN|A01|20261122120000\r",
        ),
        false,
    );
    r.add_raw(&raw(0, 1, 1, &adt("P1", true)), true);
    r.add_raw(
        &raw(
            0,
            2,
            1,
            b"MSH|^~\\&|APP|FAC|X|Y|2026||ORU^R01|D1|P|2.5.1\rOBX|1|ST|||v||||||F\r",
        ),
        false,
    );
    let rep = r.finish(&Store::none(), &[]).unwrap();
    assert!(rep.findings.is_empty(), "{:?}", rep.findings);
    let s = rep.summary;
    assert_eq!(
        (s.raw, s.no_content, s.pending, s.dead_lettered),
        (3, 1, 1, 1)
    );
}

#[test]
fn orphans_count_only_inside_the_window() {
    let mapper = Mapper::default();
    let st = stage();
    let window = Window {
        since: Some(100),
        until: None,
    };
    let mut r = Reconciler::new(&st, &mapper, window, false);
    // Offset 1 is before the window, 3 and 5 in it; 0, 2, 4 and 6 do not exist.
    for o in [0, 1, 2, 3, 4] {
        r.add_output(&output("fhir.encounter", (0, o), 0, 1, 200));
    }
    r.add_raw(&raw(0, 1, 50, &adt("W1", true)), false);
    r.add_raw(&raw(0, 3, 150, &adt("W3", true)), false);
    r.add_raw(&raw(0, 5, 160, &adt("W5", true)), false);
    assert_eq!(r.summary.raw, 2);
    assert_eq!(r.orphan_in_window((0, 0, 0)), Some(false));
    assert_eq!(
        r.orphan_in_window((0, 0, 2)),
        None,
        "between the window and before it"
    );
    assert_eq!(r.orphan_in_window((0, 0, 4)), Some(true));
    assert_eq!(r.orphan_in_window((0, 0, 6)), Some(true), "no --until");
    assert_eq!(
        r.orphan_in_window((0, 3, 0)),
        None,
        "a partition with no raw records"
    );
}

#[test]
fn the_metrics_file_has_one_gap_gauge_per_finding() {
    let mapper = Mapper::default();
    let st = stage();
    let mut r = Reconciler::new(&st, &mapper, Window::default(), false);
    // (0,0): no outputs, missing; (0,1): 1 of 2, partial; (0,2): pending.
    r.add_output(&output("fhir.encounter", (0, 1), 0, 2, 5));
    r.add_raw(&raw(0, 0, 1, &adt("G1", true)), false);
    r.add_raw(&raw(0, 1, 1, &adt("G2", true)), false);
    r.add_raw(&raw(0, 2, 1, &adt("G3", true)), true);
    let rep = r.finish(&Store::none(), &[]).unwrap();
    assert_eq!(rep.gap_count(), 2);
    let at = std::time::UNIX_EPOCH + Duration::from_millis(1_790_000_000_250);
    assert_eq!(
        metrics_text(&rep, at),
        "# HELP reconciliation_gap_count Raw records without their recorded outcome, by finding.
# TYPE reconciliation_gap_count gauge
reconciliation_gap_count{finding=\"missing\"} 1
reconciliation_gap_count{finding=\"partial\"} 1
reconciliation_gap_count{finding=\"duplicated\"} 0
reconciliation_gap_count{finding=\"orphan\"} 0
# HELP reconciliation_pending_records Raw records the stage has not reached yet.
# TYPE reconciliation_pending_records gauge
reconciliation_pending_records 1
# HELP reconciliation_last_run_timestamp_seconds When reconcile last finished a check.
# TYPE reconciliation_last_run_timestamp_seconds gauge
reconciliation_last_run_timestamp_seconds 1790000000.250
"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reconcile.prom");
    std::fs::write(&path, "old").unwrap();
    write_metrics(&path, &rep).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("{finding=\"partial\"} 1\n"), "{text}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("reconcile.prom")],
        "no temporary file left"
    );
}

impl Store {
    /// A store with nothing in it, for tests that never walk.
    fn none() -> Self {
        Store {
            reader: Box::new(crate::log::KafkaReader::new(Default::default())),
            progress: StageProgress::Committed(None),
            cfg: Config::default(),
        }
    }
}
