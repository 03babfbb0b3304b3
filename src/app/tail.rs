//! `tail`: print records as JSON Lines (losslessly), raw HL7, or FHIR JSON
//! decoded from Avro through the schema registry.
//!
//! `value` is the raw message as a string when it is valid UTF-8, otherwise
//! base64 with `"value_encoding":"base64"`, so the exact bytes can always be
//! recovered from the output.

use std::io::Write;

use anyhow::Context;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::log::Start;
use crate::record::StoredRecord;
use crate::stage::decoder::FhirDecoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The record: topic, partition, offset, key, headers, value.
    Json,
    /// The raw HL7 message, segments on lines.
    Hl7,
    /// A FHIR topic's Avro value decoded through the registry: one resource per line.
    Fhir,
}

/// What to print and when to stop.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub topic: String,
    pub start: Start,
    /// Keep waiting for new records.
    pub follow: bool,
    /// None: `fhir` on the stage's FHIR topics, `json` elsewhere.
    pub format: Option<Format>,
    /// Only records with this key.
    pub key: Option<String>,
    /// Only records written at or after this (milliseconds since the epoch).
    pub since: Option<i64>,
    /// Stop after this many records (after filtering).
    pub max: Option<u64>,
}

/// Filters and prints records, in any format.
struct Printer {
    format: Format,
    key: Option<String>,
    since: Option<i64>,
    max: Option<u64>,
    printed: u64,
    fhir: Option<(tokio::runtime::Runtime, FhirDecoder)>,
}

impl Printer {
    /// Prints `r` if it passes the filters; false once `--max` is reached.
    fn print(&mut self, out: &mut impl Write, r: &StoredRecord) -> anyhow::Result<bool> {
        if self.max.is_some_and(|m| self.printed >= m) {
            return Ok(false);
        }
        if self
            .key
            .as_deref()
            .is_some_and(|k| r.key.as_deref() != Some(k))
            || self.since.is_some_and(|s| r.timestamp_ms < s)
        {
            return Ok(true);
        }
        match (self.format, &mut self.fhir) {
            (Format::Json, _) => writeln!(out, "{}", to_json(r))?,
            (Format::Hl7, _) => {
                let text = String::from_utf8_lossy(&r.value)
                    .replace("\r\n", "\n")
                    .replace('\r', "\n");
                writeln!(out, "{}\n", text.trim_end())?;
            }
            (Format::Fhir, Some((rt, decoder))) => {
                let resource = rt.block_on(decoder.decode(&r.value)).with_context(|| {
                    format!(
                        "decoding {} partition {} offset {} as FHIR Avro",
                        r.topic, r.partition, r.offset
                    )
                })?;
                writeln!(out, "{resource}")?;
            }
            (Format::Fhir, None) => anyhow::bail!("no schema registry to decode with"),
        }
        out.flush()?;
        self.printed += 1;
        Ok(self.max.is_none_or(|m| self.printed < m))
    }
}

/// Prints the records of `opts.topic` to stdout.
pub fn tail(cfg: &Config, opts: TailOptions) -> anyhow::Result<()> {
    let reader = super::backend::reader(cfg)?;
    let names = reader.topic_names()?;
    if !names.contains(&opts.topic) {
        anyhow::bail!(
            "no topic {} in the {}; the topics are: {}",
            opts.topic,
            super::backend::describe_store(cfg),
            if names.is_empty() {
                "(none yet)".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    let fhir_topic = crate::topics::FhirTopics::new(&cfg.transform.output_prefix)
        .by_resource()
        .contains(&opts.topic);
    let format = match (opts.format, fhir_topic) {
        (Some(Format::Fhir), false) => anyhow::bail!(
            "{} holds HL7 v2 messages, not FHIR Avro: use --format json (the record) or --format hl7",
            opts.topic
        ),
        (Some(Format::Hl7), true) => anyhow::bail!(
            "{} holds FHIR records in Avro: use --format fhir (FHIR JSON) or --format json (the record)",
            opts.topic
        ),
        (Some(f), _) => f,
        (None, true) => Format::Fhir,
        (None, false) => Format::Json,
    };
    let fhir = match format {
        Format::Fhir => Some(fhir_decoder(cfg)?),
        _ => None,
    };
    let mut printer = Printer {
        format,
        key: opts.key,
        since: opts.since,
        max: opts.max,
        printed: 0,
        fhir,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    reader.read(&opts.topic, opts.start, opts.follow, &mut |r| {
        printer.print(&mut out, r).unwrap_or_else(|e| {
            failed = Some(e);
            false
        })
    })?;
    failed.map_or(Ok(()), Err)
}

/// A decoder through the registry of `cfg`.
fn fhir_decoder(cfg: &Config) -> anyhow::Result<(tokio::runtime::Runtime, FhirDecoder)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let registry = super::registry::open(cfg, super::registry::Missing::Fail)?;
    Ok((rt, FhirDecoder::new(registry)))
}

/// A record as one lossless JSON object.
pub fn to_json(r: &StoredRecord) -> Value {
    let mut headers = Map::new();
    for (k, v) in &r.headers {
        headers.insert(k.clone(), Value::String(v.clone()));
    }
    let mut obj = json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "key": r.key,
        "headers": headers,
    });
    match std::str::from_utf8(&r.value) {
        Ok(s) => obj["value"] = Value::String(s.to_owned()),
        Err(_) => {
            obj["value"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(&r.value));
            obj["value_encoding"] = Value::String("base64".into());
        }
    }
    obj
}
