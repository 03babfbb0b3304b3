//! IG coverage: for every fixture, every row of the V2-to-FHIR IG segment
//! maps (`../shared/reference/v2-to-fhir/segments`) whose v2 field is valued
//! in the message, and whose condition holds, has its FHIR element present in
//! the mapped resource; or the row is on [`EXCEPTIONS`], with the reason it is
//! deliberately not mapped.
//!
//! Prints, per resource type, the rows whose field was valued, how many the
//! mapped resources carry, how many are exceptions, and the percentage of
//! the valued rows that are not exceptions which are mapped:
//! `cargo test --test ig_coverage -- --nocapture`.
//!
//! An element is found in any repetition of the resource (the IG's `[n]`
//! indices are positions in its own example, not in ours), so where two
//! fields fill the same element, a row is told apart by the value it
//! assigns (a participant's type code, an extension's URL) or by the type of
//! the resource a reference names.
//!
//! To cover another segment, add a line to [`SEGMENT_MAPS`]; its rows are
//! then checked the same way, and the ones the mapper leaves out on purpose
//! go on [`EXCEPTIONS`].

mod ig;

use std::collections::BTreeMap;

use hl7bridge::transform::{Mapped, Mapper};
use ig::{Message, Row};
use serde_json::Value;

/// (segment, IG segment map under `segments/`, resource type). The n-th
/// segment of that name in a message is the n-th resource of that type.
const SEGMENT_MAPS: &[(&str, &str, &str)] = &[
    ("PV1", "PV1[Encounter].csv", "Encounter"),
    ("PV2", "PV2[Encounter].csv", "Encounter"),
    ("OBX", "OBX[Observation].csv", "Observation"),
];

/// IG rows deliberately not mapped: (v2 field, the row's FHIR attribute as
/// the IG writes it, its assignment or "", why). A row here is never
/// counted as mapped or missing.
const EXCEPTIONS: &[(&str, &str, &str, &str)] = &[
    // ---- needs a resource the bridge does not emit ----
    ("PV1-40", "location[1].location(Location.operationalStatus)", "",
     "bed status is an element of the Location resource; the bridge emits Location only as a logical reference"),
    ("OBX-24", "performer[2](Organization.address)", "",
     "an address is an element of the Organization resource; a logical reference cannot carry it"),
    ("OBX-24", "performer[2](PractitionerRole[1].organization(Organization.address))", "",
     "an address is an element of the Organization resource; a logical reference cannot carry it"),
    ("OBX-16", "performer[1](PractitionerRole.code.coding.code)", "responsibleObserver",
     "the role code belongs to a PractitionerRole resource; OBX-16 is a logical reference to the Practitioner"),
    ("OBX-16", "performer[1](PractitionerRole.code.coding.system)", "http://terminology.hl7.org/CodeSystem/practitioner-role",
     "the role code belongs to a PractitionerRole resource; OBX-16 is a logical reference to the Practitioner"),
    ("OBX-25", "performer[2](PractitionerRole[1].code.coding.code)", "MDIR",
     "the role code belongs to a PractitionerRole resource; OBX-25 is a logical reference to the Practitioner"),
    ("OBX-25", "performer[2](PractitionerRole[1].code.coding.system)", "http://terminology.hl7.org/CodeSystem/v2-0912",
     "the role code belongs to a PractitionerRole resource; OBX-25 is a logical reference to the Practitioner"),
    ("OBX-15", "performer[2](PractitionerRole)", "",
     "the IG row names no element; OBX-15 is mapped by its other row, a logical Organization reference"),
    // ---- an extension the IG only proposes (no URL, not defined in R4) ----
    ("PV2-1", "location[5].extension?-temporaryLocation", "false",
     "proposed extension without a URL"),
    ("PV2-7", "extension?-visitUserCode", "", "proposed extension without a URL"),
    ("PV2-10", "extension?-estimatedLength", "", "proposed extension without a URL"),
    ("PV2-21", "extension?-publicityCode", "", "proposed extension without a URL"),
    ("PV2-40", "extension?-admissionLevelOfCare", "", "proposed extension without a URL"),
    ("OBX-4", "$this", "",
     "the IG leaves OBX-4 to local guidance (partOf, hasMember, derivedFrom) or to the v2.9 OG sub-identifier extension, which a v2.5 ST sub-ID does not fill"),
    // ---- the IG's own rule gives way to a documented choice ----
    ("PV1-3", "location[1].status", "active",
     "a finished encounter's location is \"completed\" (the patient has left it), as documented in the README"),
    // ---- conditions decided by a rule the IG writes as narrative ----
    ("OBX-5", "valueString", "OBX-5.1+\" \"+OBX-5.2+\" \"+OBX-5.3+\" \"+OBX-5.4\" \"OBX-6\"",
     "the SN fallback applies only when the SN rows above it fail (said in the narrative column); checked by the unit tests of structured_numeric"),
];

/// Where the bridge writes an element the IG names differently, each with
/// its reason: (v2 field, IG attribute text, element the bridge fills).
const EQUIVALENTS: &[(&str, &str, &str)] = &[
    // No EpisodeOfCare resource to carry resource-instance-description: the
    // description is the logical reference's display.
    (
        "PV1-53",
        "episodeOfCare(EpisodeOfCare[1].extension.url)",
        "episodeOfCare.display",
    ),
    (
        "PV1-53",
        "episodeOfCare(EpisodeOfCare[1].extension.valueString)",
        "episodeOfCare.display",
    ),
];

/// IG text corrected before checking: (IG text, what R4 and the bridge use, why).
const CORRECTIONS: &[(&str, &str, &str)] = &[
    (
        "https://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment",
        "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value",
        "the R5 cross-version extension for Observation.value[x] is named for the element, over http",
    ),
    (
        "http://hl7.org/fhir/v\\5.0/StructureDefinition/extension-Encounter.plannedEndDate",
        "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate",
        "stray `v\\` in the IG's URL",
    ),
];

#[derive(Default)]
struct Tally {
    valued: usize,
    mapped: usize,
    excepted: usize,
    missing: Vec<String>,
}

#[test]
fn every_valued_field_an_ig_row_maps_is_in_the_resource_or_an_exception() {
    let mapper = Mapper::default();
    let maps: Vec<(&str, Vec<Row>, &str)> = SEGMENT_MAPS
        .iter()
        .map(|&(seg, file, rt)| (seg, ig::segment_map(file), rt))
        .collect();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut messages = 0;
    for (name, raw) in ig::fixture_messages() {
        let Ok(Mapped::Resources(resources)) = mapper.map(&raw) else {
            continue;
        };
        messages += 1;
        let msg = Message::parse(&raw);
        for (seg, rows, rt) in &maps {
            let of_type: Vec<&Value> = resources
                .iter()
                .filter(|r| r["resourceType"] == *rt)
                .collect();
            for (n, segment) in msg.segments(seg).enumerate() {
                let Some(resource) = of_type.get(n) else {
                    continue;
                };
                let tally = tallies.entry(rt).or_default();
                for row in rows {
                    if !segment.valued(&row.field)
                        || segment.condition(&row.condition) != Some(true)
                    {
                        continue;
                    }
                    tally.valued += 1;
                    if is_exception(row) {
                        tally.excepted += 1;
                    } else if present(row, rows, resource) {
                        tally.mapped += 1;
                    } else {
                        tally.missing.push(format!(
                            "{name}: {seg} {}: {} {} ({})",
                            n + 1,
                            row.field,
                            row.attribute,
                            row.assignment
                        ));
                    }
                }
            }
        }
    }
    assert!(messages >= 20, "only {messages} fixture messages mapped");
    println!("IG coverage over {messages} fixture messages (rows whose v2 field is valued):");
    println!(
        "{:<12} {:>7} {:>7} {:>9} {:>9}",
        "resource", "valued", "mapped", "excepted", "coverage"
    );
    for (rt, t) in &tallies {
        println!(
            "{rt:<12} {:>7} {:>7} {:>9} {:>8.1}%",
            t.valued,
            t.mapped,
            t.excepted,
            100.0 * t.mapped as f64 / (t.valued - t.excepted).max(1) as f64
        );
    }
    let missing: Vec<&String> = tallies.values().flat_map(|t| &t.missing).collect();
    assert!(
        missing.is_empty(),
        "{} valued rows are neither mapped nor exceptions:\n{}",
        missing.len(),
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_exception_names_a_row_of_the_ig() {
    let rows: Vec<Row> = SEGMENT_MAPS
        .iter()
        .flat_map(|&(_, file, _)| ig::segment_map(file))
        .collect();
    for &(field, attribute, assignment, reason) in EXCEPTIONS {
        assert!(!reason.is_empty());
        assert!(
            rows.iter().any(|r| r.field == field
                && r.attribute == attribute
                && r.assignment == assignment),
            "{field} {attribute} {assignment}: no such IG row (stale exception?)"
        );
    }
    for &(field, attribute, _) in EQUIVALENTS {
        assert!(
            rows.iter()
                .any(|r| r.field == field && r.attribute == attribute),
            "{field} {attribute}: no such IG row"
        );
    }
}

fn is_exception(row: &Row) -> bool {
    EXCEPTIONS
        .iter()
        .any(|&(f, a, v, _)| row.field == f && row.attribute == a && row.assignment == v)
}

fn corrected(text: &str) -> &str {
    CORRECTIONS
        .iter()
        .find(|(ig, _, _)| *ig == text)
        .map_or(text, |(_, ours, _)| ours)
}

/// Whether the row's element is in `resource`.
fn present(row: &Row, rows: &[Row], resource: &Value) -> bool {
    let equivalent = EQUIVALENTS
        .iter()
        .find(|&&(f, a, _)| f == row.field && a == row.attribute);
    let target = ig::Target::parse(equivalent.map_or(row.attribute.as_str(), |(_, _, ours)| ours));
    // The equivalent element holds the value, not what the IG assigns to its own.
    let assigned = if equivalent.is_some() {
        ""
    } else if target.is_extension_url() {
        corrected(row.url_assignment())
    } else {
        corrected(&row.assignment)
    };
    // An extension's value: the extension with the URL its sibling row assigns.
    let url = target.extension_prefix().and_then(|prefix| {
        rows.iter()
            .filter(|r| r.field == row.field)
            .find_map(|r| {
                let t = ig::Target::parse(&r.attribute);
                (t.is_extension_url() && t.extension_prefix() == Some(prefix.clone()))
                    .then(|| corrected(r.url_assignment()).to_owned())
            })
            .filter(|u| !u.is_empty())
    });
    ig::resolve(resource, &target, url.as_deref(), assigned)
}
