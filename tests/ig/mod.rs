//! Reading the IG's segment maps and the fixtures for tests/ig_coverage.rs:
//! the CSV rows, a v2 message's fields and the rows' conditions, and an IG
//! "FHIR Attribute" looked up in a mapped resource.

pub mod generate;
pub mod groups;
pub mod message;
pub mod target;

use std::path::{Path, PathBuf};

/// The IG tables: `$HL7BRIDGE_IG_DIR`, else `shared/reference/v2-to-fhir`
/// beside the checkout or beside one of its parents (CI has it beside the
/// checkout; a git worktree is one level further down).
pub fn ig_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HL7BRIDGE_IG_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared/reference/v2-to-fhir"))
        .find(|p| p.join("segments").is_dir())
        .unwrap_or_else(|| {
            panic!(
                "the IG tables are expected in shared/reference/v2-to-fhir beside {} or one of its parents, \
                 or in $HL7BRIDGE_IG_DIR",
                manifest.display()
            )
        })
}

/// One row of a segment map.
#[derive(Debug, Clone)]
pub struct Row {
    /// `PV1-3`.
    pub field: String,
    /// "Computable ANTLR" condition, `""` when unconditional.
    pub condition: String,
    /// "FHIR Attribute", or the proposed-extension column when that is empty.
    pub attribute: String,
    /// "Assignment", without the IG's surrounding quotes.
    pub assignment: String,
    /// The v2 data type (`CWE`).
    pub datatype: String,
    /// The v2 field repeats (cardinality max `-1` or `*`).
    pub repeats: bool,
    /// The condition in prose, when the IG gives one.
    pub narrative: String,
    /// "Data Type Mapping" (`CWE[CodeableConcept]`).
    pub datatype_map: String,
    /// "Vocabulary Mapping" (a concept map under `codesystems/`).
    pub vocabulary: String,
    pub comment: String,
}

impl Row {
    /// The URL an extension's `url` row assigns (OBX-19 has it in the comment column).
    pub fn url_assignment(&self) -> &str {
        if self.assignment.is_empty() && self.comment.starts_with("http") {
            &self.comment
        } else {
            &self.assignment
        }
    }
}

/// The rows of `segments/<file>` that map a field somewhere.
pub fn segment_map(file: &str) -> Vec<Row> {
    table(&format!("segments/{file}"))
}

/// Every row of an IG table, mapped or not, as raw columns (the
/// generator reads the datatype and code-system tables this way).
pub fn raw_table(path: &str) -> Vec<Vec<String>> {
    let text =
        std::fs::read_to_string(ig_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    csv_records(text.trim_start_matches('\u{feff}'))
}

/// The rows of any IG mapping table (`segments/…` or `datatypes/…`) that
/// map something. A datatype map's identifiers are `SPS.1`.
pub fn table(path: &str) -> Vec<Row> {
    let file = path;
    let text =
        std::fs::read_to_string(ig_dir().join(path)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let unquote = |s: &str| {
        let s = s.trim();
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
            .trim()
            .to_owned()
    };
    csv_records(&text)
        .into_iter()
        .skip(2) // two header rows
        .filter_map(|r| {
            let col = |i: usize| r.get(i).map(|s| s.trim()).unwrap_or("");
            let attribute = if col(9).is_empty() { col(10) } else { col(9) };
            (!col(1).is_empty() && !attribute.is_empty()).then(|| Row {
                field: col(1).to_owned(),
                condition: col(6).to_owned(),
                attribute: attribute.to_owned(),
                assignment: unquote(col(16)),
                datatype: col(3).to_owned(),
                repeats: matches!(col(5), "-1" | "*"),
                narrative: col(8).to_owned(),
                datatype_map: col(14).to_owned(),
                vocabulary: col(15).to_owned(),
                comment: unquote(col(18)),
            })
        })
        .collect()
}

/// RFC 4180 records: quoted fields may hold commas, quotes (`""`) and newlines.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// Every message of every fixture, by file name.
pub fn fixture_messages() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            hl7bridge::hl7::split::split(&std::fs::read(p).unwrap())
                .into_iter()
                .map(move |m| (name.clone(), m.to_vec()))
        })
        .collect()
}

/// One line of a concept map under `codesystems/`.
pub struct Concept {
    /// The v2 code.
    pub v2: String,
    /// Its v2 code system (`HL70001`).
    pub system: String,
    /// The FHIR code it maps to; empty when the IG gives none.
    pub fhir: String,
}

/// The concept map a row's "Vocabulary Mapping" names (`Yes/NoIndicator`
/// is `codesystems/YesNoIndicator.csv`); empty when there is no such file.
pub fn concept_map(vocabulary: &str) -> Vec<Concept> {
    let name: String = vocabulary
        .chars()
        .filter(|c| *c != '/' && *c != ' ')
        .collect();
    let dir = ig_dir().join("codesystems");
    let file = [
        name.clone(),
        name.split('[').next().unwrap_or("").to_owned(),
    ]
    .into_iter()
    .map(|n| format!("{n}.csv"))
    .find(|f| dir.join(f).is_file());
    let Some(file) = file else {
        return Vec::new();
    };
    raw_table(&format!("codesystems/{file}"))
        .into_iter()
        .skip(2)
        .filter_map(|r| {
            let col = |i: usize| r.get(i).map_or("", |s| s.trim()).to_owned();
            let v2 = col(0);
            (!v2.is_empty()).then(|| Concept {
                v2,
                system: col(2),
                fhir: col(6),
            })
        })
        .collect()
}
