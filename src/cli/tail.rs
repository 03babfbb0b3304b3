//! `hl7bridge tail`: print records as JSON Lines (losslessly), raw HL7, or
//! FHIR JSON decoded from Avro through the schema registry.
//!
//! `value` is the raw message as a string when it is valid UTF-8, otherwise
//! base64 with `"value_encoding":"base64"`, so the exact bytes can always be
//! recovered from the output.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use super::StoreArgs;
use crate::config::Config;
use crate::log::embedded::{EmbeddedReader, StoredRecord};
use crate::registry::store::RegistryStore;
use crate::registry::{RemoteRegistry, SchemaRegistry};
use crate::stage::decoder::FhirDecoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The record: topic, partition, offset, key, headers, value.
    Json,
    /// The raw HL7 message, segments on lines.
    Hl7,
    /// A FHIR topic's Avro value decoded through the registry: one resource per line.
    Fhir,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read, e.g. hl7v2.adt or fhir.observation.
    topic: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Start at the first record instead of the end.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records (after filtering).
    #[arg(long)]
    max: Option<u64>,
    /// Keep waiting for new records (the default unless --from-beginning is given).
    #[arg(long)]
    follow: bool,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Only records with this key (a patient key, e.g. GENHOSP|MRN10001).
    #[arg(long)]
    key: Option<String>,
    /// Only records written at or after this: an age (10m, 2h) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<i64>,
    /// Schema registry for --format fhir [default: the embedded one in --data-dir].
    #[arg(long, env = "HL7BRIDGE_SCHEMA_REGISTRY_URL")]
    schema_registry_url: Option<String>,
}

/// `--since` as milliseconds since the epoch.
fn parse_since(s: &str) -> Result<i64, String> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(s) {
        Ok(age) => now.checked_sub(age).ok_or("age reaches before 1970")?,
        Err(_) => humantime::parse_rfc3339_weak(s)
            .map_err(|_| format!("expected an age like 10m or an RFC 3339 time, got {s:?}"))?,
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| "time before 1970".to_owned())
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

pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = args.store.config()?;
    if let Some(url) = &args.schema_registry_url {
        cfg.transform.schema_registry_url = url.clone();
    }
    let follow = args.follow || !args.from_beginning;
    let fhir = match args.format {
        Format::Fhir => Some(fhir_decoder(&cfg)?),
        _ => None,
    };
    let mut printer = Printer {
        format: args.format,
        key: args.key.clone(),
        since: args.since,
        max: args.max,
        printed: 0,
        fhir,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if cfg.kafka.enabled() {
        let mut failed = None;
        crate::log::kafka::tail(&cfg.kafka, &args.topic, args.from_beginning, follow, |r| {
            printer.print(&mut out, &r).unwrap_or_else(|e| {
                failed = Some(e);
                false
            })
        })?;
        return failed.map_or(Ok(ExitCode::SUCCESS), Err);
    }
    let reader = EmbeddedReader::open(&cfg.data_dir)?;
    let mut after = if args.from_beginning {
        0
    } else {
        reader.last_id(&args.topic)?
    };
    loop {
        let batch = reader.read(&args.topic, after, 500)?;
        for r in &batch {
            if !printer.print(&mut out, r)? {
                return Ok(ExitCode::SUCCESS);
            }
            after = r.id;
        }
        if batch.is_empty() {
            if !follow {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry given by URL, or the embedded one in the data directory.
fn fhir_decoder(cfg: &Config) -> anyhow::Result<(tokio::runtime::Runtime, FhirDecoder)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = cfg.transform.schema_registry_url.trim();
    let registry = if url.is_empty() {
        let path = cfg.data_dir.join(crate::registry::store::DB_FILE);
        anyhow::ensure!(
            path.exists(),
            "no embedded schema registry at {}; give --schema-registry-url",
            path.display()
        );
        SchemaRegistry::Embedded(Arc::new(RegistryStore::open(&path)?))
    } else {
        SchemaRegistry::Remote(RemoteRegistry::new(url)?)
    };
    Ok((rt, FhirDecoder::new(registry)))
}

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
