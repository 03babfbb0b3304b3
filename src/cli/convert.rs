//! `hl7bridge convert FILE|DIR...`: FHIR from HL7 v2 files, offline (no store,
//! no broker). For analysts, and for the golden tests.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::hl7::split;
use crate::transform::{Mapped, Mapper, Tables};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One resource per line.
    Ndjson,
    /// One FHIR Bundle (type collection) holding every resource.
    Bundle,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Files or directories (read recursively, in sorted order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "ndjson")]
    format: Format,
    /// Code tables to use instead of the built-in mappings/tables.toml.
    #[arg(long)]
    mappings: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let mapper = Mapper {
        tables: match &args.mappings {
            Some(p) => Tables::load(p)?,
            None => Tables::builtin(),
        },
        ..Mapper::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bundle = Vec::new();
    let (mut messages, mut no_content, mut failed) = (0, 0, 0);
    for file in split::files(&args.paths).context("reading input paths")? {
        let content =
            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        for (i, m) in split::split(&content).iter().enumerate() {
            messages += 1;
            match mapper.map(m) {
                Ok(Mapped::Resources(rs)) => {
                    for r in rs {
                        match args.format {
                            Format::Ndjson => writeln!(out, "{r}")?,
                            Format::Bundle => bundle.push(r),
                        }
                    }
                }
                Ok(Mapped::NoContent) => no_content += 1,
                Err(e) => {
                    failed += 1;
                    eprintln!("{}: message {}: not mapped: {e}", file.display(), i + 1);
                }
            }
        }
    }
    if let Format::Bundle = args.format {
        writeln!(out, "{}", to_bundle(bundle))?;
    }
    out.flush()?;
    eprintln!(
        "convert: {messages} message(s), {no_content} with no FHIR content, {failed} not mapped"
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A Bundle of type collection; fullUrl is the resource's relative URL.
pub fn to_bundle(resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let url = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            );
            json!({"fullUrl": url, "resource": r})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}
