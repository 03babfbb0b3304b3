//! The clinical picture (issue 13): Patient from every PID, merges linked
//! both ways, one DiagnosticReport per OBR of an ORU, one ServiceRequest per
//! order group of an ORM, Specimens from SPM (or OBR-15 without SPM), and
//! literal references between them. Mapping rows: docs/mapping-clinical.md.

mod common;

use common::*;
use hl7bridge::transform::{Mapped, Mapper, Tables};
use serde_json::{json, Value};

fn map_with(mapper: &Mapper, raw: &[u8]) -> Vec<Value> {
    match mapper.map(raw) {
        Ok(Mapped::Resources(r)) => r,
        other => panic!("expected resources, got {other:?}"),
    }
}

fn map(raw: &[u8]) -> Vec<Value> {
    map_with(&Mapper::default(), raw)
}

fn of_type<'a>(rs: &'a [Value], rt: &str) -> Vec<&'a Value> {
    rs.iter().filter(|r| r["resourceType"] == rt).collect()
}

fn reference(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap(),
        r["id"].as_str().unwrap()
    )
}

/// The Patient a one-PID A08 about `pid3` gives: the record every message
/// about that patient upserts.
fn patient_of(pid3: &str) -> Value {
    let raw = format!("MSH|^~\\&|ADTAPP|GENHOSP|B|G|2026||ADT^A08|U1|P|2.5.1\rPID|||{pid3}\r");
    let rs = map(raw.as_bytes());
    assert_eq!(rs.len(), 1);
    rs[0].clone()
}

#[test]
fn every_message_about_a_patient_upserts_the_same_patient_and_its_resources_name_it() {
    let adt = patient_of("MRN50005^^^GENHOSP^MR");
    let oru = map(&fixture("oru_r01_v251.hl7"));
    let patients = of_type(&oru, "Patient");
    assert_eq!(patients.len(), 1);
    assert_eq!(
        patients[0]["id"], adt["id"],
        "same patient key, same Patient id"
    );
    for r in &oru {
        if let Some(subject) = r.get("subject") {
            assert_eq!(subject["reference"], json!(reference(&adt)));
            assert_eq!(subject["identifier"]["value"], "MRN50005");
        }
    }
}

#[test]
fn a_merge_links_each_survivor_and_its_prior_patient_both_ways() {
    let rs = map(&fixture("adt_a40_v251.hl7"));
    let patients = of_type(&rs, "Patient");
    assert_eq!(patients.len(), 4, "two PID/MRG pairs");
    for (survivor, prior) in [
        ("MRN60001^^^GENHOSP^MR", "MRN60009^^^GENHOSP^MR"),
        ("MRN60002^^^GENHOSP^MR", "MRN60008^^^GENHOSP^MR"),
    ] {
        // The ids are those every other message about these patients uses.
        let (s_id, p_id) = (
            patient_of(survivor)["id"].clone(),
            patient_of(prior)["id"].clone(),
        );
        let s = patients
            .iter()
            .find(|p| p["id"] == s_id)
            .expect("the survivor");
        let p = patients
            .iter()
            .find(|p| p["id"] == p_id)
            .expect("the prior patient");
        assert!(s.get("active").is_none(), "{s:#}");
        assert_eq!(s["link"][0]["type"], "replaces");
        assert_eq!(s["link"][0]["other"]["reference"], json!(reference(p)));
        assert_eq!(p["active"], false);
        assert_eq!(p["link"][0]["type"], "replaced-by");
        assert_eq!(p["link"][0]["other"]["reference"], json!(reference(s)));
        assert_eq!(
            p["identifier"][0]["value"],
            prior.split('^').next().unwrap(),
            "the prior record carries MRG-1"
        );
    }
}

#[test]
fn an_mrg_naming_the_pids_own_patient_or_a_non_merge_event_links_nothing() {
    let same = b"MSH|^~\\&|A|F|B|G|2026||ADT^A42|M1|P|2.5.1\rPID|||P1^^^H^MR\rMRG|P1^^^H^MR\r";
    let rs = map(same);
    assert_eq!(of_type(&rs, "Patient").len(), 1);
    assert!(rs[0].get("link").is_none());
    let moved = b"MSH|^~\\&|A|F|B|G|2026||ADT^A43|M2|P|2.5.1\rPID|||P1^^^H^MR\rMRG|P2^^^H^MR\r";
    let rs = map(moved);
    assert_eq!(
        of_type(&rs, "Patient").len(),
        1,
        "A43 moves, it does not merge"
    );
    assert!(rs[0].get("link").is_none());
}

#[test]
fn the_pid_demographics_reach_the_patient() {
    let rs = map(&fixture("adt_a40_v251.hl7"));
    let p = &rs[0];
    assert_eq!(p["resourceType"], "Patient");
    assert_eq!(p["gender"], "female");
    assert_eq!(p["birthDate"], "1980-02-29");
    assert_eq!(
        p["_birthDate"]["extension"][0]["valueDateTime"],
        "1980-02-29T12:30:00+00:00"
    );
    assert_eq!(p["name"][0]["use"], "official");
    assert_eq!(p["name"][1]["use"], "nickname");
    assert_eq!(
        p["telecom"],
        json!([
            {"system": "phone", "value": "+1 555 5560001", "use": "home", "rank": 1,
             "period": {"start": "2020-01-01"}},
            {"system": "email", "value": "juliet@example.org"},
            {"system": "phone", "value": "+1 555 5560002", "use": "work"}
        ])
    );
    assert_eq!(p["maritalStatus"]["coding"][0]["code"], "M");
    let urls: Vec<&str> = p["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "patient-mothersMaidenName",
            "patient-religion",
            "patient-birthPlace",
            "patient-citizenship"
        ]
    );
    assert_eq!(p["extension"][3]["extension"][0]["url"], "code");
    assert!(
        p["address"][0].get("district").is_none(),
        "PID-12 beside two addresses: the IG's target is ambiguous, not mapped"
    );
    assert_eq!(p["address"][1]["type"], "postal", "XAD-7 M");
    let second = &rs[2];
    assert_eq!(second["address"][0]["district"], "TESTCOUNTY", "XAD-9");
    assert_eq!(second["deceasedDateTime"], "2026-11-15T22:00:00+00:00");
    assert!(second.get("deceasedBoolean").is_none());
    assert_eq!(second["multipleBirthBoolean"], true);
    assert_eq!(p["multipleBirthInteger"], 2);
    assert!(
        p.get("multipleBirthBoolean").is_none(),
        "PID-25 wins over PID-24"
    );
    assert_eq!(p["deceasedBoolean"], false);
    assert_eq!(p["generalPractitioner"][0]["type"], "Organization");
    assert_eq!(p["generalPractitioner"][1]["type"], "Practitioner");
}

#[test]
fn an_orm_yields_one_service_request_per_order_group_supported_by_its_own_observations() {
    let rs = map(&fixture("orm_o01_two_orders.hl7"));
    let requests = of_type(&rs, "ServiceRequest");
    let observations = of_type(&rs, "Observation");
    assert_eq!((requests.len(), observations.len()), (2, 2));
    assert!(
        of_type(&rs, "DiagnosticReport").is_empty(),
        "an order is no report"
    );
    for (sr, obs) in requests.iter().zip(&observations) {
        assert_eq!(sr["intent"], "order");
        assert_eq!(sr["status"], "active");
        assert_eq!(sr["supportingInfo"], json!([{"reference": reference(obs)}]));
        assert_eq!(
            sr["subject"]["reference"],
            rs.iter()
                .find(|r| r["resourceType"] == "Patient")
                .map(|p| json!(reference(p)))
                .unwrap()
        );
        assert_eq!(sr["identifier"][0]["type"]["coding"][0]["code"], "PLAC");
    }
    let first = requests[0];
    assert_eq!(first["priority"], "stat", "TQ1-9");
    assert_eq!(
        first["occurrenceTiming"]["repeat"]["boundsPeriod"]["start"], "2026-11-16T10:00:00+00:00",
        "TQ1-7 (IG TQ1[ServiceRequest])"
    );
    assert!(
        first.get("occurrenceDateTime").is_none(),
        "occurrence[x] is one element"
    );
    assert_eq!(first["authoredOn"], "2026-11-16T09:00:00+00:00");
    assert_eq!(first["note"][0]["text"], "Patient fasting since midnight");
    assert_eq!(first["requisition"]["value"], "GRP60003");
    assert_eq!(requests[1]["priority"], "routine", "OBR-5 without TQ1");
    assert_eq!(
        requests[1]["occurrenceDateTime"],
        "2026-11-16T12:00:00+00:00"
    );
}

#[test]
fn an_oru_yields_one_report_per_obr_with_its_results_and_specimens() {
    let rs = map(&fixture("oru_r01_two_obr_spm.hl7"));
    let reports = of_type(&rs, "DiagnosticReport");
    let observations = of_type(&rs, "Observation");
    let specimens = of_type(&rs, "Specimen");
    assert_eq!(
        (reports.len(), observations.len(), specimens.len()),
        (2, 3, 2)
    );
    assert!(
        of_type(&rs, "ServiceRequest").is_empty(),
        "off by default for an ORU"
    );
    let refs = |rs: &[&Value]| -> Value {
        rs.iter()
            .map(|r| json!({"reference": reference(r)}))
            .collect()
    };
    assert_eq!(reports[0]["result"], refs(&observations[..2]));
    assert_eq!(reports[1]["result"], refs(&observations[2..]));
    assert_eq!(
        (reports[0]["status"].as_str(), reports[1]["status"].as_str()),
        (Some("final"), Some("preliminary"))
    );
    assert_eq!(
        reports[0]["effectivePeriod"]["end"],
        "2026-11-16T08:15:00+00:00"
    );
    assert_eq!(reports[0]["issued"], "2026-11-16T13:30:00+00:00");
    assert_eq!(reports[0]["basedOn"][0]["type"], "ServiceRequest");
    assert!(
        reports[0]["basedOn"][0].get("reference").is_none(),
        "no ServiceRequest emitted"
    );
    for (report, specimen) in reports.iter().zip(&specimens) {
        assert_eq!(
            report["specimen"][0]["reference"],
            json!(reference(specimen))
        );
    }
    assert_eq!(
        observations[0]["specimen"]["reference"],
        json!(reference(specimens[0]))
    );
    assert_eq!(
        observations[2]["specimen"]["reference"],
        json!(reference(specimens[1]))
    );
    let s = specimens[0];
    assert_eq!(s["type"]["coding"][0]["code"], "SER");
    assert_eq!(s["status"], "available");
    assert_eq!(s["collection"]["method"]["coding"][0]["code"], "VENIP");
    assert_eq!(
        s["collection"]["collectedDateTime"],
        "2026-11-16T08:00:00+00:00"
    );
    assert_eq!(s["receivedTime"], "2026-11-16T08:30:00+00:00");
}

#[test]
fn with_the_setting_on_an_orus_orders_become_service_requests_the_reports_are_based_on() {
    let tables = Tables::parse(
        &hl7bridge::transform::tables::DEFAULT.replace(
            "service_request_from_results = false",
            "service_request_from_results = true",
        ),
        "site.toml",
    )
    .unwrap();
    let mapper = Mapper {
        tables,
        ..Mapper::default()
    };
    let rs = map_with(&mapper, &fixture("oru_r01_two_obr_spm.hl7"));
    let requests = of_type(&rs, "ServiceRequest");
    assert_eq!(requests.len(), 2);
    for (report, request) in of_type(&rs, "DiagnosticReport").iter().zip(&requests) {
        assert_eq!(report["basedOn"][0]["reference"], json!(reference(request)));
        assert_eq!(
            report["basedOn"][0]["identifier"]["value"],
            request["identifier"][0]["value"]
        );
        assert!(
            request.get("supportingInfo").is_none(),
            "results are the report's, not the order's"
        );
    }
}

#[test]
fn without_spm_the_obr_specimen_source_gives_the_specimen_in_any_version() {
    let raw = b"MSH|^~\\&|LAB|GENHOSP|B|G|2026||ORU^R01|S23|P|2.3\r\
PID|||P1^^^H^MR\r\
OBR|1|PL1|FI1|X^Panel^L|||20261116060000|||||||20261116070000|BLD&Blood&HL70070^^^LA&Left arm&HL70163\r\
OBX|1|NM|Y^Num^L||5||||||F\r";
    let rs = map(raw);
    let specimens = of_type(&rs, "Specimen");
    assert_eq!(specimens.len(), 1);
    let s = specimens[0];
    assert_eq!(s["type"]["coding"][0]["code"], "BLD");
    assert_eq!(s["collection"]["bodySite"]["coding"][0]["code"], "LA");
    assert_eq!(s["accessionIdentifier"]["value"], "PL1");
    assert_eq!(s["receivedTime"], "2026-11-16T07:00:00+00:00");
    let report = of_type(&rs, "DiagnosticReport")[0];
    assert_eq!(report["specimen"][0]["reference"], json!(reference(s)));
    // From v2.5 on SPM carries the specimen; a sender that still fills only
    // OBR-15 gets the same Specimen (the IG's ORU_R01 map takes one from OBR).
    let v25 = String::from_utf8_lossy(raw).replace("|2.3\r", "|2.5\r");
    let rs25 = map(v25.as_bytes());
    let from_v25 = of_type(&rs25, "Specimen");
    assert_eq!(from_v25.len(), 1);
    assert_eq!(from_v25[0]["type"], s["type"]);
    // With SPM, OBR-15 gives no second Specimen.
    let with_spm = format!("{v25}SPM|1|SP1||BLD^Blood^HL70487\r");
    assert_eq!(of_type(&map(with_spm.as_bytes()), "Specimen").len(), 1);
}

#[test]
fn an_order_timing_and_its_events_follow_the_ig() {
    let raw = b"MSH|^~\\&|ORD|GENHOSP|B|G|2026||ORM^O01|T1|P|2.5.1\r\
PID|||P1^^^H^MR\r\
ORC|NW|PL1|||||||20261116090000|||||^PRN^PH^^1^555^7654321||REASON^Changed^L\r\
TQ1|1||Q6H&Every 6 hours&HL70335|0800~1400|30^min||||||||45^min|4\r\
OBR|1|PL1||X^Panel^L||20261116120000|||||||||||^WPN^PH^^1^555^1234567\r";
    let rs = map(raw);
    let sr = of_type(&rs, "ServiceRequest")[0];
    let timing = &sr["occurrenceTiming"];
    assert_eq!(timing["code"]["coding"][0]["code"], "Q6H", "TQ1-3 RPT-1");
    let repeat = &timing["repeat"];
    assert_eq!(
        repeat["timeOfDay"],
        json!(["08:00:00", "14:00:00"]),
        "TQ1-4"
    );
    assert_eq!(repeat["offset"], 30, "TQ1-5 in minutes");
    assert_eq!(repeat["duration"], 45, "TQ1-13");
    assert_eq!(repeat["durationUnit"], "min");
    assert_eq!(repeat["countMax"], 4, "TQ1-14");
    assert!(
        sr.get("occurrenceDateTime").is_none(),
        "TQ1 is the occurrence, not OBR-6"
    );
    let ext = |url: &str| -> Vec<&Value> {
        sr["extension"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["url"] == url)
            .collect()
    };
    let events = ext("http://hl7.org/fhir/StructureDefinition/businessEvent");
    assert_eq!(events[0]["extension"][0]["url"], "value");
    assert_eq!(
        events[0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "NW"
    );
    assert_eq!(events[1]["extension"][0]["url"], "date");
    assert_eq!(
        events[1]["extension"][0]["valueDateTime"],
        "2026-11-16T09:00:00+00:00"
    );
    let callback =
        ext("http://hl7.org/fhir/StructureDefinition/servicerequest-order-callback-phone-number");
    assert_eq!(callback.len(), 1, "OBR-17, which wins over ORC-14");
    assert_eq!(callback[0]["valueContactPoint"]["system"], "phone");
    assert_eq!(callback[0]["valueContactPoint"]["use"], "work");
    let reason = ext("http://hl7.org/fhir/StructureDefinition/request-statusReason");
    assert_eq!(
        reason[0]["valueCodeableConcept"]["coding"][0]["code"], "REASON",
        "ORC-16 without ORC-5"
    );
}

#[test]
fn a_report_carries_its_performers_functions_and_the_order_controls_reason() {
    let raw = b"MSH|^~\\&|LAB|GENHOSP|B|G|2026||ORU^R01|T2|P|2.5.1\r\
PID|||P1^^^H^MR\r\
ORC|RE|PL1|FI1|||||||||||||REASON^Changed^L\r\
OBR|1|PL1|FI1|X^Panel^L|||||||||||||||||||||F|||||||||55502&TECH&ONE|55503&TRANS&TWO\r\
OBX|1|NM|Y^Num^L||5||||||F\r";
    let rs = map(raw);
    let dr = of_type(&rs, "DiagnosticReport")[0];
    let functions: Vec<&Value> = dr["performer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["extension"][0]["valueCodeableConcept"]["coding"][0]["code"])
        .collect();
    assert_eq!(
        functions,
        [&json!("SPRF"), &json!("TRANS")],
        "OBR-34, OBR-35"
    );
    assert_eq!(
        dr["extension"][0]["url"],
        "http://hl7.org/fhir/StructureDefinition/event-statusReason"
    );
    assert_eq!(
        dr["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "REASON"
    );
}

#[test]
fn an_obr_without_a_service_identifier_gives_no_report_but_keeps_its_results() {
    let raw = b"MSH|^~\\&|LAB|GENHOSP|B|G|2026||ORU^R01|S1|P|2.5.1\rPID|||P1^^^H^MR\rOBR|1||F1\rOBX|1|NM|Y^Num^L||5||||||F\r";
    let rs = map(raw);
    assert!(of_type(&rs, "DiagnosticReport").is_empty());
    assert_eq!(of_type(&rs, "Observation").len(), 1);
}
