//! The streaming stage: raw HL7 v2 records in, Avro-encoded FHIR R4 records
//! out, each output on the partition its input came from.
//!
//! [`Stage::process`] is the pure part shared by both drivers: one input
//! record has exactly one [`Outcome`]. The drivers add what makes it
//! exactly-once on their backend:
//! - [`embedded`]: outputs and the input cursor commit in one SQLite transaction;
//! - [`kafka`]: a consumer group that, on every assignment, recovers what was
//!   already written from the output partitions themselves.

pub mod decoder;
pub mod dedup;
pub mod embedded;
pub mod kafka;
pub mod progress;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::avro::{self, FhirSchemas};
use crate::headers as h;
use crate::record::Record;
use crate::record::WithHeaders;
use crate::registry::{migration, topic_name_subject, RegistryError, SchemaRegistry};
use crate::topics::FhirTopics;
use crate::transform::{Mapper, Resource, Skipped};

/// Input headers copied onto every output.
const CARRIED: &[&str] = &[
    h::CONTROL_ID,
    h::SENDING_APPLICATION,
    h::SENDING_FACILITY,
    h::MESSAGE_TYPE,
    h::TRIGGER_EVENT,
    h::RECEIVED_AT,
];

#[derive(Debug, Clone)]
pub struct StageConfig {
    /// Raw topics to read.
    pub inputs: Vec<String>,
    /// Output topic prefix (see [`FhirTopics`]).
    pub output_prefix: String,
    /// How long a (sender, MSH-10, bytes) triple is remembered.
    pub dedup_window: Duration,
    /// Consumer group (Kafka) or cursor name (embedded).
    pub group: String,
}

impl StageConfig {
    pub fn new(input_prefix: &str) -> Self {
        Self {
            inputs: crate::topics::stage_inputs(input_prefix),
            output_prefix: "fhir.".into(),
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            group: "hl7bridge-transform".into(),
        }
    }

    /// The stage settings of a bridge config.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let mut s = Self::new(&cfg.topic_prefix);
        s.output_prefix = cfg.transform.output_prefix.clone();
        s.dedup_window = cfg.transform.dedup_window;
        s.group = cfg.transform.group.clone();
        s
    }

    pub fn topics(&self) -> FhirTopics {
        FhirTopics::new(&self.output_prefix)
    }
}

/// An input record, borrowed from whichever backend read it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a str>,
    pub headers: &'a [(String, String)],
    pub value: &'a [u8],
}

impl WithHeaders for Source<'_> {
    fn headers(&self) -> &[(String, String)] {
        self.headers
    }
}

impl Source<'_> {
    /// `topic/partition/offset`, as stored in the dedup window.
    pub fn coordinates(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// What one input record became.
#[derive(Debug)]
pub enum Outcome {
    /// FHIR records, Encounter first, then Observations in OBX order.
    Resources(Vec<Record>),
    /// A valid message with nothing to map (for example ADT without PV1).
    NoContent,
    /// Mapping or encoding failed: one `fhir.dlq` record with the raw bytes.
    Dead(Record),
    /// Some segments could not be mapped: the FHIR records of the rest, then
    /// one `fhir.dlq` record per failed segment (`error.segment`,
    /// `error.segment_index`), all indexed as outputs of the input.
    Partial(Vec<Record>),
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Resources(_) => "resources",
            Outcome::NoContent => "no_content",
            Outcome::Dead(_) => "dead",
            Outcome::Partial(_) => "partial",
        }
    }

    pub fn into_records(self) -> Vec<Record> {
        match self {
            Outcome::Resources(r) | Outcome::Partial(r) => r,
            Outcome::NoContent => Vec::new(),
            Outcome::Dead(r) => vec![r],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("schema registry: {0}")]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    #[error("store error: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("{0}")]
    Setup(String),
    #[error(
        "the schema registry holds {subject} with FHIR decimals as strings; this version of \
         hl7bridge writes them as numbers (Avro double, schema version 3), which the registry \
         refuses as not BACKWARD-compatible. Run `{command}` once, with the same --data-dir, \
         --schema-registry-url and --output-prefix as this command (README: \"Numeric \
         decimals\"), then start again"
    )]
    NeedsSchemaMigration {
        subject: String,
        command: &'static str,
    },
}

/// Schema ids under which each resource type is written, in
/// [`avro::RESOURCE_SCHEMAS`] order.
#[derive(Debug, Clone)]
struct SchemaIds(Vec<u32>);

pub struct Stage {
    mapper: Mapper,
    schemas: FhirSchemas,
    ids: SchemaIds,
    topics: FhirTopics,
    /// Last wire-record size per resource type ([`avro::RESOURCE_SCHEMAS`]
    /// order), to size the next output buffer without regrowing it.
    size_hint: Vec<AtomicUsize>,
}

impl Stage {
    /// Registers the output schemas (TopicNameStrategy subjects) and builds the stage.
    pub async fn new(
        cfg: &StageConfig,
        mapper: Mapper,
        registry: &SchemaRegistry,
    ) -> Result<Self, StageError> {
        let topics = cfg.topics();
        let mut ids = vec![0; avro::RESOURCE_SCHEMAS.len()];
        for ((id, topic), (_, avsc)) in ids
            .iter_mut()
            .zip(topics.by_resource())
            .zip(avro::RESOURCE_SCHEMAS.iter())
        {
            let subject = topic_name_subject(topic);
            *id = match registry.register(&subject, avsc).await {
                Ok(id) => id,
                Err(
                    e @ (RegistryError::Incompatible { .. }
                    | RegistryError::Remote {
                        error_code: 409, ..
                    }),
                ) => {
                    let latest = registry.latest_schema(&subject).await?;
                    return Err(if migration::needs_migration(&latest, avsc) {
                        StageError::NeedsSchemaMigration {
                            subject,
                            command: migration::COMMAND,
                        }
                    } else {
                        e.into()
                    });
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(Self {
            mapper,
            schemas: FhirSchemas::builtin(),
            ids: SchemaIds(ids),
            topics,
            size_hint: avro::RESOURCE_SCHEMAS
                .iter()
                .map(|_| AtomicUsize::new(0))
                .collect(),
        })
    }

    pub fn topics(&self) -> &FhirTopics {
        &self.topics
    }

    /// Maps and encodes one input record. Never fails: what cannot be mapped
    /// or encoded becomes a dead letter carrying the reason (no content).
    pub fn process(&self, src: &Source<'_>) -> Outcome {
        // The mapper's typed resources are encoded while they borrow the
        // message: no JSON tree in between.
        let mapped = self.mapper.map_with(src.value, |resources, skipped| {
            if resources.is_empty() {
                return match skipped.first() {
                    None => Outcome::NoContent,
                    // Nothing else to emit: the message is dead as a whole.
                    Some(s) => Outcome::Dead(self.dead(src, "map", &s.reason)),
                };
            }
            let count = resources.len() + skipped.len();
            // What every output of this input shares, built once.
            let mut shared = Shared {
                headers: provenance_base(src),
                count: count.to_string(),
                key: src.key,
                timestamp_ms: now_ms(),
            };
            let mut out = Vec::with_capacity(count);
            for (index, resource) in resources.iter().enumerate() {
                // `Record.headers` owns its strings, so each output needs its
                // own copy; the last one takes the shared vector instead (it
                // was built with room for the per-output headers).
                let base = if index + 1 == count {
                    std::mem::take(&mut shared.headers)
                } else {
                    let mut v = Vec::with_capacity(shared.headers.len() + 4);
                    v.extend(shared.headers.iter().cloned());
                    v
                };
                match self.encode(src, &shared, base, resource, index) {
                    Ok(r) => out.push(r),
                    Err(reason) => return Outcome::Dead(self.dead(src, "encode", &reason)),
                }
            }
            if skipped.is_empty() {
                return Outcome::Resources(out);
            }
            for (i, part) in skipped.iter().enumerate() {
                out.push(self.dead_part(src, resources.len() + i, count, part));
            }
            Outcome::Partial(out)
        });
        mapped.unwrap_or_else(|e| Outcome::Dead(self.dead(src, "map", &e.reason)))
    }

    fn encode(
        &self,
        src: &Source<'_>,
        shared: &Shared<'_>,
        mut headers: Vec<(String, String)>,
        resource: &Resource<'_>,
        index: usize,
    ) -> Result<Record, String> {
        let kind = resource.resource_type();
        let Some(i) = avro::RESOURCE_SCHEMAS.iter().position(|(k, _)| *k == kind) else {
            return Err(format!("no output topic for resource type {kind:?}"));
        };
        let (topic, id, hint) = (
            &self.topics.by_resource()[i],
            self.ids.0[i],
            &self.size_hint[i],
        );
        let encoder = self
            .schemas
            .encoder(kind)
            .ok_or_else(|| format!("no schema for resource type {kind:?}"))?;
        // Wire header, then the datum straight after it: no copy.
        let mut value = Vec::with_capacity(hint.load(Ordering::Relaxed) + 64);
        value.extend_from_slice(&avro::wire_header(id));
        encoder
            .encode_resource_into(kind, resource, &mut value)
            .map_err(|e| e.to_string())?;
        hint.store(value.len(), Ordering::Relaxed);
        headers.push((h::SOURCE_INDEX.into(), index.to_string()));
        headers.push((h::SOURCE_COUNT.into(), shared.count.clone()));
        headers.push((h::RESOURCE_TYPE.into(), kind.into()));
        headers.push((h::RESOURCE_ID.into(), resource.id().into()));
        Ok(Record {
            topic: topic.clone(),
            key: shared.key.map(str::to_owned),
            partition: Some(src.partition),
            headers,
            timestamp_ms: shared.timestamp_ms,
            value: Bytes::from(value),
        })
    }

    /// The `fhir.dlq` record of one segment the mapper skipped: the raw
    /// bytes, where the segment is, and why, without content.
    fn dead_part(&self, src: &Source<'_>, index: usize, count: usize, part: &Skipped) -> Record {
        tracing::warn!(
            topic = src.topic,
            partition = src.partition,
            offset = src.offset,
            control_id = src.header(h::CONTROL_ID).unwrap_or(""),
            segment = part.segment,
            segment_index = part.index,
            reason = %part.reason,
            "segment dead-lettered by the stage; the rest of the message was mapped"
        );
        let mut headers = provenance(src, index, count);
        headers.push((h::ERROR_CODE.into(), "map".into()));
        headers.push((h::ERROR_REASON.into(), part.reason.clone()));
        headers.push((h::ERROR_SEGMENT.into(), part.segment.into()));
        headers.push((h::ERROR_SEGMENT_INDEX.into(), part.index.to_string()));
        self.dlq_record(src, headers)
    }

    /// A `fhir.dlq` record: the raw bytes, on the input's key and partition.
    fn dlq_record(&self, src: &Source<'_>, headers: Vec<(String, String)>) -> Record {
        Record {
            topic: self.topics.dlq.clone(),
            key: src.key.map(str::to_owned),
            partition: Some(src.partition),
            headers,
            timestamp_ms: now_ms(),
            value: Bytes::copy_from_slice(src.value),
        }
    }

    fn dead(&self, src: &Source<'_>, code: &str, reason: &str) -> Record {
        tracing::warn!(
            topic = src.topic,
            partition = src.partition,
            offset = src.offset,
            control_id = src.header(h::CONTROL_ID).unwrap_or(""),
            code,
            reason,
            "record dead-lettered by the stage"
        );
        let mut headers = provenance(src, 0, 1);
        headers.push((h::ERROR_CODE.into(), code.into()));
        headers.push((h::ERROR_REASON.into(), reason.into()));
        self.dlq_record(src, headers)
    }
}

/// What every output of one input record shares.
struct Shared<'a> {
    /// [`provenance_base`]: carried headers, source topic, partition, offset
    /// (taken by the last output).
    headers: Vec<(String, String)>,
    count: String,
    key: Option<&'a str>,
    timestamp_ms: i64,
}

fn provenance(src: &Source<'_>, index: usize, count: usize) -> Vec<(String, String)> {
    let mut out = provenance_base(src);
    out.extend([
        (h::SOURCE_INDEX.into(), index.to_string()),
        (h::SOURCE_COUNT.into(), count.to_string()),
    ]);
    out
}

/// The provenance headers up to `source.offset` (index and count follow).
fn provenance_base(src: &Source<'_>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(CARRIED.len() + 7);
    out.extend(
        CARRIED
            .iter()
            .filter_map(|k| src.header(k).map(|v| ((*k).to_owned(), v.to_owned()))),
    );
    out.extend([
        (h::SOURCE_TOPIC.into(), src.topic.to_owned()),
        (h::SOURCE_PARTITION.into(), src.partition.to_string()),
        (h::SOURCE_OFFSET.into(), src.offset.to_string()),
    ]);
    out
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
