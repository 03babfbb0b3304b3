//! PHI hygiene: every fixture (the broken ones too) goes through a real
//! `hl7bridge serve` (streaming stage on) with RUST_LOG=trace, and through
//! `hl7bridge replay`; no patient name, patient identifier, birth date or
//! OBX value from the fixtures may appear in anything the bridge emits
//! outside the store: its stdout and stderr, every ACK (with its ERR text)
//! sent back to the peer, its /metrics page, and replay's output.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::bin;
use common::stage::wait_for_stage;
use common::{contains_whole, fixtures_dir, Client};

/// PHI values of one kind, with where each came from.
#[derive(Default)]
struct Phi {
    ids: BTreeSet<String>,
    names: BTreeSet<String>,
    birth_dates: BTreeSet<String>,
    obx: BTreeSet<String>,
}

impl Phi {
    fn all(&self) -> impl Iterator<Item = (&'static str, &String)> {
        self.ids
            .iter()
            .map(|v| ("patient identifier (PID-3)", v))
            .chain(self.names.iter().map(|v| ("patient name (PID-5)", v)))
            .chain(self.birth_dates.iter().map(|v| ("birth date (PID-7)", v)))
            .chain(self.obx.iter().map(|v| ("OBX-5 value", v)))
    }
}

/// Whether a value is distinctive enough to search for. Single letters and
/// digits (a middle initial "Q", sex "M", a result "5") and short numbers
/// (a result "142", "82.5") occur everywhere in logs: in timestamps,
/// durations, offsets, sizes. Searching for them would only find those, so
/// text values need 4 characters and purely numeric ones 6 (every MRN, SSN
/// and birth date in the fixtures is longer).
fn distinctive(v: &str) -> bool {
    let numeric = v.chars().all(|c| c.is_ascii_digit() || ".-+".contains(c));
    let len = v.chars().count();
    if numeric {
        len >= 6
    } else {
        len >= 4
    }
}

/// The literal pieces of a field value: HL7 escapes (\T\, \.br\, \H\ ...)
/// split it, since a log would show them decoded or not at all.
fn pieces(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in v.split('\\').enumerate() {
        // Odd pieces are escape sequences' insides.
        if i % 2 == 0 {
            out.push(p.trim().to_owned());
        }
    }
    out.push(v.to_owned());
    out.into_iter().filter(|p| distinctive(p)).collect()
}

/// A fixture as text: UTF-8 if it is, else Latin-1 (windows-1252).
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.trim_start_matches('\u{feff}').to_owned(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    }
}

/// Parses PID-3 (CX-1 of each repetition), PID-5 (every component of each
/// repetition), PID-7 (as sent, and as a FHIR date) and OBX-5 (every
/// component of each repetition) out of every segment of every fixture.
fn extract_phi(dir: &Path) -> Phi {
    let mut phi = Phi::default();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .collect();
    files.sort();
    for f in files {
        let t = text(&std::fs::read(&f).unwrap());
        // Separators from the file's MSH (or the defaults, for broken files).
        let (fs, cs, rs) = t
            .find("MSH")
            .map(|i| &t[i + 3..])
            .and_then(|h| {
                let mut c = h.chars();
                Some((c.next()?, c.next()?, c.next()?))
            })
            .filter(|(f, c, r)| !f.is_alphanumeric() && *c != '\r' && *r != '\r')
            .unwrap_or(('|', '^', '~'));
        for seg in t.split(['\r', '\n']) {
            let fields: Vec<&str> = seg.split(fs).collect();
            let field = |n: usize| fields.get(n).copied().unwrap_or("");
            match fields[0] {
                "PID" => {
                    for rep in field(3).split(rs) {
                        let cx1 = rep.split(cs).next().unwrap_or("");
                        phi.ids.extend(pieces(cx1));
                    }
                    for rep in field(5).split(rs) {
                        for comp in rep.split(cs) {
                            phi.names.extend(pieces(comp));
                        }
                    }
                    let dob = field(7).split(cs).next().unwrap_or("");
                    if dob.len() >= 8 && distinctive(dob) {
                        phi.birth_dates.insert(dob.to_owned());
                        phi.birth_dates.insert(format!(
                            "{}-{}-{}",
                            &dob[..4],
                            &dob[4..6],
                            &dob[6..8]
                        ));
                    }
                }
                "OBX" => {
                    for rep in field(5).split(rs) {
                        phi.obx.extend(pieces(rep));
                        for comp in rep.split(cs) {
                            phi.obx.extend(pieces(comp));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    phi
}

/// The text of a log without its colour escapes (ESC [ ... m).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Collects a child's output stream on a thread.
fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_phi_from_any_fixture_in_logs_acks_metrics_or_replay_output() {
    let phi = extract_phi(&fixtures_dir());
    let counts = (
        phi.ids.len(),
        phi.names.len(),
        phi.birth_dates.len(),
        phi.obx.len(),
    );
    eprintln!("PHI values searched for (ids, names, birth dates, OBX): {counts:?}");
    // Never vacuous: the parsing above must have found the fixtures' PHI.
    assert!(
        phi.ids.len() >= 20
            && phi.names.len() >= 20
            && phi.birth_dates.len() >= 10
            && phi.obx.len() >= 10,
        "suspiciously few PHI values extracted from the fixtures: {counts:?}"
    );
    for known in [
        "MRN10001",
        "900000001",
        "TESTPATIENT",
        "ALPHA",
        "19800101",
        "1980-01-01",
        "YELLOW",
    ] {
        assert!(
            phi.all().any(|(_, v)| v == known),
            "the extraction misses {known}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--registry-listen",
            "",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "trace")
        .env_remove("HL7BRIDGE_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    let mut stdout_lines = BufReader::new(child.stdout.take().unwrap());
    let mut announced = String::new();
    for _ in 0..2 {
        stdout_lines.read_line(&mut announced).unwrap();
    }
    let stdout = collect(stdout_lines);
    let mut words = announced.split_whitespace();
    let addr: std::net::SocketAddr = words.nth(3).unwrap().parse().unwrap();
    let metrics = announced
        .split_whitespace()
        .last()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("announcement: {announced:?}"))
        .to_owned();

    // Every fixture, as a file (batches whole) and as its split messages,
    // each on a fresh connection; every answer kept.
    let mut acks = Vec::new();
    let mut frames = 0;
    let mut files: Vec<_> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .collect();
    files.sort();
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        let mut payloads = vec![raw.clone()];
        for m in hl7bridge::hl7::split::split(&raw) {
            if m[..] != raw[..] {
                payloads.push(m.to_vec());
            }
        }
        for p in payloads {
            let mut c = Client::connect(addr).await;
            c.send(&p).await;
            frames += 1;
            // Enhanced mode NE/ER: no ACK is due, so a short wait.
            if let Some(ack) = c.recv_within(Duration::from_secs(2)).await {
                acks.push(String::from_utf8_lossy(&ack).into_owned());
            }
        }
    }
    assert!(frames > files.len(), "batches and files were sent");
    assert!(
        acks.len() >= files.len(),
        "{} ACKs for {frames} frames",
        acks.len()
    );
    assert!(
        acks.iter()
            .any(|a| a.contains("MSA|AR") || a.contains("MSA|AE")),
        "the broken fixtures were answered with errors"
    );

    // The operator's view through `hl7bridge replay`, errors included.
    let replay = tokio::task::spawn_blocking(move || {
        Command::new(bin())
            .args(["replay", "--timeout", "2s", "--to", &addr.to_string()])
            .arg(fixtures_dir())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!replay.stdout.is_empty(), "replay printed its summary");

    tokio::task::block_in_place(|| {
        wait_for_stage(dir.path(), "hl7bridge-transform", Duration::from_secs(90))
    });
    let metrics_page = reqwest::get(format!("{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics_page.contains("hl7bridge_"), "a real /metrics page");
    // Give the last trace lines a moment, then stop the bridge.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logs = strip_ansi(&String::from_utf8_lossy(&stderr.lock().unwrap()));
    // A positive control: message-derived values that are not PHI (control
    // IDs) do reach the logs, so the search below looks at the right text.
    assert!(
        logs.contains("FX-ADT-A01-251"),
        "the trace log names the control IDs it handled"
    );
    assert!(
        logs.lines().count() >= frames,
        "trace logging was on: {} lines for {frames} frames",
        logs.lines().count()
    );
    let captured = [
        ("bridge stderr (RUST_LOG=trace)", logs),
        (
            "bridge stdout",
            announced.clone() + &String::from_utf8_lossy(&stdout.lock().unwrap()),
        ),
        ("ACKs sent to the peer", acks.join("\n")),
        ("/metrics", metrics_page),
        (
            "replay output",
            String::from_utf8_lossy(&replay.stdout).into_owned()
                + &String::from_utf8_lossy(&replay.stderr),
        ),
    ];
    let mut leaks = Vec::new();
    for (what, text) in &captured {
        for (kind, v) in phi.all() {
            if let Some(line) = text.lines().find(|l| contains_whole(l, v)) {
                leaks.push(format!("{kind} {v:?} in {what}: {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "PHI leaked:\n{}", leaks.join("\n"));
}

/// The search itself: a value counts where it stands as a field or
/// component, never as a piece of an unrelated run of digits or letters.
#[test]
fn a_phi_value_is_found_as_a_whole_field_not_inside_a_generated_id() {
    let ack = "MSH|^~\\&|HL7BRIDGE|INT|APP|FAC|20261207||ACK^A01^ACK|B1796604029000000010|P|2.5.1";
    assert!(
        !contains_whole(ack, "900000001"),
        "a digit run inside a control ID"
    );
    assert!(contains_whole("PID|1||900000001^^^SSA^SS", "900000001"));
    assert!(contains_whole("name=TESTPATIENT", "TESTPATIENT"));
    assert!(contains_whole("900000001", "900000001"));
    assert!(!contains_whole("TESTPATIENTS", "TESTPATIENT"));
}
