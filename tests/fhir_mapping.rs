//! The v2 -> FHIR mapping: golden files per fixture (each names the IG rows
//! it checks), and every resource valid against the official FHIR R4 JSON
//! Schema.
//!
//! Regenerate the golden files after a deliberate mapping change with
//! `HL7BRIDGE_BLESS=1 cargo test --test fhir_mapping`, then review the diff.

mod common;

use std::path::Path;

use common::*;
use hl7bridge::transform::{Mapped, Mapper, Skipped};
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
            "PID-3 MR -> subject.identifier, subject.reference Patient/<id of the patient key>",
            "PID[Patient]: PID-3 -> identifier, PID-5 -> name (use via NameType), PID-7 -> birthDate, PID-8 -> gender (AdministrativeSex), PID-11 -> address, PID-13 -> telecom, PID-15 -> communication, PID-16 -> maritalStatus (MaritalStatus)",
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
    (
        "oru_r01_v23.hl7",
        &[
            "v2.3 ORU -> Observation",
            "OBR[DiagnosticReport]: OBR-2/ORC-2 -> identifier PLAC, OBR-3 -> identifier FILL, OBR-4 -> code, OBR-7/8 -> effectivePeriod, OBR-22 -> issued, OBR-24 -> category, OBR-25 F -> status final",
            "ORC-2 -> basedOn (logical: no ServiceRequest for an ORU by default)",
            "DiagnosticReport.result -> the OBR's Observations",
        ],
    ),
    (
        "oru_r01_v24_obr15.hl7",
        &[
            "OBR[Specimen] (before v2.5): OBR-2 -> accessionIdentifier, OBR-7/8 -> collection.collectedPeriod, OBR-9 -> collection.quantity, OBR-10 -> collection.collector, OBR-14 -> receivedTime",
            "SPS[Specimen-Source]: SPS-1 -> type, SPS-2 -> container.additive, SPS-3 -> note, SPS-4 -> collection.bodySite, SPS-6 -> condition",
        ],
    ),
    (
        "adt_a40_v251.hl7",
        &[
            "MRG-1 -> prior Patient (identifier, active false, link replaced-by the PID's Patient)",
            "PID + MRG -> surviving Patient with link replaces, for each of two PID/MRG pairs",
            "MRG-7 -> prior Patient name",
            "PID-2/3 -> identifier (SS type), PID-5 repetitions -> name with use official/nickname",
            "PID-7 with time -> birthDate and _birthDate patient-birthTime",
            "PID-13 PRN/NET, PID-14 WPN -> telecom home/email/work",
            "PID-24 Y with PID-25 2 -> multipleBirthInteger only; PID-30 N -> deceasedBoolean false",
            "PD1-3 -> generalPractitioner Organization (logical), PD1-4 -> generalPractitioner Practitioner (logical)",
        ],
    ),
    (
        "orm_o01_two_orders.hl7",
        &[
            "ORC[ServiceRequest]: one ServiceRequest per ORC/OBR group",
            "ORC-5 SC -> status active (OrderStatus); ORC-1 NW without ORC-5 -> active (OrderControlCode)",
            "ORC-2/OBR-2 -> identifier PLAC, ORC-4 -> requisition PGN, ORC-9 with NW -> authoredOn, ORC-12 -> requester",
            "OBR-4 -> code, OBR-5 R -> priority routine, OBR-6 -> occurrenceDateTime, OBR-31 -> reasonCode",
            "TQ1-7/8 -> occurrenceTiming.repeat.boundsPeriod, TQ1-9 S -> priority stat, NTE -> note, ORC-1/ORC-9 -> businessEvent",
            "ORM_O01 OBX -> Observation referenced from supportingInfo",
        ],
    ),
    (
        "oru_r01_two_obr_spm.hl7",
        &[
            "one DiagnosticReport per OBR, result -> that OBR's Observations only",
            "OBR-25 F/P -> status final/preliminary (ResultStatus[Non-Queries])",
            "OBR-34 -> performer (logical Practitioner)",
            "SPM[Specimen]: SPM-2 -> identifier PLAC/FILL, SPM-4 -> type, SPM-7 -> collection.method, SPM-8 -> collection.bodySite, SPM-17 -> collectedDateTime, SPM-18 -> receivedTime, SPM-20 Y -> status available",
            "DiagnosticReport.specimen and Observation.specimen -> Specimen/<id> of the group",
        ],
    ),
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
            "OBX-5 ED/RP of the OBR group -> DiagnosticReport.presentedForm (the Attachments)",
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

/// The official FHIR R4 JSON Schema (MIT notice in tests/fhir/).
fn fhir_r4_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir/fhir.r4.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    jsonschema::draft6::new(&schema).expect("the FHIR schema compiles")
}

#[test]
fn every_resource_from_every_fixture_is_valid_fhir_r4() {
    let validator = fhir_r4_validator();
    let mapper = Mapper::default();
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "hl7") {
            continue;
        }
        for m in hl7bridge::hl7::split::split(&std::fs::read(&path).unwrap()) {
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
    let no_content = b"MSH|^~\\&|A|F|B|G|2026||ADT^A08|N1|P|2.5\rEVN|A08|2026\r";
    assert_eq!(Mapper::default().map(no_content), Ok(Mapped::NoContent));
    let demographics = b"MSH|^~\\&|A|F|B|G|2026||ADT^A08|N1|P|2.5\rPID|||1^^^H^MR\r";
    let Ok(Mapped::Resources(rs)) = Mapper::default().map(demographics) else {
        panic!("an A08 with a PID updates the Patient")
    };
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0]["resourceType"], "Patient");
    // An OBX without OBX-3 costs its Observation: with nothing else to map
    // the message fails; beside a PID it is a partial outcome.
    let bad = b"MSH|^~\\&|A|F|B|G|2026||ORU^R01|N2|P|2.5\rOBX|1|NM||1|5|mg||||||F\r";
    let e = Mapper::default().map(bad).unwrap_err();
    assert_eq!(e.reason, "OBX-3 observation identifier is empty in OBX 1");
    let partial =
        b"MSH|^~\\&|A|F|B|G|2026||ORU^R01|N2|P|2.5\rPID|||1^^^H^MR\rOBX|1|NM||1|5|mg||||||F\r";
    let Ok(Mapped::Partial { resources, skipped }) = Mapper::default().map(partial) else {
        panic!("the Patient is still mapped")
    };
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0]["resourceType"], "Patient");
    assert_eq!(
        skipped,
        [Skipped {
            segment: "OBX",
            index: 1,
            reason: "OBX-3 observation identifier is empty in OBX 1".into()
        }]
    );
}

/// Every literal `reference` ("Type/id") anywhere in a JSON value.
fn literal_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("reference") {
                out.push(r.clone());
            }
            m.values().for_each(|x| literal_references(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| literal_references(x, out)),
        _ => {}
    }
}

/// `convert --format bundle` writes a transaction Bundle a FHIR server
/// takes as it is: valid R4, one `PUT Type/id` per resource, unique
/// absolute fullUrls, every literal reference resolved by one of the PUTs,
/// and no duplicate entry when the same message is given twice.
#[test]
fn the_bundle_is_a_valid_transaction_with_one_put_per_resource() {
    let fixtures = fixtures_dir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hl7bridge"))
        .args(["convert", "--format", "bundle"])
        .arg(fixtures.join("oru_r01_two_obr_spm.hl7"))
        .arg(fixtures.join("oru_r01_two_obr_spm.hl7"))
        .arg(fixtures.join("adt_a40_v251.hl7"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle: Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = fhir_r4_validator();
    let errors: Vec<String> = validator
        .iter_errors(&bundle)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .take(5)
        .collect();
    assert!(errors.is_empty(), "not valid FHIR R4: {errors:#?}");
    assert_eq!(bundle["type"], "transaction");
    let entries = bundle["entry"].as_array().unwrap();
    let mut urls = std::collections::HashSet::new();
    let mut puts = std::collections::HashSet::new();
    let mut references = Vec::new();
    for e in entries {
        let (r, req) = (&e["resource"], &e["request"]);
        assert_eq!(req["method"], "PUT");
        let target = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        assert_eq!(req["url"], target.as_str());
        let full_url = e["fullUrl"].as_str().unwrap();
        assert!(full_url.starts_with("urn:uuid:"), "{full_url}");
        assert!(urls.insert(full_url.to_owned()), "fullUrl {full_url} twice");
        assert!(puts.insert(target.clone()), "{target} twice");
        literal_references(r, &mut references);
    }
    for t in ["Patient", "DiagnosticReport", "Observation", "Specimen"] {
        assert!(
            puts.iter().any(|p| p.starts_with(&format!("{t}/"))),
            "no {t}"
        );
    }
    assert!(!references.is_empty());
    for r in &references {
        assert!(puts.contains(r), "{r} is not one of the bundle's PUTs");
    }
}
