//! `hl7bridge replay` against the real server: every fixture shape, exit
//! codes, and a JSON report whose counts match what the server stored.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::process::{bin, Bridge};
use common::*;

fn replay(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("replay")
        .args(args)
        .output()
        .unwrap()
}

/// Raw records stored (the stage's fhir.* outputs share the store and are not counted).
fn raw_records(dir: &std::path::Path) -> u64 {
    hl7bridge::log::embedded::EmbeddedReader::open(dir)
        .unwrap()
        .topics()
        .unwrap()
        .iter()
        .filter(|t| t.name.starts_with("hl7v2."))
        .map(|t| t.records)
        .sum()
}

#[derive(serde::Deserialize)]
struct Manifest {
    fixture: Vec<Fixture>,
}
#[derive(serde::Deserialize)]
struct Fixture {
    messages: Vec<Msg>,
}
#[derive(serde::Deserialize)]
struct Msg {
    ack: String,
}

#[test]
fn replaying_every_fixture_reports_what_the_server_stored() {
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(data.path(), &[]);
    let input = tempfile::tempdir().unwrap();
    // All fixtures, plus an MLLP-framed capture of two of them.
    for e in std::fs::read_dir(fixtures_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "hl7") {
            std::fs::copy(&p, input.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let capture = [
        hl7bridge::mllp::frame(&fixture("orm_o01_v251.hl7")),
        hl7bridge::mllp::frame(&fixture("adt_a04_v251.hl7")),
    ]
    .concat();
    std::fs::write(input.path().join("zz_capture.mllp"), capture).unwrap();

    let report_path = input.path().join("report.json");
    let addr = bridge.addr.to_string();
    let out = replay(&[
        input.path().join("").to_str().unwrap(),
        "--to",
        &addr,
        "--unique-control-ids",
        "--timeout",
        "1s",
        "--connections",
        "2",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rejects and missing ACKs make the exit status non-zero"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();

    // Expected from the manifest: every message is sent on its own.
    let manifest: Manifest =
        toml::from_str(&std::fs::read_to_string(fixtures_dir().join("manifest.toml")).unwrap())
            .unwrap();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for m in manifest.fixture.iter().flat_map(|f| &f.messages) {
        // MSH-15 NE, or ER on success: no ACK comes, and none is waited for.
        let label = if m.ack == "none" {
            "no-ack".to_owned()
        } else {
            m.ack.clone()
        };
        *want.entry(label).or_default() += 1;
    }
    *want.entry("AA".into()).or_default() += 2; // the capture
    let sent: u64 = want.values().sum();
    assert_eq!(report["sent"], sent);
    for (label, n) in &want {
        assert_eq!(
            report["outcomes"][label], *n,
            "{label}: {}",
            report["outcomes"]
        );
    }
    assert_eq!(
        report["outcomes"].get("mismatch"),
        None,
        "every ACK matched its MSH-10"
    );

    // The server stored one raw record per message sent (NE/ER ones too: stored, just not
    // ACKed); the stage's fhir.* outputs are not counted here.
    bridge.kill();
    assert_eq!(raw_records(data.path()), sent);
}

#[test]
fn an_all_good_set_exits_zero_and_dry_run_sends_nothing() {
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(data.path(), &[]);
    let good = fixtures_dir().join("adt_a01_crlf.hl7");
    let bom = fixtures_dir().join("adt_a01_bom_utf8.hl7");
    let batch = fixtures_dir().join("batch_fhs_bhs.hl7");
    let addr = bridge.addr.to_string();
    let out = replay(&[
        good.to_str().unwrap(),
        bom.to_str().unwrap(),
        batch.to_str().unwrap(),
        "--to",
        &addr,
        "--repeat",
        "3",
        "--unique-control-ids",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("total") && l.split_whitespace().nth(1) == Some("15")),
        "{summary}"
    );

    let dry = replay(&[fixtures_dir().to_str().unwrap(), "--dry-run"]);
    assert_eq!(dry.status.code(), Some(1), "broken fixtures are reported");
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(text.contains("broken_no_msh.hl7: message 1:"), "{text}");
    bridge.kill();
    assert_eq!(raw_records(data.path()), 15, "dry run stored nothing more");
}

#[test]
fn nothing_listening_is_an_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = replay(&[
        fixtures_dir().join("adt_a01_v251.hl7").to_str().unwrap(),
        "--to",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error"));
}

/// HL7 v2 chapter 2: with MSH-15 NE no accept ACK is sent, and with ER only
/// on an error. `replay` waits for none there (a generous `--timeout` would
/// otherwise show up as timeouts) and counts those messages as sent with no
/// ACK expected, which is success: exit 0, and the summary says so.
#[test]
fn messages_that_ask_for_no_ack_are_not_waited_for_and_count_as_sent() {
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(data.path(), &[]);
    let input = tempfile::tempdir().unwrap();
    for f in [
        "oru_r01_enhanced_ne.hl7",
        "oru_r01_enhanced_er.hl7",
        "adt_a01_v251.hl7",
    ] {
        std::fs::copy(fixtures_dir().join(f), input.path().join(f)).unwrap();
    }
    let report_path = data.path().join("report.json");
    let out = replay(&[
        input.path().to_str().unwrap(),
        "--to",
        &bridge.addr.to_string(),
        "--unique-control-ids",
        "--timeout",
        "60s",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["sent"], 3);
    assert_eq!(report["accepted"], 3);
    assert_eq!(report["outcomes"]["no-ack"], 2, "{report:#}");
    assert_eq!(report["outcomes"]["AA"], 1, "{report:#}");
    assert_eq!(report["outcomes"].get("timeout"), None);
    // The summary's columns stay apart.
    assert!(stdout.contains(" timeout mismatch"), "{stdout}");
    bridge.kill();
    assert_eq!(raw_records(data.path()), 3, "all three were stored");
}
