//! `hl7bridge replay` against the real server: every fixture shape, exit
//! codes, a JSON report whose counts match what the server stored, failover
//! between endpoints, reconnecting, interrupting and resuming.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::process::{bin, Bridge};
use common::*;
use hl7bridge::record::WithHeaders;

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
    std::fs::write(input.path().join("zz_capture.hl7"), capture).unwrap();

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

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn read_report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn nothing_listening_is_said_on_stderr_and_nothing_is_claimed_as_sent() {
    let to = format!("127.0.0.1:{}", dead_port());
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let out = replay(&[
        fixtures_dir().join("adt_a01_v251.hl7").to_str().unwrap(),
        "--to",
        &to,
        "--timeout",
        "2s",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{to}: connection refused")), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("total") && l.split_whitespace().nth(1) == Some("0")),
        "the summary claims nothing sent: {stdout}"
    );
    assert!(
        stdout
            .contains("adt_a01_v251.hl7: message 1: MSH-10 \"FX-ADT-A01-251\": connection refused"),
        "{stdout}"
    );
    let report = read_report(&report_path);
    assert_eq!(report["sent"], 0);
    assert_eq!(report["not_sent"], 1);
    let failed = &report["failed"][0];
    assert_eq!(failed["index"], 1);
    assert_eq!(failed["control_id"], "FX-ADT-A01-251");
    assert_eq!(failed["reason"], "connection refused");
    assert!(failed["file"]
        .as_str()
        .unwrap()
        .ends_with("adt_a01_v251.hl7"));
}

/// `n` ADT^A01 messages with control IDs `{prefix}0000`, `{prefix}0001`, ...
/// in one file.
fn messages_file(dir: &Path, prefix: &str, n: usize) -> PathBuf {
    let path = dir.join(format!("{prefix}.hl7"));
    let body: Vec<u8> = (0..n)
        .flat_map(|i| adt(&format!("{prefix}{i:04}"), &format!("MRN{i}")))
        .collect();
    std::fs::write(&path, body).unwrap();
    path
}

/// MSH-10 of every raw record in a store, with repeats.
fn stored_control_ids(dir: &Path) -> Vec<String> {
    let reader = hl7bridge::log::embedded::EmbeddedReader::open(dir).unwrap();
    let mut ids = Vec::new();
    for t in reader.topics().unwrap() {
        if t.name.starts_with("hl7v2.") {
            for r in reader.read(&t.name, 0, 1_000_000).unwrap() {
                ids.push(
                    r.header(hl7bridge::headers::CONTROL_ID)
                        .unwrap_or("")
                        .to_owned(),
                );
            }
        }
    }
    ids
}

/// Starts replay with stderr piped; its lines arrive on the receiver.
fn spawn_replay(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(bin())
        .arg("replay")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a progress line saying at least `n` messages are done; the
/// lines seen are returned.
fn wait_until_done(lines: &mpsc::Receiver<String>, n: u64) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines.iter() {
        let done = line
            .strip_prefix("replay: ")
            .and_then(|l| l.split('/').next())
            .and_then(|d| d.parse::<u64>().ok());
        seen.push(line);
        if done.is_some_and(|d| d >= n) {
            return seen;
        }
    }
    panic!("replay ended before {n} messages were done: {seen:?}");
}

#[test]
fn a_dead_first_endpoint_fails_over_to_the_next_and_says_so() {
    let data = tempfile::tempdir().unwrap();
    let live = Bridge::serve(data.path(), &[]);
    let input = tempfile::tempdir().unwrap();
    let file = messages_file(input.path(), "FO", 10);
    let dead = format!("127.0.0.1:{}", dead_port());
    let report_path = input.path().join("report.json");
    let out = replay(&[
        file.to_str().unwrap(),
        "--to",
        &format!("{dead},{}", live.addr),
        "--report",
        report_path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{dead}: connection refused; sending to {} next",
            live.addr
        )),
        "{err}"
    );
    let report = read_report(&report_path);
    assert_eq!(report["accepted"], 10);
    assert_eq!(report["outcomes"]["AA"], 10);
    assert_eq!(report["endpoints"][0]["address"], dead);
    assert_eq!(
        report["endpoints"][0]["sent"], 0,
        "nothing left for the dead one"
    );
    assert!(report["endpoints"][0]["failures"].as_u64().unwrap() >= 1);
    assert_eq!(report["endpoints"][1]["sent"], 10);
    assert_eq!(report["endpoints"][1]["acknowledged"], 10);
    live.kill();
    assert_eq!(stored_control_ids(data.path()).len(), 10);
}

/// The active bridge is SIGKILLed mid-run; the sender fails over to the
/// backup and resends what was not acknowledged. Every message ends AA
/// exactly once in the report, each is in one store or the other, and a
/// message stored twice (stored by the first, its ACK lost with it) is one
/// the report counts as resent.
#[test]
fn a_bridge_killed_mid_run_fails_over_to_the_backup_and_every_message_is_accepted() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Bridge::serve(dir_a.path(), &[]);
    let b = Bridge::serve(dir_b.path(), &[]);
    let input = tempfile::tempdir().unwrap();
    let n = 200;
    let file = messages_file(input.path(), "KM", n);
    let report_path = input.path().join("report.json");
    let (child, lines) = spawn_replay(&[
        file.to_str().unwrap(),
        "--to",
        &format!("{},{}", a.addr, b.addr),
        "--connections",
        "2",
        "--rate",
        "50",
        "--timeout",
        "5s",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    wait_until_done(&lines, 40);
    a.kill();
    let out = child.wait_with_output().unwrap();
    let err: Vec<String> = lines.iter().collect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{err:?}");
    let report = read_report(&report_path);
    assert_eq!(report["messages"], n);
    assert_eq!(report["outcomes"]["AA"], n, "{stdout}");
    assert_eq!(report["accepted"], n);
    let resent = report["resent"].as_u64().unwrap();
    assert!(
        resent >= 1,
        "the connection to the killed bridge was lost: {stdout}"
    );
    assert_eq!(
        report["endpoints"][1]["resent"], resent,
        "resends went to the backup"
    );
    assert!(stdout.contains(&format!("{} resent", resent)), "{stdout}");

    b.kill();
    let stored_a = stored_control_ids(dir_a.path());
    let stored_b = stored_control_ids(dir_b.path());
    let all: BTreeSet<&String> = stored_a.iter().chain(&stored_b).collect();
    let want: BTreeSet<String> = (0..n).map(|i| format!("KM{i:04}")).collect();
    assert_eq!(
        all,
        want.iter().collect(),
        "every message is stored somewhere"
    );
    let twice = stored_a.len() + stored_b.len() - n;
    assert!(
        twice as u64 <= resent,
        "only resent messages are stored twice: {twice} > {resent}"
    );
    println!(
        "messages {n}, on the killed bridge {}, on the backup {}, resent {resent}, stored twice {twice}",
        stored_a.len(),
        stored_b.len()
    );
}

/// The server answers an oversize message AR and closes the connection.
/// Replay reconnects and carries on; the message that was on the closed
/// connection is sent again (a resend), the AR'd one is not.
#[test]
fn after_an_oversize_message_is_rejected_and_the_connection_closed_replay_reconnects() {
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(data.path(), &["--max-message-bytes", "4096"]);
    let input = tempfile::tempdir().unwrap();
    let file = input.path().join("three.hl7");
    let big = oru("BIG1", "MRN2", 200);
    assert!(big.len() > 4096);
    std::fs::write(
        &file,
        [adt("SMALL1", "MRN1"), big, adt("SMALL2", "MRN3")].concat(),
    )
    .unwrap();
    let report_path = input.path().join("report.json");
    let out = replay(&[
        file.to_str().unwrap(),
        "--to",
        &bridge.addr.to_string(),
        "--report",
        report_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the AR makes the exit status 1: {stdout}"
    );
    let report = read_report(&report_path);
    assert_eq!(report["outcomes"]["AA"], 2, "{report:#}");
    assert_eq!(report["outcomes"]["AR"], 1, "{report:#}");
    assert_eq!(
        report["resent"], 1,
        "SMALL2 was written to the closed connection"
    );
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["control_id"], "BIG1");
    assert_eq!(failed[0]["index"], 2);
    assert_eq!(failed[0]["attempts"], 1, "AR is final");
    assert!(
        failed[0]["reason"].as_str().unwrap().starts_with("AR"),
        "{report:#}"
    );
    bridge.kill();
    let stored = stored_control_ids(data.path());
    assert_eq!(stored.iter().filter(|c| *c == "SMALL2").count(), 1);
}

/// SIGINT stops sending, waits briefly for the ACKs outstanding, prints the
/// summary, writes the report marked interrupted and exits 130. Its AA
/// count is exactly what the bridge stored.
#[test]
fn sigint_keeps_the_record_and_the_aa_count_is_exact() {
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(data.path(), &[]);
    let input = tempfile::tempdir().unwrap();
    let file = messages_file(input.path(), "INT", 400);
    let report_path = input.path().join("report.json");
    let (child, lines) = spawn_replay(&[
        file.to_str().unwrap(),
        "--to",
        &bridge.addr.to_string(),
        "--connections",
        "4",
        "--rate",
        "40",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    wait_until_done(&lines, 10);
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let err: Vec<String> = lines.iter().collect();
    assert_eq!(out.status.code(), Some(130), "{err:?}");
    assert!(err.iter().any(|l| l.contains("interrupted")), "{err:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("INTERRUPTED"), "{stdout}");
    let report = read_report(&report_path);
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["messages"], 400);
    let aa = report["outcomes"]["AA"].as_u64().unwrap();
    assert!(aa < 400, "the run was cut short");
    assert_eq!(
        report["not_sent"].as_u64().unwrap() + report["sent"].as_u64().unwrap(),
        400
    );
    bridge.kill();
    assert_eq!(
        stored_control_ids(data.path()).len() as u64,
        aa,
        "{report:#}"
    );
}

/// `--resume` skips what a previous report records as accepted, and says
/// how many; the rest is sent again.
#[test]
fn resume_skips_the_messages_a_previous_report_records_as_accepted() {
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(data.path(), &[]);
    let input = tempfile::tempdir().unwrap();
    for f in ["adt_a01_v251.hl7", "broken_no_msh.hl7", "oru_r01_v251.hl7"] {
        std::fs::copy(fixtures_dir().join(f), input.path().join(f)).unwrap();
    }
    let addr = bridge.addr.to_string();
    let first = input.path().join("first.json");
    let dir = input.path().to_str().unwrap();
    let out = replay(&[dir, "--to", &addr, "--report", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "one message is rejected");
    assert_eq!(read_report(&first)["accepted"], 2);

    let second = input.path().join("second.json");
    let out = replay(&[
        dir,
        "--to",
        &addr,
        "--resume",
        first.to_str().unwrap(),
        "--report",
        second.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipping 2 message(s) already accepted"),
        "{err}"
    );
    let report = read_report(&second);
    assert_eq!(report["skipped_accepted"], 2);
    assert_eq!(report["messages"], 1);
    assert_eq!(report["sent"], 1);
    assert!(report["failed"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("broken_no_msh.hl7"));
    bridge.kill();
    assert_eq!(
        stored_control_ids(data.path()).len(),
        4,
        "3, then only the rejected one again"
    );
}

/// The plain-lines progress never repeats itself while nothing changes.
#[test]
fn progress_lines_are_not_repeated_while_waiting() {
    // A listener that accepts and never answers: replay waits out its time-out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = silent.local_addr().unwrap().to_string();
    let (child, lines) = spawn_replay(&[
        fixtures_dir().join("adt_a01_v251.hl7").to_str().unwrap(),
        "--to",
        &to,
        "--timeout",
        "3s",
        "--attempts",
        "1",
    ]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err: Vec<String> = lines.iter().collect();
    let progress: Vec<&String> = err.iter().filter(|l| l.contains(" done, ")).collect();
    let distinct: BTreeSet<&&String> = progress.iter().collect();
    assert_eq!(progress.len(), distinct.len(), "{err:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no ACK within 3s"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(silent);
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
    // Nothing tells the sender when a message without an ACK is stored:
    // replay may be done before the bridge has committed the last one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while raw_records(data.path()) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    bridge.kill();
    assert_eq!(raw_records(data.path()), 3, "all three were stored");
}

/// A listener that answers AE the first time it sees a control ID and AA
/// after: a receiver that cannot take a message now. The real bridge
/// answers AE only when its store fails, which a test cannot ask of it.
fn ae_then_aa_listener() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = conn.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0x1c) {
                    let frame: Vec<u8> = buf.drain(..=end + 1).collect();
                    let text = String::from_utf8_lossy(&frame[1..end]).into_owned();
                    let id = text
                        .split('\r')
                        .next()
                        .unwrap()
                        .split('|')
                        .nth(9)
                        .unwrap()
                        .to_owned();
                    let code = if seen.insert(id.clone()) { "AE" } else { "AA" };
                    let ack = format!(
                        "MSH|^~\\&|R|R|S|S|20260101||ACK|A{id}|P|2.5.1\rMSA|{code}|{id}\rERR||PID^1^3|207^Application internal error^HL70357|E\r"
                    );
                    if conn
                        .write_all(&hl7bridge::mllp::frame(ack.as_bytes()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    addr
}

/// AE says "not now": it is counted as AE with its ERR code, and sent again
/// only with --resend-error-acks (as engines do, behind a setting).
#[test]
fn error_acks_are_counted_and_resent_only_when_asked() {
    let to = ae_then_aa_listener().to_string();
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let file = fixtures_dir().join("adt_a01_v251.hl7");
    let args = [
        file.to_str().unwrap(),
        "--to",
        &to,
        "--report",
        report_path.to_str().unwrap(),
    ];

    let out = replay(&args);
    assert_eq!(out.status.code(), Some(1));
    let report = read_report(&report_path);
    assert_eq!(report["outcomes"]["AE"], 1, "{report:#}");
    assert_eq!(report["resent"], 0);
    assert_eq!(
        report["failed"][0]["reason"],
        "AE: ERR code 207 (application internal error) at PID^1^3"
    );

    let fresh = ae_then_aa_listener().to_string();
    let mut args = args;
    args[2] = &fresh;
    let out = replay(&[&args[..], &["--resend-error-acks"]].concat());
    let report = read_report(&report_path);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["outcomes"]["AA"], 1, "{report:#}");
    assert_eq!(report["resent"], 1);
}
