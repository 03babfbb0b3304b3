//! The one-time migration to numeric decimals (schema version 3), against
//! the embedded registry: a data directory whose registry holds the version-2
//! subjects (decimals as strings) makes `serve` refuse to start, naming the
//! subject and the command; `topics migrate-schemas` registers version 3;
//! then a record written before and one written after both decode.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hl7bridge::avro::{wire_encode, FhirSchemas, RESOURCE_SCHEMAS};
use hl7bridge::registry::migration::{self, MigrationError};
use hl7bridge::registry::store::RegistryStore;
use hl7bridge::registry::{topic_name_subject, SchemaRegistry};
use hl7bridge::stage::decoder::FhirDecoder;
use hl7bridge::stage::{Stage, StageConfig};
use hl7bridge::topics::FhirTopics;
use hl7bridge::transform::{Mapped, Mapper};
use serde_json::{json, Value};

use common::process::bin;
use common::synthetic;

/// What a deployment had registered before version 3: the four schemas with
/// decimals as shipped then, and Patient and DiagnosticReport as they are.
fn version_2(resource_type: &str, current: &'static str) -> &'static str {
    match resource_type {
        "Encounter" => include_str!("avro/fhir.Encounter.v2.avsc"),
        "Observation" => include_str!("avro/fhir.Observation.v2.avsc"),
        "ServiceRequest" => include_str!("avro/fhir.ServiceRequest.v2.avsc"),
        "Specimen" => include_str!("avro/fhir.Specimen.v2.avsc"),
        _ => current,
    }
}

/// Runs the binary to completion; a run that does not end within two
/// minutes is a hang, not a result.
fn run(args: &[&str], data_dir: &Path) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hl7bridge {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn synthetic_observation() -> Value {
    match Mapper::default().map(&synthetic::oru_every_value_type()) {
        Ok(Mapped::Resources(rs)) => rs
            .into_iter()
            .find(|r| r["resourceType"] == "Observation" && r.get("valueQuantity").is_some())
            .unwrap(),
        other => panic!("synthetic message did not map: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_with_text_decimals_is_migrated_once_and_reads_old_and_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RegistryStore::open(&dir.path().join("registry.db")).unwrap());
    let topics = FhirTopics::new("fhir.");
    for (topic, (rt, current)) in topics.by_resource().iter().zip(RESOURCE_SCHEMAS) {
        store
            .register(&topic_name_subject(topic), version_2(rt, current))
            .unwrap();
    }
    let observation_subject = topic_name_subject("fhir.observation");
    let v2 = store
        .lookup(&observation_subject, version_2("Observation", ""))
        .unwrap();
    let resource = synthetic_observation();
    let v2_schema = apache_avro::Schema::parse_str(&v2.schema).unwrap();
    let old_record = wire_encode(
        v2.id,
        &hl7bridge::avro::encode(&v2_schema, &resource).unwrap(),
    );

    // The stage refuses to start, and says which subject and what to run.
    let refused = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--registry-listen",
            "",
            "--metrics-listen",
            "",
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("fhir.encounter-value"), "{stderr}");
    assert!(stderr.contains(migration::COMMAND), "{stderr}");

    // The migration: the four subjects with decimals get version 3, the
    // others are already current.
    let migrated = run(&["topics", "migrate-schemas"], dir.path());
    let stdout = String::from_utf8_lossy(&migrated.stdout);
    assert!(
        migrated.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    for topic in topics.by_resource() {
        let subject = topic_name_subject(topic);
        let expected = match topic.as_str() {
            "fhir.patient" | "fhir.diagnosticreport" => "already current",
            _ => "migrated to numeric decimals (version 2,",
        };
        assert!(
            stdout.contains(&format!("{subject}: {expected}")),
            "{subject}: {stdout}"
        );
        // The override was for that one registration: no level was left set.
        assert_eq!(store.subject_compatibility(&subject).unwrap(), None);
    }
    let again = run(&["topics", "migrate-schemas"], dir.path());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert_eq!(stdout.matches("already current").count(), 6, "{stdout}");

    // The stage now starts on this registry (what `serve` does first).
    let registry = SchemaRegistry::Embedded(Arc::clone(&store));
    Stage::new(&StageConfig::new("hl7v2."), Mapper::default(), &registry)
        .await
        .unwrap();

    // A record written before and one written after both decode to the
    // same FHIR, each with its own writer schema.
    let v3 = store
        .lookup(&observation_subject, hl7bridge::avro::OBSERVATION_AVSC)
        .unwrap();
    assert_ne!(v3.id, v2.id);
    let new_record = wire_encode(
        v3.id,
        &FhirSchemas::builtin()
            .encoder("Observation")
            .unwrap()
            .encode(&resource)
            .unwrap(),
    );
    let mut decoder = FhirDecoder::new(registry);
    assert_eq!(decoder.decode(&old_record).await.unwrap(), resource);
    assert_eq!(decoder.decode(&new_record).await.unwrap(), resource);
}

/// The override lets through the decimals only: a version 3 that also
/// changed something else incompatibly is refused, naming the subject.
#[test]
fn the_migration_overrides_nothing_but_the_decimals() {
    let store = RegistryStore::open_in_memory().unwrap();
    let subject = topic_name_subject("fhir.observation");
    store
        .register(&subject, include_str!("avro/fhir.Observation.v2.avsc"))
        .unwrap();
    let mut other: Value = serde_json::from_str(hl7bridge::avro::OBSERVATION_AVSC).unwrap();
    other["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "required", "type": "string"}));
    let e = migration::migrate(&store, &subject, &other.to_string()).unwrap_err();
    assert!(matches!(e, MigrationError::Incompatible { .. }), "{e}");
    assert!(e.to_string().contains(&subject), "{e}");
    assert_eq!(store.versions(&subject).unwrap(), vec![1]);
}
