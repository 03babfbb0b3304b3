//! Reading what the streaming stage wrote, and what it should have written.
#![allow(dead_code)]

use hl7bridge::record::WithHeaders;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hl7bridge::log::embedded::EmbeddedReader;
use hl7bridge::record::StoredRecord;
use hl7bridge::registry::store::RegistryStore;
use hl7bridge::registry::SchemaRegistry;
use hl7bridge::stage::decoder::FhirDecoder;
use hl7bridge::stage::progress;
use hl7bridge::transform::{Mapped, Mapper};
use serde_json::Value;

pub const INPUTS: [&str; 3] = ["hl7v2.adt", "hl7v2.oru", "hl7v2.orm"];
/// The stage's output topics (their names are pinned by `topics.rs`'s tests).
pub fn output_topics() -> Vec<String> {
    hl7bridge::topics::FhirTopics::new("fhir.")
        .all()
        .iter()
        .map(|t| t.to_string())
        .collect()
}

/// `(output topic, source topic, source partition, source offset, source index)`:
/// what makes an output unique.
pub type OutputId = (String, String, i32, i64, usize);

pub fn output_id(r: &StoredRecord) -> OutputId {
    (
        r.topic.clone(),
        r.header("source.topic").unwrap_or_default().to_owned(),
        r.header("source.partition")
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1),
        r.header("source.offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1),
        r.header("source.index")
            .and_then(|o| o.parse().ok())
            .unwrap_or(usize::MAX),
    )
}

/// Every record of the raw input topics.
pub fn inputs(reader: &EmbeddedReader) -> Vec<StoredRecord> {
    let topics: Vec<String> = INPUTS.iter().map(|s| s.to_string()).collect();
    reader.read_topics(&topics, 0, 10_000_000).unwrap()
}

/// Every record of the FHIR output topics.
pub fn outputs(reader: &EmbeddedReader) -> Vec<StoredRecord> {
    reader.read_topics(&output_topics(), 0, 10_000_000).unwrap()
}

/// The outputs each input should yield: resources mapped directly (and a
/// DLQ entry per skipped segment), or one DLQ entry.
pub fn expected_output_count(value: &[u8]) -> usize {
    match Mapper::default().map(value) {
        Ok(Mapped::Resources(r)) => r.len(),
        Ok(Mapped::Partial { resources, skipped }) => resources.len() + skipped.len(),
        Ok(Mapped::NoContent) => 0,
        Err(_) => 1,
    }
}

/// Waits until the embedded stage's cursor has reached the last input record.
pub fn wait_for_stage(dir: &Path, group: &str, deadline: Duration) {
    let reader = EmbeddedReader::open(dir).unwrap();
    let start = Instant::now();
    loop {
        let last = inputs(&reader).last().map(|r| r.id).unwrap_or(0);
        let cursor = progress::cursor(reader.connection(), group).unwrap();
        if cursor >= last && last > 0 {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "stage cursor {cursor} did not reach the last input {last} in {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A decoder reading schemas from the embedded registry in `dir`.
pub fn embedded_decoder(dir: &Path) -> FhirDecoder {
    let store = RegistryStore::open(&dir.join(hl7bridge::registry::store::DB_FILE)).unwrap();
    FhirDecoder::new(SchemaRegistry::Embedded(std::sync::Arc::new(store)))
}

/// An input's coordinates: `(topic, partition, offset)`.
pub type SourceId = (String, i32, i64);

pub fn source_id(r: &StoredRecord) -> SourceId {
    (r.topic.clone(), r.partition, r.offset)
}

/// Decodes every output grouped by its input, in index order.
pub async fn decoded_by_source(
    decoder: &mut FhirDecoder,
    outputs: &[StoredRecord],
) -> HashMap<SourceId, Vec<Value>> {
    let mut by: HashMap<SourceId, Vec<(usize, Value)>> = HashMap::new();
    for r in outputs.iter().filter(|r| r.topic != "fhir.dlq") {
        let (_, t, p, o, i) = output_id(r);
        let v = decoder.decode(&r.value).await.unwrap();
        by.entry((t, p, o)).or_default().push((i, v));
    }
    by.into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|(i, _)| *i);
            (k, v.into_iter().map(|(_, v)| v).collect())
        })
        .collect()
}
