//! The `topics` and `tail` commands read the store losslessly.

mod common;

use std::process::Command;

use base64::Engine;
use common::process::{bin, Bridge};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_tail_show_what_was_stored_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &["--partitions", "3"]);
    let mut client = Client::connect(bridge.addr).await;
    let utf8 = fixture("adt_a01_bom_utf8.hl7");
    let latin1 = fixture("adt_a01_latin1.hl7");
    assert_eq!(client.roundtrip(&utf8).await.code(), "AA");
    assert_eq!(client.roundtrip(&latin1).await.code(), "AA");
    assert_eq!(client.roundtrip(b"not hl7").await.code(), "AR");
    bridge.kill();

    let topics = Command::new(bin())
        .args(["topics", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(topics.status.success());
    let text = String::from_utf8(topics.stdout).unwrap();
    let row = |t: &str| {
        text.lines()
            .find(|l| l.starts_with(t))
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    };
    assert_eq!(
        row("hl7v2.adt "),
        Some(vec!["hl7v2.adt".into(), "3".into(), "2".into()]),
        "{text}"
    );
    assert_eq!(
        row("hl7v2.dlq "),
        Some(vec!["hl7v2.dlq".into(), "3".into(), "1".into()]),
        "{text}"
    );

    let tail = Command::new(bin())
        .args([
            "tail",
            "hl7v2.adt",
            "--from-beginning",
            "--max",
            "10",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(tail.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(tail.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for field in [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "headers",
        "value",
    ] {
        assert!(lines[0].get(field).is_some(), "{field}");
    }
    assert_eq!(
        lines[0]["value"].as_str().unwrap().as_bytes(),
        &utf8[..],
        "UTF-8 value as a string, BOM included"
    );
    assert_eq!(lines[1]["value_encoding"], "base64");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(lines[1]["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, latin1, "latin-1 value round-trips through base64");
    assert_eq!(lines[1]["key"], "HOPITAL|MRN60006");
    assert_eq!(lines[1]["headers"]["hl7.control_id"], "FX-ADT-A01-LATIN1");
}

#[test]
fn a_bad_setting_fails_at_start_with_a_clear_error() {
    let out = Command::new(bin())
        .args(["serve", "--partitions", "0", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("partitions"), "{err}");
    let out = Command::new(bin())
        .args(["serve", "--ack-timeout", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
