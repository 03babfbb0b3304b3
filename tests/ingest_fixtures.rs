//! Every fixture, sent over a real TCP connection to the real server, gets
//! the ACK the manifest expects, and is stored byte-for-byte on the expected
//! topic with the expected key and partition.

mod common;

use common::*;
use hl7bridge::log::partitioner::partition_for_key;
use hl7bridge::record::WithHeaders;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Manifest {
    fixture: Vec<Fixture>,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    file: String,
    description: String,
    messages: Vec<Expected>,
}

#[derive(Debug, Deserialize)]
struct Expected {
    control_id: String,
    ack: String,
    topic: String,
    key: Option<String>,
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

/// The MSH-10 of a stored record.
fn control_id_of(r: &hl7bridge::record::StoredRecord) -> &str {
    r.header("hl7.control_id").unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_the_embedded_store() {
    every_fixture_gets_the_expected_ack_and_is_stored_exactly(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_kafka() {
    let Some(broker) = tansu::Tansu::memory() else {
        return;
    };
    let cfg = kafka_config(&broker.brokers()).await;
    every_fixture_gets_the_expected_ack_and_is_stored_exactly(
        TestServer::start_kafka(cfg, limits()).await,
    )
    .await;
}

/// The contract both backends must meet.
async fn every_fixture_gets_the_expected_ack_and_is_stored_exactly(server: TestServer) {
    let manifest = manifest();
    assert!(
        manifest.fixture.len() >= 29,
        "the manifest covers every fixture"
    );
    let mut client = server.connect().await;

    for fx in &manifest.fixture {
        let raw = fixture(&fx.file);
        client.send(&raw).await;
        let expected_acks: Vec<&Expected> =
            fx.messages.iter().filter(|m| m.ack != "none").collect();
        let is_batch = raw.starts_with(b"FHS") || raw.starts_with(b"BHS");
        if is_batch {
            let reply = Ack::parse(&client.recv().await);
            let msas = reply.all("MSA");
            assert_eq!(
                msas.len(),
                expected_acks.len(),
                "{}: one ACK per batched message\n{}",
                fx.file,
                reply.text
            );
            for (msa, want) in msas.iter().zip(&expected_acks) {
                assert_eq!(
                    (msa[1].as_str(), msa[2].as_str()),
                    (want.ack.as_str(), want.control_id.as_str()),
                    "{}",
                    fx.file
                );
            }
            let bts = reply.segment("BTS").expect("batch reply ends with BTS");
            assert_eq!(bts[1], expected_acks.len().to_string());
        } else if let Some(want) = expected_acks.first() {
            let ack = Ack::parse(&client.recv().await);
            assert_eq!(
                ack.code(),
                want.ack,
                "{} ({}):\n{}",
                fx.file,
                fx.description,
                ack.text
            );
            assert_eq!(
                ack.control_id(),
                want.control_id,
                "{}: MSA-2 echoes MSH-10",
                fx.file
            );
            if want.ack.starts_with('A') && want.ack != "AA" || want.ack == "CR" {
                assert!(
                    ack.segment("ERR").is_some(),
                    "{}: a reject carries an ERR segment",
                    fx.file
                );
            }
        } else {
            // No ACK expected (enhanced mode NE/ER on success): prove it by
            // checking that nothing arrives before the store has the record.
            assert!(
                client
                    .recv_within(std::time::Duration::from_millis(300))
                    .await
                    .is_none(),
                "{}: no ACK expected",
                fx.file
            );
        }
    }

    // Storage: for each expected message, exactly one record on its topic,
    // with the exact bytes, key and murmur2 partition.
    let partitions = 6;
    for fx in &manifest.fixture {
        let raw = fixture(&fx.file);
        for want in &fx.messages {
            let records = server.records(&want.topic);
            let matching: Vec<_> = if want.control_id.is_empty() {
                records
                    .iter()
                    .filter(|r| {
                        control_id_of(r).is_empty()
                            && raw.windows(r.value.len().max(1)).any(|w| w == &r.value[..])
                    })
                    .collect()
            } else {
                records
                    .iter()
                    .filter(|r| control_id_of(r) == want.control_id)
                    .collect()
            };
            assert_eq!(
                matching.len(),
                1,
                "{}: {} stored once on {}",
                fx.file,
                want.control_id,
                want.topic
            );
            let r = matching[0];
            assert!(
                raw.windows(r.value.len()).any(|w| w == &r.value[..]),
                "{}: stored value is a byte-exact slice of what was sent",
                fx.file
            );
            if fx.messages.len() == 1 {
                assert_eq!(
                    &r.value[..],
                    &raw[..],
                    "{}: stored value is byte-identical",
                    fx.file
                );
            }
            assert_eq!(r.key, want.key, "{}: key", fx.file);
            match &r.key {
                Some(k) => assert_eq!(
                    r.partition as u32,
                    partition_for_key(k.as_bytes(), partitions),
                    "{}: murmur2 partition",
                    fx.file
                ),
                None => assert!((0..partitions as i32).contains(&r.partition)),
            }
            for h in ["bridge.received_at", "bridge.listener", "bridge.peer"] {
                assert!(r.header(h).is_some(), "{}: header {h}", fx.file);
            }
            if want.topic.ends_with(".dlq") {
                assert!(
                    r.header("error.code").is_some() && r.header("error.reason").is_some(),
                    "{}: DLQ headers",
                    fx.file
                );
            } else {
                for h in [
                    "hl7.message_type",
                    "hl7.trigger_event",
                    "hl7.message_structure",
                    "hl7.control_id",
                    "hl7.version",
                    "hl7.processing_id",
                    "hl7.charset",
                    "hl7.sending_application",
                    "hl7.sending_facility",
                    "hl7.receiving_application",
                    "hl7.receiving_facility",
                ] {
                    assert!(r.header(h).is_some(), "{}: header {h}", fx.file);
                }
                assert_eq!(
                    r.header("hl7.patient_key_missing").is_some(),
                    want.key.is_none(),
                    "{}",
                    fx.file
                );
            }
        }
    }
}

#[tokio::test]
async fn the_latin1_ack_is_encoded_in_latin1() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client.send(&fixture("adt_a01_latin1.hl7")).await;
    let ack = client.recv().await;
    assert!(
        std::str::from_utf8(&ack).is_err(),
        "the ACK echoes HÔPITAL in ISO-8859-1, not UTF-8"
    );
    assert!(ack.windows(3).any(|w| w == b"H\xd4P"));
    let stored = &server.records("hl7v2.adt")[0];
    assert_eq!(stored.header("hl7.charset"), Some("ISO-8859-1"));
    assert_eq!(stored.header("hl7.sending_facility"), Some("HÔPITAL"));
}

#[tokio::test]
async fn a_v28_message_with_a_truncation_character_is_acked_with_its_own_msh2() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let ack = client.roundtrip(&fixture("adt_a01_v28.hl7")).await;
    assert_eq!(ack.code(), "AA");
    assert_eq!(ack.segments[0][1], "^~\\&#");
}
