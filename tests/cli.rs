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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_topics_and_tail_work_the_same_on_kafka() {
    let Some(broker) = common::tansu::Tansu::memory() else {
        return;
    };
    let brokers = broker.brokers();
    let create = |extra: &[&str]| {
        Command::new(bin())
            .args([
                "topics",
                "create",
                "--kafka-brokers",
                &brokers,
                "--partitions",
                "4",
                "--replication-factor",
                "1",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = create(&[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("hl7v2.adt: created"));
    let again = create(&[]);
    assert!(again.status.success(), "topics create is idempotent");
    assert!(String::from_utf8_lossy(&again.stdout).contains("hl7v2.adt: exists"));

    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &["--kafka-brokers", &brokers]);
    let mut client = Client::connect(bridge.addr).await;
    let oru = fixture("oru_r01_v251.hl7");
    assert_eq!(client.roundtrip(&oru).await.code(), "AA");
    bridge.kill();

    let topics = Command::new(bin())
        .args(["topics", "--kafka-brokers", &brokers])
        .output()
        .unwrap();
    let text = String::from_utf8(topics.stdout).unwrap();
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("hl7v2.oru "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row, vec!["hl7v2.oru", "4", "1"], "{text}");

    let tail = Command::new(bin())
        .args([
            "tail",
            "hl7v2.oru",
            "--from-beginning",
            "--max",
            "1",
            "--kafka-brokers",
            &brokers,
        ])
        .output()
        .unwrap();
    assert!(
        tail.status.success(),
        "{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8(tail.stdout).unwrap().trim()).unwrap();
    assert_eq!(
        line["value"].as_str().unwrap().as_bytes(),
        &oru[..],
        "exact bytes through Kafka"
    );
    assert_eq!(line["key"], "GENHOSP|MRN50005");
    let p = hl7bridge::log::partitioner::partition_for_key(b"GENHOSP|MRN50005", 4);
    assert_eq!(line["partition"], p, "murmur2 partition over 4 partitions");
    assert_eq!(line["headers"]["hl7.message_type"], "ORU");
}

#[test]
fn the_example_config_loads_and_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hl7bridge.example.toml");
    let cfg = hl7bridge::config::Config::load(Some(&path)).unwrap();
    cfg.validate().unwrap();
    assert_eq!(
        cfg,
        hl7bridge::config::Config {
            kafka: cfg.kafka.clone(),
            ..hl7bridge::config::Config::default()
        },
        "the example states the defaults"
    );
    assert_eq!(
        cfg.kafka.brokers, "",
        "the example runs on the embedded store"
    );
}

#[test]
fn serve_with_a_bad_mapping_file_fails_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("site.toml");
    std::fs::write(
        &bad,
        format!(
            "{}\n[[sender]]\nfacility = \"X\"\ndefault_timezone = \"CET\"\n",
            hl7bridge::transform::tables::DEFAULT
        ),
    )
    .unwrap();
    let out = common::process::serve_command(&dir.path().join("data"), &[])
        .arg("--mappings")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sender override 1") && err.contains("default_timezone"),
        "{err}"
    );
    let check = Command::new(bin())
        .args(["mappings", "check", "--mappings"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!check.status.success());
}

/// One process per role per embedded data directory: a second `serve` (or
/// a `transform` beside a `serve` that runs the stage) is refused, naming
/// the directory and the holder's PID; readers keep working beside it.
#[test]
fn a_second_writer_on_one_data_directory_is_refused_and_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    let holder = format!("pid {}", bridge.child.id());
    for cmd in [vec!["serve", "--listen", "127.0.0.1:0"], vec!["transform"]] {
        let out = Command::new(bin())
            .args(&cmd)
            .args([
                "--registry-listen",
                "",
                "--metrics-listen",
                "",
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?} must be refused: {err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains(&holder), "{err}");
    }
    let topics = Command::new(bin())
        .args(["topics", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(topics.status.success(), "a reader beside the writer");
    bridge.kill();
    // SIGKILL releases the lock: the directory can be served again.
    let again = Bridge::serve(dir.path(), &[]);
    again.kill();
}

/// Logs written to a file or a pipe carry no ANSI colour codes (they are
/// for a person at a terminal, and break grep and log collectors), and a
/// connection's open and close are not logged at INFO.
#[test]
fn logs_to_a_pipe_have_no_colour_codes_nor_a_line_per_connection() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::process::serve_command(dir.path(), &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut logs = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    // Read up to the listener's readiness: signals are handled from then on.
    while !logs.contains("MLLP listener ready") {
        assert!(
            lines.read_line(&mut logs).unwrap() > 0,
            "serve ended: {logs}"
        );
    }
    // A connection opened and closed is a debug line, not an INFO line.
    let listen = logs
        .split("listen=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    drop(std::net::TcpStream::connect(&listen).unwrap());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    while lines.read_line(&mut logs).unwrap() > 0 {}
    child.wait().unwrap();
    assert!(logs.contains("stopped cleanly"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "colour codes in piped logs: {logs:?}"
    );
    assert!(!logs.contains("connection opened"), "{logs}");
}

/// `tail` fits the topic: FHIR JSON by default on a FHIR topic, the
/// record elsewhere; a format that cannot fit the topic is an error that
/// names the one that does; a topic that does not exist is an error that
/// lists those that do, rather than an empty wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_picks_the_format_of_the_topic_and_names_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(dir.path(), &[]);
    let mut client = Client::connect(bridge.addr).await;
    assert_eq!(
        client.roundtrip(&fixture("oru_r01_v251.hl7")).await.code(),
        "AA"
    );
    common::stage::wait_for_stage(
        dir.path(),
        "hl7bridge-transform",
        std::time::Duration::from_secs(30),
    );
    bridge.kill();
    let tail = |args: &[&str]| {
        Command::new(bin())
            .arg("tail")
            .args(args)
            .args(["--from-beginning", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = tail(&["fhir.observation", "--max", "1"]);
    assert!(out.status.success());
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["resourceType"], "Observation", "FHIR JSON by default");
    let out = tail(&["hl7v2.oru", "--max", "1"]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["topic"], "hl7v2.oru", "the record by default");

    for (args, hint) in [
        (["hl7v2.oru", "--format", "fhir"], "--format json"),
        (["fhir.observation", "--format", "hl7"], "--format fhir"),
    ] {
        let out = tail(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(hint), "{args:?}: {err}");
    }
    let out = tail(&["hl7v2.orux"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no topic hl7v2.orux"), "{err}");
    let (_, listed) = err.split_once("the topics are: ").expect("a list");
    assert!(listed.trim().split(", ").any(|t| t == "hl7v2.oru"), "{err}");
}

/// Every listener is bound before anything is announced: a port clash is
/// one error at start that names the address, the flag and setting that
/// control it, and how to turn that listener off.
#[test]
fn a_port_clash_is_one_clear_error_before_anything_is_announced() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = common::process::serve_command(dir.path(), &["--metrics-listen", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(
        err.contains("--metrics-listen") && err.contains("metrics_listen"),
        "{err}"
    );
    assert!(err.contains("to turn it off"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "nothing is announced before every listener is bound"
    );
}

/// `serve --no-transform` and `transform` run side by side on one host
/// (the Kafka layout): their metrics endpoints have different defaults, and
/// `transform` takes its address from its own setting.
#[test]
fn transform_serves_metrics_on_its_own_setting_beside_serve() {
    let defaults = hl7bridge::config::Config::default();
    assert_eq!(defaults.metrics_listen, "127.0.0.1:9464");
    assert_eq!(defaults.transform.metrics_listen, "127.0.0.1:9465");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hl7bridge.toml");
    // serve's address is free; transform's is taken: only transform's counts.
    std::fs::write(
        &config,
        format!("metrics_listen = \"127.0.0.1:0\"\n[transform]\nregistry_listen = \"\"\nmetrics_listen = \"{addr}\"\n"),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["transform", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("transform.metrics_listen"), "{err}");
}

/// With the broker down, librdkafka repeats the same few lines many times
/// a second. Each goes out once; its repeats are held back for a minute
/// and then summarised with a count.
#[test]
fn librdkafka_repeats_are_held_back_while_the_broker_is_down() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let child =
        common::process::serve_command(dir.path(), &["--kafka-brokers", &dead, "--no-transform"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    // librdkafka retries every few hundred ms: some 40 lines in 4 s unheld.
    std::thread::sleep(std::time::Duration::from_secs(4));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let fold = |l: &str| -> String {
        // The text after the level and target, digits folded as the layer does.
        let text = l.split_once("librdkafka: ").map_or(l, |(_, t)| t);
        let mut s = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                if !s.ends_with('#') {
                    s.push('#');
                }
            } else {
                s.push(c);
            }
        }
        s
    };
    let lines: Vec<String> = err
        .lines()
        .filter(|l| l.contains("librdkafka:"))
        .map(fold)
        .collect();
    assert!(
        !lines.is_empty(),
        "librdkafka says the broker is down: {err}"
    );
    let mut seen = std::collections::HashSet::new();
    for l in &lines {
        assert!(seen.insert(l), "repeated within a minute: {l}\n{err}");
    }
}

/// `topics create` against a broker that does not answer says what it is
/// waiting for and gives up at `--timeout`, naming the address.
#[test]
fn topics_create_says_what_it_waits_for_and_honours_its_timeout() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = Command::new(bin())
        .args([
            "topics",
            "create",
            "--kafka-brokers",
            &dead,
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("on kafka at {dead}; waiting up to 2s")),
        "{err}"
    );
    assert!(
        err.contains(&format!("no answer from the brokers at {dead} within 2s"))
            && err.contains("--timeout"),
        "{err}"
    );
}

/// `convert ... | head` ends quietly with exit 0, as Unix tools do when
/// the reader goes away; and replay refuses counts of zero rather than
/// silently running once.
#[test]
fn a_closed_pipe_is_not_an_error_and_zero_counts_are_refused() {
    use std::io::Read;
    let mut child = Command::new(bin())
        .arg("convert")
        .arg(fixtures_dir())
        .arg(fixtures_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The reader is gone: the rest (far more than a pipe buffer) cannot be written.
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");

    for flag in ["--repeat", "--connections"] {
        let out = Command::new(bin())
            .args(["replay", "--dry-run", flag, "0"])
            .arg(fixtures_dir())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} 0: {err}");
        assert!(err.contains("must be at least 1"), "{flag} 0: {err}");
    }
}

/// Runs `hl7bridge <args>`.
fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// A directory means its files with HL7 extensions: `replay fixtures/`
/// sends the fixtures and not README.md nor manifest.toml, and says how
/// many files it skipped (`--verbose` names them).
#[test]
fn replaying_a_directory_sends_only_its_hl7_files_and_counts_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(data.path(), &[]);
    let report_dir = tempfile::tempdir().unwrap();
    let report_path = report_dir.path().join("report.json");
    let out = run(&[
        "replay",
        fixtures_dir().to_str().unwrap(),
        "--to",
        &bridge.addr.to_string(),
        "--unique-control-ids",
        "--verbose",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipped 2 file(s) without an HL7 extension"),
        "{err}"
    );
    assert!(
        err.contains("skipped ") && err.contains("README.md") && err.contains("manifest.toml"),
        "{err}"
    );
    assert!(stdout.contains("2 file(s) skipped"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["files_skipped"], 2);
    // The deliberately broken fixtures are answered AR: they, and only
    // they, are dead-lettered; README.md and manifest.toml were not sent.
    let rejected = report["outcomes"]["AR"].as_u64().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the AR'd broken fixtures make it 1: {stdout}"
    );
    assert!(report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["outcome"] == "AR" && f["file"].as_str().unwrap().ends_with(".hl7")));
    bridge.kill();
    let reader = hl7bridge::log::embedded::EmbeddedReader::open(data.path()).unwrap();
    let dlq = reader.read("hl7v2.dlq", 0, 1000).unwrap().len() as u64;
    assert_eq!(
        dlq, rejected,
        "nothing but the rejected fixtures went to the DLQ"
    );

    // --ext replaces the list: only the Markdown file now.
    let md = run(&[
        "replay",
        "--dry-run",
        "--ext",
        "md",
        fixtures_dir().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&md.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("1 file(s), 1 message(s)")),
        "{text}"
    );
}

/// `.gz` exports are read through gzip, by all three commands, with the
/// same result as the plain file.
#[test]
fn gzip_files_are_read_as_their_content() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain = fixtures_dir().join("oru_r01_v251.hl7");
    let gz = dir.path().join("oru.hl7.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    enc.finish().unwrap();
    for cmd in ["convert", "inspect"] {
        let want = run(&[cmd, plain.to_str().unwrap()]);
        let got = run(&[cmd, dir.path().to_str().unwrap()]);
        assert_eq!(got.status.code(), want.status.code(), "{cmd}");
        let strip = |o: &std::process::Output, p: &std::path::Path| {
            String::from_utf8_lossy(&o.stdout).replace(p.to_str().unwrap(), "FILE")
        };
        assert_eq!(strip(&got, &gz), strip(&want, &plain), "{cmd}");
        assert!(!got.stdout.is_empty(), "{cmd}");
    }
    let dry = run(&["replay", "--dry-run", gz.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&dry.stdout)
        .starts_with("1 file(s), 1 message(s), 0 with problems"));
}

/// Bytes that are dropped are never dropped silently: a stray start block
/// after two messages is a warning naming the file and byte offset (not the
/// content), counted, and exit 1, in every command; the two messages are
/// still read.
#[test]
fn a_stray_frame_byte_is_a_warning_with_file_and_offset_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let two = [fixture("adt_a01_v251.hl7"), fixture("adt_a02_v251.hl7")].concat();
    let file = dir.path().join("two.hl7");
    std::fs::write(&file, [two.clone(), vec![0x0b]].concat()).unwrap();
    let warning = format!(
        "warning: {}: byte {}: dropped 1 byte(s): a stray MLLP start or end block",
        file.display(),
        two.len()
    );
    for args in [
        vec!["convert"],
        vec!["inspect"],
        vec!["replay", "--dry-run"],
    ] {
        let out = Command::new(bin()).args(&args).arg(&file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&warning), "{args:?}: {err}");
    }
    let convert = run(&["convert", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&convert.stderr).contains("convert: 2 message(s)"));
    assert!(
        String::from_utf8_lossy(&run(&["replay", "--dry-run", file.to_str().unwrap()]).stdout)
            .starts_with("1 file(s), 2 message(s)")
    );

    // A binary file is dropped whole, with a warning; alone, it leaves no message.
    let binary = dir.path().join("image.dat");
    std::fs::write(&binary, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").unwrap();
    let out = run(&["convert", binary.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("byte 8: dropped 16 byte(s): binary content"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
}

/// Empty input, and input that cannot be read, end every command the same
/// way: exit 2 and a message naming the path.
#[test]
fn empty_and_unreadable_input_exit_2_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.hl7");
    std::fs::write(&empty, b"").unwrap();
    let only_docs = tempfile::tempdir().unwrap();
    std::fs::write(only_docs.path().join("README.md"), b"# notes").unwrap();
    let missing = dir.path().join("missing.hl7");
    for cmd in [vec!["replay"], vec!["convert"], vec!["inspect"]] {
        for (path, says) in [
            (
                empty.as_path(),
                format!("no messages in {}", empty.display()),
            ),
            (
                only_docs.path(),
                format!("no messages in {}", only_docs.path().display()),
            ),
            (
                missing.as_path(),
                format!("cannot read {}", missing.display()),
            ),
        ] {
            let out = Command::new(bin()).args(&cmd).arg(path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd:?} {}: {err}",
                path.display()
            );
            assert!(err.contains(&says), "{cmd:?}: {err}");
        }
    }
}
