//! The v2 -> FHIR mapping: golden files per fixture (each names the IG rows
//! it checks), and every resource valid against the official FHIR R4 JSON
//! Schema.
//!
//! Regenerate the golden files after a deliberate mapping change with
//! `HL7BRIDGE_BLESS=1 cargo test --test fhir_mapping`, then review the diff.

mod common;

use std::path::Path;

use common::*;
use hl7bridge::transform::{Mapped, Mapper};
use serde_json::{json, Value};

/// Fixtures with FHIR content, and the IG rows their golden file checks.
const GOLDEN: &[(&str, &[&str])] = &[
    (
        "adt_a01_v251.hl7",
        &[
            "PV1-2 -> class (PatientClass[EncounterClass] I -> IMP)",
            "MSH-9.2 A01 -> status in-progress (Event[EncounterStatus])",
            "PV1-3 -> location",
            "PV1-4 -> type",
            "PV1-7/8/9/17 -> participant ATND/REF/CON/ADM",
            "PV1-10 -> serviceType",
            "PV1-14 -> hospitalization.admitSource",
            "PV1-19 -> identifier (VN)",
            "PV1-44 -> period.start",
            "OBX (NM) -> Observation.valueQuantity with UCUM units",
            "PID-3 MR -> subject.identifier",
        ],
    ),
    (
        "adt_a03_v251.hl7",
        &[
            "PV1-45 valued -> status finished, period.end",
            "PV1-36 -> hospitalization.dischargeDisposition",
        ],
    ),
    (
        "adt_a04_v251.hl7",
        &[
            "MSH-9.2 A04 -> status planned (the IG's choice)",
            "PV1-2 O -> class AMB",
        ],
    ),
    ("adt_a11_v251.hl7", &["A11 -> status cancelled"]),
    (
        "adt_a13_v251.hl7",
        &["A13 -> status in-progress and no period.end"],
    ),
    (
        "oru_r01_v251.hl7",
        &[
            "OBX-2 NM -> valueQuantity",
            "OBX-2 ST/TX/FT -> valueString (escapes decoded)",
            "OBX-2 CWE -> valueCodeableConcept",
            "OBX-2 SN -> Quantity with comparator / Range / Ratio",
            "OBX-2 DT -> valueDateTime (date stays a date)",
            "OBX-7 -> referenceRange.text",
            "OBX-8 -> interpretation (v2-0078)",
            "OBX-11 -> status (F/P/C)",
            "OBX-14 -> effectiveDateTime",
            "OBX-16 -> performer",
            "NTE after OBX -> note",
            "PV1-19 -> Observation.encounter",
            "repeating OBX-5 -> component",
        ],
    ),
    (
        "orm_o01_v251.hl7",
        &[
            "OBX in ORM^O01 -> Observation",
            "OBR-7 -> effectiveDateTime when OBX-14 is empty",
        ],
    ),
    ("oru_r01_v23.hl7", &["v2.3 ORU -> Observation"]),
    (
        "adt_a01_pv1_pv2_full.hl7",
        &[
            "PV1-6/11/42, PV2-1 -> location completed/active (temporary)/reserved/planned",
            "PV1-13/15/16/38 -> hospitalization.reAdmission/specialArrangement/specialCourtesy/dietPreference",
            "PV1-37 -> hospitalization.destination (logical Location)",
            "PV1-50 -> identifier, PV1-52/PV2-13 -> participant PART/REF",
            "PV1-53/54 -> episodeOfCare (logical: identifier and display)",
            "PV2-3 -> reasonCode, PV2-11 -> length (days), PV2-12 -> text (escaped XHTML)",
            "PV2-8/9 -> plannedStartDate/plannedEndDate, PV2-38 -> modeOfArrival extensions",
            "PV2-22 -> meta.security, PV2-25 -> priority with v3-ActPriority",
        ],
    ),
    (
        "oru_r01_ed_attachment.hl7",
        &[
            "OBX-2 ED Base64 -> R5 Observation.value extension with valueAttachment (contentType, data)",
            "OBX-2 RP -> valueAttachment url and contentType",
            "OBX-2 ED in ASCII -> data as Base64, ED-2 as alternate code when ED-3 is empty",
            "OBX-11 X -> _status alternate code, OBX-11 N -> dataAbsentReason not-asked",
        ],
    ),
    (
        "oru_r01_obx_full.hl7",
        &[
            "OBX-10 -> nature-of-abnormal-test, OBX-19 -> analysis-date-time, OBX-30 -> structure-type",
            "OBX-15/23/25 -> performer (logical Organization and Practitioner)",
            "OBX-17 -> method, OBX-18 -> device, OBX-20 -> bodySite, OBX-21 -> identifier (FILL)",
            "OBX-29 -> category (v2-0936)",
            "OBX-33 one -> specimen, several -> R5 Observation.specimen extensions",
        ],
    ),
    (
        "adt_a01_latin1.hl7",
        &["8859/1 text decoded into FHIR strings"],
    ),
    (
        "adt_a01_v28.hl7",
        &["CX-4.2 (ISO OID) -> identifier.system urn:oid"],
    ),
];

fn golden_path(fixture: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(fixture.replace(".hl7", ".json"))
}

fn resources(fixture_name: &str) -> Vec<Value> {
    match Mapper::default().map(&fixture(fixture_name)) {
        Ok(Mapped::Resources(r)) => r,
        other => panic!("{fixture_name}: expected resources, got {other:?}"),
    }
}

#[test]
fn every_fixture_matches_its_golden_file() {
    let bless = std::env::var("HL7BRIDGE_BLESS").is_ok_and(|v| v == "1");
    for (name, checks) in GOLDEN {
        let got = json!({"fixture": name, "checks": checks, "resources": resources(name)});
        let path = golden_path(name);
        if bless {
            std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
            continue;
        }
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap();
        assert_eq!(got, want, "{name}: mapping differs from {}", path.display());
    }
}

#[test]
fn every_resource_from_every_fixture_is_valid_fhir_r4() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir/fhir.r4.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft6::new(&schema).expect("the FHIR schema compiles");
    let mapper = Mapper::default();
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "hl7") {
            continue;
        }
        for m in hl7bridge::replay::split::split(&std::fs::read(&path).unwrap()) {
            if let Ok(Mapped::Resources(rs)) = mapper.map(&m) {
                for r in rs {
                    let errors: Vec<String> = validator
                        .iter_errors(&r)
                        .map(|e| format!("{} at {}", e, e.instance_path()))
                        .take(5)
                        .collect();
                    assert!(
                        errors.is_empty(),
                        "{}: {} {} is not valid FHIR R4: {errors:#?}",
                        path.display(),
                        r["resourceType"],
                        r["id"]
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 60, "validated {checked} resources");
}

#[test]
fn ids_are_deterministic_and_messages_without_content_or_with_bad_obx_are_told_apart() {
    assert_eq!(
        resources("oru_r01_v251.hl7"),
        resources("oru_r01_v251.hl7"),
        "same input, same ids"
    );
    let no_content = b"MSH|^~\\&|A|F|B|G|2026||ADT^A08|N1|P|2.5\rPID|||1^^^H^MR\r";
    assert_eq!(Mapper::default().map(no_content), Ok(Mapped::NoContent));
    let bad =
        b"MSH|^~\\&|A|F|B|G|2026||ORU^R01|N2|P|2.5\rPID|||1^^^H^MR\rOBX|1|NM||1|5|mg||||||F\r";
    let e = Mapper::default().map(bad).unwrap_err();
    assert_eq!(e.reason, "OBX-3 observation identifier is empty in OBX 1");
}
