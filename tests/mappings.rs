//! `mappings/tables.toml` agrees with the HL7 V2-to-FHIR IG concept maps
//! (../shared/reference/v2-to-fhir/codesystems): every IG row is in the
//! table with the IG's target, and every extra row is marked "project".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hl7bridge::transform::Tables;

/// `shared/reference/v2-to-fhir/codesystems` beside the checkout or beside
/// one of its parents (a git worktree is one level further down).
fn ig_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared/reference/v2-to-fhir/codesystems"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "the IG tables are expected in shared/reference/v2-to-fhir beside {} or one of its parents",
                manifest.display()
            )
        })
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

/// The fixed concept maps of the new resources (`transform::codes`) are the
/// IG's: every IG row with a FHIR target is there with that target, and
/// nothing else is. (CP in TelecommunicationEquipmentType targets `mobile`,
/// a ContactPoint.use, so its system row is `phone`; the IG's own column
/// for CP names the use code system.)
#[test]
fn the_fixed_concept_maps_are_the_igs() {
    use hl7bridge::transform::codes;
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("AdministrativeSex.csv", codes::ADMINISTRATIVE_SEX),
        ("ResultStatus[Non-Queries].csv", codes::RESULT_STATUS),
        ("OrderStatus.csv", codes::ORDER_STATUS),
        (
            "OrderControlCode[ServiceRequest.status].csv",
            codes::ORDER_CONTROL_STATUS,
        ),
        ("NameType.csv", codes::NAME_USE),
        ("AddressType[Use].csv", codes::ADDRESS_USE),
        ("TelecommunicationUseCode.csv", codes::TELECOM_USE),
        (
            "YesNoIndicator[AvailabilityStatus].csv",
            codes::SPECIMEN_AVAILABILITY,
        ),
    ];
    for (file, table) in cases {
        let ours: BTreeMap<String, String> = table
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(ours, concept_map(file), "{file}");
    }
    // ExtendedPriorityCodes: the rows with a FHIR code (the TS<n>... rows are patterns).
    let priority: BTreeMap<String, String> = concept_map("ExtendedPriorityCodes.csv")
        .into_iter()
        .filter(|(k, _)| !k.contains('<'))
        .collect();
    let ours: BTreeMap<String, String> = codes::PRIORITY
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(ours, priority);
    let mut equipment = concept_map("TelecommunicationEquipmentType.csv");
    equipment.insert("CP".into(), "phone".into());
    let ours: BTreeMap<String, String> = codes::TELECOM_SYSTEM
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.to_string()))
        .collect();
    let theirs: BTreeMap<String, String> = equipment
        .into_iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v))
        .collect();
    assert_eq!(ours, theirs);
    let marital: BTreeMap<String, String> = codes::MARITAL_STATUS
        .iter()
        .map(|(k, v, ..)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(marital, concept_map("MaritalStatus.csv"));
}
