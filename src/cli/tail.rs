//! `hl7bridge tail`: print records as JSON Lines, losslessly.
//!
//! `value` is the raw message as a string when it is valid UTF-8, otherwise
//! base64 with `"value_encoding":"base64"`, so the exact bytes can always be
//! recovered from the output.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use super::StoreArgs;
use crate::log::embedded::{EmbeddedReader, StoredRecord};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Hl7,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read, e.g. hl7v2.adt.
    topic: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Start at the first record instead of the end.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Keep waiting for new records (the default unless --from-beginning is given).
    #[arg(long)]
    follow: bool,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
}

pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.store.config()?;
    let follow = args.follow || !args.from_beginning;
    if cfg.kafka.enabled() {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut printed = 0u64;
        let mut failed = None;
        crate::log::kafka::tail(&cfg.kafka, &args.topic, args.from_beginning, follow, |r| {
            if args.max.is_some_and(|m| printed >= m) {
                return false;
            }
            if let Err(e) = print(&mut out, &r, args.format).and_then(|_| out.flush()) {
                failed = Some(e);
                return false;
            }
            printed += 1;
            args.max.is_none_or(|m| printed < m)
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let reader = EmbeddedReader::open(&cfg.data_dir)?;
    let mut after = if args.from_beginning {
        0
    } else {
        reader.last_id(&args.topic)?
    };
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    loop {
        let batch = reader.read(&args.topic, after, 500)?;
        for r in &batch {
            if args.max.is_some_and(|m| printed >= m) {
                break;
            }
            match args.format {
                Format::Json => writeln!(out, "{}", to_json(r))?,
                Format::Hl7 => {
                    let text = String::from_utf8_lossy(&r.value)
                        .replace("\r\n", "\n")
                        .replace('\r', "\n");
                    writeln!(out, "{}", text.trim_end())?;
                    writeln!(out)?;
                }
            }
            printed += 1;
            after = r.id;
        }
        out.flush()?;
        if args.max.is_some_and(|m| printed >= m) {
            break;
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

fn print(out: &mut impl Write, r: &StoredRecord, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", to_json(r)),
        Format::Hl7 => {
            let text = String::from_utf8_lossy(&r.value)
                .replace("\r\n", "\n")
                .replace('\r', "\n");
            writeln!(out, "{}\n", text.trim_end())
        }
    }
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
