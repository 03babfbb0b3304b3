//! Every FHIR topic read through Confluent's own Python client, as a generic
//! consumer would: a private Tansu broker, `hl7bridge serve --kafka-brokers`
//! with its embedded registry, `hl7bridge transform` (the stage on Kafka),
//! every fixture sent with python-hl7's `mllp_send`, then
//! `scripts/check-with-confluent.py` decoding each record with
//! `DeserializingConsumer` + `AvroDeserializer` + `SchemaRegistryClient`.
//!
//! The script checks the raw topics (exact bytes, murmur2 partitions) and,
//! on every FHIR topic, each record's key (the patient key of its raw
//! record) and partition, and that its value, nulls dropped, is valid FHIR
//! R4 (the official JSON Schema, the definition of its resourceType).
//!
//! The Python packages live in `target/pyenv` (`scripts/pyenv.sh`, run by
//! `scripts/test.sh`). Like Tansu, a missing environment fails the test; a
//! developer may opt out locally with HL7BRIDGE_SKIP_KAFKA=1, which
//! HL7BRIDGE_REQUIRE_KAFKA=1 overrides.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{bin, Bridge};
use common::stage::{expected_output_count, output_topics, INPUTS};
use common::tansu::Tansu;
use common::{kafka_config, read_kafka_topic};
use hl7bridge::topics::FhirTopics;

const WAIT: Duration = Duration::from_secs(180);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's interpreter, or None when the developer opted out.
fn python() -> Option<PathBuf> {
    let python = root().join("target/pyenv/bin/python");
    if python.exists() {
        return Some(python);
    }
    let required = std::env::var("HL7BRIDGE_REQUIRE_KAFKA").is_ok_and(|v| v == "1");
    let skip = std::env::var("HL7BRIDGE_SKIP_KAFKA").is_ok_and(|v| v == "1");
    if skip && !required {
        eprintln!("SKIPPING the Confluent client test: HL7BRIDGE_SKIP_KAFKA=1 and no target/pyenv");
        return None;
    }
    panic!(
        "the Confluent client test needs {}: run scripts/pyenv.sh (or set HL7BRIDGE_SKIP_KAFKA=1 locally)",
        python.display()
    );
}

/// Every fixture file (not the benchmark inputs in `fixtures/bench/`).
fn fixture_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    files
}

fn script(python: &Path, args: &[String]) -> Output {
    let out = Command::new(python)
        .arg(root().join("scripts/check-with-confluent.py"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `hl7bridge transform` on the broker, with `serve`'s registry; its log in
/// a file kept for post-mortems.
fn transform(brokers: &str, registry: &str, dir: &Path) -> std::process::Child {
    let log = std::fs::File::create(dir.join("transform.log")).unwrap();
    Command::new(bin())
        .args(["transform", "--kafka-brokers", brokers])
        .args(["--schema-registry-url", registry, "--metrics-listen", ""])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fhir_record_decoded_by_confluents_client_is_fhir_r4() {
    let Some(python) = python() else { return };
    let Some(broker) = Tansu::memory() else {
        return;
    };
    let brokers = broker.brokers();
    let cfg = kafka_config(&brokers).await;
    hl7bridge::log::kafka::create_topics(&cfg, &output_topics(), 6, 1)
        .await
        .unwrap();
    let serve_dir = tempfile::tempdir().unwrap();
    // A message in enhanced mode NE or ER gets no ACK; the idle connection is
    // closed so that `mllp_send`, which waits for one, moves on.
    let (bridge, registry) = Bridge::serve_with_registry(
        serve_dir.path(),
        &["--kafka-brokers", &brokers, "--idle-timeout", "2s"],
    );
    let stage_dir = tempfile::tempdir().unwrap();
    let mut stage = transform(&brokers, &registry, stage_dir.path());

    let files = fixture_files();
    let sent = script(
        &python,
        &[
            vec![
                "--mllp".to_owned(),
                bridge.addr.to_string(),
                "--send-only".to_owned(),
            ],
            files.clone(),
        ]
        .concat(),
    );
    assert!(sent.status.success(), "mllp_send failed");

    // Wait until the stage has written every output the raw records call for.
    let expected: usize = INPUTS
        .iter()
        .flat_map(|t| read_kafka_topic(&cfg, t))
        .map(|r| expected_output_count(&r.value))
        .sum();
    let start = Instant::now();
    let mut written = 0;
    while written < expected && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(300));
        written = output_topics()
            .iter()
            .map(|t| read_kafka_topic(&cfg, t).len())
            .sum();
    }
    assert_eq!(written, expected, "outputs written by the stage");

    let topics = FhirTopics::new("fhir.");
    let mut args = vec![
        "--brokers".to_owned(),
        brokers.clone(),
        "--registry".to_owned(),
        registry.clone(),
    ];
    // How many records each topic has, as the bridge's own reader sees them.
    let count = |flag: &str, topic: &str| {
        let n = read_kafka_topic(&cfg, topic).len();
        [flag.to_owned(), format!("{topic}={n}")]
    };
    for topic in hl7bridge::topics::raw_topics("hl7v2.", &[]) {
        args.extend(count("--raw-topic", &topic));
    }
    for topic in topics.by_resource() {
        args.extend(count("--fhir-topic", topic));
    }
    let checked = script(&python, &[args, files].concat());
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "the Confluent client check failed"
    );
    for topic in topics.by_resource() {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{topic}: ")))
            .unwrap_or_else(|| panic!("{topic} was not read"));
        let counts: Vec<usize> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(counts[0] > 0, "{topic} has no records: {line}");
        assert_eq!(counts[0], counts[1], "{line}");
    }
    assert!(stdout.contains("0 problem(s)"), "{stdout}");

    stage.kill().unwrap();
    stage.wait().unwrap();
    drop(bridge);
}
