//! `mappings/tables.toml` agrees with the HL7 V2-to-FHIR IG concept maps
//! (../shared/reference/v2-to-fhir/codesystems): every IG row is in the
//! table with the IG's target, and every extra row is marked "project".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hl7bridge::transform::Tables;

fn ig_dir() -> PathBuf {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/v2-to-fhir/codesystems");
    assert!(
        p.is_dir(),
        "the IG tables are expected beside the checkout at {}",
        p.display()
    );
    p
}

/// v2 code -> FHIR code (column 7), for rows where both are present.
fn concept_map(file: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(ig_dir().join(file)).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let cols = csv_fields(line);
        let (code, target) = (
            cols.first().map(|s| s.trim()).unwrap_or(""),
            cols.get(6).map(|s| s.trim()).unwrap_or(""),
        );
        if !code.is_empty() && !target.is_empty() {
            out.insert(code.to_owned(), target.to_owned());
        }
    }
    out
}

/// One CSV line's fields, honouring double quotes (the IG's text columns contain commas).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

fn project_rows(section: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/tables.toml"))
            .unwrap();
    let mut in_section = false;
    let mut keys = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
            continue;
        }
        if in_section && line.contains("# project") {
            keys.push(
                line.split('=')
                    .next()
                    .unwrap()
                    .trim()
                    .trim_matches('"')
                    .to_owned(),
            );
        }
    }
    keys
}

fn check(section: &str, ours: &BTreeMap<String, String>, ig: &BTreeMap<String, String>) {
    for (code, target) in ig {
        assert_eq!(
            ours.get(code),
            Some(target),
            "{section}.{code}: the IG maps it to {target}"
        );
    }
    let marked = project_rows(section);
    for code in ours.keys().filter(|c| !ig.contains_key(*c)) {
        assert!(
            marked.contains(code),
            "{section}.{code} is not in the IG and not marked '# project'"
        );
    }
}

#[test]
fn code_tables_match_the_ig_concept_maps() {
    let t = Tables::builtin();
    check(
        "event_encounter_status",
        &t.event_encounter_status,
        &concept_map("Event[EncounterStatus].csv"),
    );
    check(
        "patient_class_status",
        &t.patient_class_status,
        &concept_map("PatientClass[EncounterStatus].csv"),
    );
    check(
        "observation_status",
        &t.observation_status,
        &concept_map("ObservationResultStatusCodesInterpretation.csv"),
    );
    let class: BTreeMap<String, String> = t
        .patient_class
        .iter()
        .map(|(k, (code, _))| (k.clone(), code.clone()))
        .collect();
    let ig_class: BTreeMap<String, String> = concept_map("PatientClass[EncounterClass].csv")
        .into_iter()
        .filter(|(k, v)| k != v) // identity rows (R, B, C, N, U) are passed through as v2-0004 codes
        .collect();
    check("patient_class", &class, &ig_class);
}

#[test]
fn mappings_check_accepts_the_shipped_tables_and_rejects_a_broken_copy() {
    let bin = env!("CARGO_BIN_EXE_hl7bridge");
    let ok = std::process::Command::new(bin)
        .args(["mappings", "check"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tables.toml");
    std::fs::write(
        &bad,
        hl7bridge::transform::tables::DEFAULT.replace("F = \"final\"", "F = \"done\""),
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["mappings", "check", "--mappings"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("observation_status.F") && err.contains("tables.toml"),
        "{err}"
    );
}
