//! `convert`: FHIR from HL7 v2 files, offline (no store, no broker). For
//! analysts, and for the golden tests.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::hl7::files::{self, Discovery};
use crate::transform::{Mapped, Mapper, Tables};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One resource per line.
    Ndjson,
    /// One FHIR transaction Bundle: a PUT per resource, loadable as it is.
    Bundle,
}

/// Maps every message of `paths` and prints the resources; true when every
/// message was mapped (or had no FHIR content) and no input was dropped.
/// No message at all is an error ([`files::InputError::Empty`]), as in
/// `replay` and `inspect`.
pub fn convert(
    paths: &[PathBuf],
    discovery: &Discovery,
    verbose: bool,
    format: Format,
    mappings: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    let mapper = Mapper {
        tables: match mappings {
            Some(p) => Tables::load(p)?,
            None => Tables::builtin(),
        },
        ..Mapper::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bundle = Vec::new();
    let (mut messages, mut no_content, mut partial, mut failed) = (0, 0, 0, 0);
    let found = discovery.find(paths)?;
    let mut stderr = std::io::stderr();
    files::note_skipped(&found, verbose, &mut stderr);
    let mut warnings = 0;
    for file in &found.files {
        let loaded = files::load(file, &mut stderr)?;
        warnings += loaded.split.dropped.len();
        for (i, m) in loaded.split.messages.iter().enumerate() {
            messages += 1;
            let resources = match mapper.map(m) {
                Ok(Mapped::Resources(rs)) => rs,
                Ok(Mapped::Partial { resources, skipped }) => {
                    partial += 1;
                    for s in skipped {
                        eprintln!(
                            "{}: message {}: {} {} not mapped (the rest of the message was): {}",
                            file.display(),
                            i + 1,
                            s.segment,
                            s.index,
                            s.reason
                        );
                    }
                    resources
                }
                Ok(Mapped::NoContent) => {
                    no_content += 1;
                    continue;
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{}: message {}: not mapped: {e}", file.display(), i + 1);
                    continue;
                }
            };
            for r in resources {
                match format {
                    Format::Ndjson => writeln!(out, "{r}")?,
                    Format::Bundle => bundle.push(r),
                }
            }
        }
    }
    if messages == 0 {
        return Err(files::empty(paths, &found).into());
    }
    if let Format::Bundle = format {
        writeln!(out, "{}", to_bundle(bundle))?;
    }
    out.flush()?;
    let dropped = if warnings > 0 {
        format!(", {warnings} input warning(s)")
    } else {
        String::new()
    };
    eprintln!(
        "convert: {messages} message(s), {no_content} with no FHIR content, {partial} partly mapped, {failed} not mapped{dropped}"
    );
    Ok(failed == 0 && partial == 0 && warnings == 0)
}

/// A transaction Bundle a FHIR server takes as it is: one `PUT <Type>/<id>`
/// per resource, so loading it again updates rather than duplicates. Ids
/// are deterministic, so a resource met twice (the same message in two
/// files, or a Patient every message mentions) is one entry, with its last
/// content. `fullUrl` must be absolute: a `urn:uuid:` made from the id
/// (unique, as ids are); references between resources stay `Type/id`,
/// which the server resolves against the PUTs.
pub fn to_bundle(resources: Vec<Value>) -> Value {
    let mut entries: Vec<Value> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in resources {
        let url = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap_or(""),
            r["id"].as_str().unwrap_or("")
        );
        let entry = json!({
            "fullUrl": full_url(&url),
            "resource": r,
            "request": {"method": "PUT", "url": url},
        });
        match at.get(&url) {
            Some(&i) => entries[i] = entry,
            None => {
                at.insert(url, entries.len());
                entries.push(entry);
            }
        }
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// `urn:uuid:` from a SHA-256 of `Type/id`, shaped as a version-4 UUID.
fn full_url(type_and_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut b: [u8; 16] = Sha256::digest(type_and_id.as_bytes())[..16]
        .try_into()
        .unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
