//! IG coverage: every row of the V2-to-FHIR IG segment maps
//! (`shared/reference/v2-to-fhir/segments`) whose v2 field is valued in a
//! message, and whose condition holds, has its FHIR element present in the
//! resource that segment became; or the row is on [`EXCEPTIONS`], with the
//! reason it is deliberately not mapped.
//!
//! Measured twice: on every fixture, and on a few hundred messages built by
//! a generator driven by the IG tables alone (`ig/generate.rs`), which the
//! project does not have as fixtures: the independent check.
//!
//! Prints, per resource type, the rows whose field was valued, how many the
//! mapped resources carry, how many are exceptions, and the percentage of
//! the valued rows that are not exceptions which are mapped, then every
//! exception that occurred with its reason:
//! `cargo test --features fuzzing --test ig_coverage -- --nocapture`.
//!
//! Which resource a segment became is decided by its group and numbers
//! (`ig/groups.rs`), not its position, so merges and order groups are
//! handled. An element is found in any repetition of the resource (the
//! IG's `[n]` indices are positions in its own example, not in ours), so
//! where two fields fill the same element, a row is told apart by the value
//! it assigns (a participant's type code, an extension's URL) or by the
//! type of the resource a reference names.
//!
//! To cover another segment, add a line to [`SEGMENT_MAPS`] (and, when it
//! is a new group, to `ig/groups.rs`); its rows are then checked the same
//! way, and the ones the mapper leaves out on purpose go on [`EXCEPTIONS`].

mod ig;

use std::collections::BTreeMap;

use hl7bridge::transform::{Mapped, Mapper};
use ig::groups::Unit;
use ig::message::Message;
use ig::target::{resolve, Target};
use ig::Row;
use serde_json::Value;

/// (segment, resource type, IG segment map under `segments/`).
const SEGMENT_MAPS: &[(&str, &str, &str)] = &[
    ("PV1", "Encounter", "PV1[Encounter].csv"),
    ("PV2", "Encounter", "PV2[Encounter].csv"),
    ("OBX", "Observation", "OBX[Observation].csv"),
    ("PID", "Patient", "PID[Patient].csv"),
    ("PD1", "Patient", "PD1[Patient].csv"),
    ("PV1", "Patient", "PV1[Patient].csv"),
    ("OBR", "DiagnosticReport", "OBR[DiagnosticReport].csv"),
    ("ORC", "DiagnosticReport", "ORC[DiagnosticReport].csv"),
    ("ORC", "ServiceRequest", "ORC[ServiceRequest].csv"),
    ("OBR", "ServiceRequest", "OBR[ServiceRequest].csv"),
    ("TQ1", "ServiceRequest", "TQ1[ServiceRequest].csv"),
    ("NTE", "ServiceRequest", "NTE[ServiceRequest].csv"),
    ("SPM", "Specimen", "SPM[Specimen].csv"),
    ("OBR", "Specimen", "OBR[Specimen].csv"),
];

/// `$this` rows whose data-type map names elements of the resource itself:
/// (field, data-type map under `datatypes/`). Each of its component rows
/// becomes a row of the segment (`SPS.1` of OBR-15 is `OBR-15.1`).
const EXPANDED: &[(&str, &str)] = &[("OBR-15", "SPS[Specimen-Source].csv")];

/// IG rows deliberately not mapped: (v2 field, the row's FHIR attribute as
/// the IG writes it, its assignment or "", why). A row here is never
/// counted as mapped or missing. Besides these, every row whose attribute
/// is an extension the IG only proposes (`extension??-…`, `extension?-…`:
/// no URL, not defined in R4) is an exception of its own kind.
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
    ("PID-21", "$this", "",
     "the mother's identifier makes a RelatedPerson resource (CX[RelatedPerson-Mother]), which the bridge does not emit"),
    ("ORC-21", "requester(PractitionerRole.organization(Organization))", "",
     "requester is 0..1 and holds ORC-12's practitioner; the ordering facility needs the PractitionerRole resource the bridge does not emit"),
    ("ORC-22", "requester(PractitionerRole.organization(Organization.address))", "",
     "an address is an element of the Organization resource, behind a PractitionerRole the bridge does not emit"),
    ("ORC-23", "requester(PractitionerRole.organization(Organization.telecom))", "",
     "a telecom is an element of the Organization resource, behind a PractitionerRole the bridge does not emit"),
    ("ORC-24", "requester(PractitionerRole.practitioner(Practitioner.address))", "",
     "an address is an element of the Practitioner resource; the bridge emits practitioners only as logical references"),
    ("ORC-2", "basedOn(ServiceRequest)", "",
     "in an ORU the ServiceRequest is emitted only when `service_request_from_results` is set; by default the report is based on the order by identifier, which this row checks when a ServiceRequest is emitted"),
    // ---- the IG leaves the target to local guidance ----
    ("PID-10", "local implementation", "",
     "race goes to a jurisdiction's extension (US Core race); the bridge is not profiled for a jurisdiction"),
    ("PID-22", "local implementation", "",
     "ethnic group goes to a jurisdiction's extension (US Core ethnicity); the bridge is not profiled for a jurisdiction"),
    ("PID-19", "identifier[4].type.coding.code", "SB",
     "SB is for jurisdictions outside the US (the IG's narrative); the bridge types PID-19 as the US SSN (SS)"),
    ("OBX-4", "$this", "",
     "the IG leaves OBX-4 to local guidance (partOf, hasMember, derivedFrom) or to the v2.9 OG sub-identifier extension, which a v2.5 ST sub-ID does not fill"),
    ("ORC-7", "$this", "",
     "TQ is withdrawn from v2 since 2.5 in favour of TQ1, which the bridge maps (TQ1[ServiceRequest])"),
    ("OBR-27", "$this", "",
     "TQ is withdrawn from v2 since 2.5 in favour of TQ1, which the bridge maps (TQ1[ServiceRequest])"),
    // ---- conditions the message cannot decide ----
    ("OBR-13", "extension[1].url", "http://hl7.org/fhir/5.0/StructureDefinition/extension-ServiceRequest.supportingInfo",
     "only when OBR-13 does not state fasting status (the IG's narrative); a free-text or local code cannot be told apart"),
    ("OBR-13", "extension[1].valueCodeableReference.concept", "",
     "only when OBR-13 does not state fasting status (the IG's narrative); a free-text or local code cannot be told apart"),
    ("OBR-13", "collection.fastingStatusCodeableConcept", "",
     "only when OBR-13 states fasting status (the IG's narrative), which a free-text or local code does not say"),
    ("OBR-13", "collection.fastingStatusDuration", "",
     "only when OBR-13 states a fasting duration (the IG's narrative), which a free-text or local code does not say"),
    ("OBR-11", "intent", "#add-on#",
     "`#add-on#` is a placeholder, not a code of R4's RequestIntent; an add-on order keeps `order`"),
    ("TQ1-6", "occurrenceTiming.boundsPeriod.end", "occurrenceTiming.boundPeriod.start + TQ1-6",
     "the end the IG computes from TQ1-7 plus TQ1-6 needs calendar arithmetic on a v2 timestamp of any precision; the bridge gives the start (TQ1-7) and no computed end"),
    ("TQ1-6", "occurrenceTiming.boundsPeriod.start", "occurrenceTiming.boundPeriod.end - TQ1-6",
     "the start the IG computes from TQ1-8 minus TQ1-6 needs calendar arithmetic on a v2 timestamp of any precision; the bridge gives the end (TQ1-8) and no computed start"),
    // ---- not mapped yet (gaps, to shrink on purpose) ----
    ("ORC-28", "meta.security", "",
     "not mapped yet: the resources of a message share one Meta; an order's confidentiality needs a Meta per resource"),
    ("NTE-5", "note.authorReference(Practitioner)", "",
     "not mapped yet: the ServiceRequest schema's Annotation has text only"),
    ("NTE-6", "note.time", "",
     "not mapped yet: the ServiceRequest schema's Annotation has text only"),
    // ---- the IG's own rule gives way to a documented choice ----
    ("PV1-3", "location[1].status", "active",
     "a finished encounter's location is \"completed\" (the patient has left it), as documented in the README"),
    // ---- conditions decided by a rule the IG writes as narrative ----
    ("OBX-5", "valueString", "OBX-5.1+\" \"+OBX-5.2+\" \"+OBX-5.3+\" \"+OBX-5.4\" \"OBX-6\"",
     "the SN fallback applies only when the SN rows above it fail (said in the narrative column); checked by the unit tests of structured_numeric"),
];

/// The IG's prose conditions (the "Narrative" column) as the message can
/// decide them: (v2 field, the narrative's opening, the condition in the
/// IG's computable form, or "" when the narrative does not restrict the
/// row). A narrative not listed here, or on [`EXCEPTIONS`], fails the test.
const NARRATIVES: &[(&str, &str, &str)] = &[
    (
        "OBR-2",
        "If ORC-2 of the same ORC/OBR pair is not valued",
        "IF ORC-2 NOT VALUED",
    ),
    (
        "OBR-3",
        "If ORC-3 of the same ORC/OBR pair is not valued",
        "IF ORC-3 NOT VALUED",
    ),
    // ORC-4 is EI up to v2.6 and EIP from v2.7.
    (
        "ORC-4",
        "If ORC-4 data type \"EI\" is used",
        "IF MSH-12 NOT IN (\"2.7\", \"2.7.1\", \"2.8\", \"2.8.1\", \"2.8.2\", \"2.9\", \"2.9.1\")",
    ),
    (
        "ORC-4",
        "If ORC-4 data type \"EIP\" is used",
        "IF MSH-12 IN (\"2.7\", \"2.7.1\", \"2.8\", \"2.8.1\", \"2.8.2\", \"2.9\", \"2.9.1\")",
    ),
    // Only OBR-29's proposed-extension row is conditioned on OBR-50 alone; the
    // other OBR-29 narratives leave the choice between placer and filler to
    // the implementation: the bridge keeps both.
    ("OBR-29", "If OBR-29.2 is also valued", ""),
    ("OBR-29", "If OBR-29.1 is also valued", ""),
    ("OBR-29", "If OBR-50 is valued", ""),
    ("PV1-16", "If person level VIP", ""),
    ("PID-19", "If in the US", ""),
    (
        "OBR-2",
        "If the placer number is also the accession identifier",
        "",
    ),
    ("OBX-5", "Any markup in ST, FT or TX data", ""),
];

/// Conditions the IG implies without writing them, where two of its rows
/// fill one element: (v2 field, attribute, assignment, condition, why).
const IMPLIED: &[(&str, &str, &str, &str, &str)] = &[
    ("OBR", "intent", "order", "IF OBR-11 NOT EQUALS \"G\"",
     "OBR-11 G makes the order a reflex order (the IG's own OBR-11 row)"),
    ("ORC-1", "intent", "order", "IF OBR-11 NOT EQUALS \"G\"",
     "OBR-11 G makes the order a reflex order (the IG's own OBR-11 row)"),
    ("OBR-6", "occurrenceDateTime", "",
     "IF TQ1-3 NOT VALUED AND TQ1-4 NOT VALUED AND TQ1-5 NOT VALUED AND TQ1-6 NOT VALUED AND TQ1-7 NOT VALUED AND TQ1-8 NOT VALUED AND TQ1-13 NOT VALUED AND TQ1-14 NOT VALUED",
     "occurrence[x] is one element: a TQ1 timing, when sent, is the occurrence (TQ1[ServiceRequest])"),
    ("OBR-22", "issued", "", "IF OBR-22 LENGTH GREATER THAN 8",
     "issued is a FHIR instant, which needs a time: a date-only OBR-22 cannot be one"),
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
    // NDL[PractitionerRole] makes a PractitionerRole resource; the bridge
    // emits none, so the NDL's person is a logical Practitioner reference.
    (
        "OBR-32",
        "resultsInterpreter(PractitionerRole)",
        "resultsInterpreter(Practitioner)",
    ),
    (
        "OBR-34",
        "performer[1](PractitionerRole)",
        "performer(Practitioner)",
    ),
    (
        "OBR-35",
        "performer[2](PractitionerRole)",
        "performer(Practitioner)",
    ),
    // The IG gives the requester's callback extension no URL: the bridge
    // puts OBR-17 in the R4 extension the IG names for ORC-14, on the
    // ServiceRequest.
    ("OBR-17", "requester.extension[1].url", "extension.url"),
    (
        "OBR-17",
        "requester.extension[1].valueContactPoint",
        "extension.valueContactPoint",
    ),
    // The IG's typos in element names: Timing's duration and bounds are
    // elements of Timing.repeat.
    (
        "TQ1-13",
        "occurrenceTiming.duration",
        "occurrenceTiming.repeat.duration",
    ),
    (
        "TQ1-13",
        "occurrenceTiming.durationUnit",
        "occurrenceTiming.repeat.durationUnit",
    ),
    (
        "TQ1-6",
        "occurrenceTiming.boundsDuration",
        "occurrenceTiming.repeat.boundsDuration",
    ),
    (
        "TQ1-5",
        "occurrenceTIming.repeat.offset",
        "occurrenceTiming.repeat.offset",
    ),
    (
        "ORC-9",
        "extension[2].extension[1].valuedateTime",
        "extension[2].extension[1].valueDateTime",
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
    (
        "http://hl7.org/fhir/sid/us-ssn.",
        "http://hl7.org/fhir/sid/us-ssn",
        "stray full stop after the SSN system",
    ),
    (
        "http://terminology.hl7.org/ValueSet/v2-0119",
        "http://terminology.hl7.org/CodeSystem/v2-0119",
        "a coding's system is the code system, not the value set",
    ),
];

/// One segment map, read.
struct SegmentMap {
    segment: &'static str,
    resource_type: &'static str,
    rows: Vec<Row>,
}

fn segment_maps() -> Vec<SegmentMap> {
    SEGMENT_MAPS
        .iter()
        .map(|&(segment, resource_type, file)| {
            let rows = ig::segment_map(file).into_iter().flat_map(expand).collect();
            SegmentMap {
                segment,
                resource_type,
                rows,
            }
        })
        .collect()
}

/// A `$this` row of [`EXPANDED`] as its data type's component rows.
fn expand(row: Row) -> Vec<Row> {
    match EXPANDED.iter().find(|(f, _)| *f == row.field) {
        Some((field, file)) if row.attribute == "$this" => ig::table(&format!("datatypes/{file}"))
            .into_iter()
            .map(|c| Row {
                field: format!("{field}.{}", c.field.split_once('.').unwrap().1),
                ..c
            })
            .collect(),
        _ => vec![row],
    }
}

#[derive(Default)]
pub struct Tally {
    valued: usize,
    mapped: usize,
    excepted: usize,
    /// Rows of a segment whose resource the bridge did not emit.
    no_resource: usize,
    missing: Vec<String>,
}

/// The coverage of a set of messages, per resource type, and the
/// exceptions that occurred (row, reason) with how often.
#[derive(Default)]
pub struct Coverage {
    messages: usize,
    tallies: BTreeMap<&'static str, Tally>,
    exceptions: BTreeMap<(String, String), usize>,
}

impl Coverage {
    /// Measures one message's resources against the maps.
    fn add(
        &mut self,
        maps: &[SegmentMap],
        name: &str,
        raw: &[u8],
        resources: &[Value],
        skipped_obx: &[usize],
    ) {
        self.messages += 1;
        let msg = Message::parse(raw);
        for unit in ig::groups::units(&msg, resources, skipped_obx) {
            for map in maps
                .iter()
                .filter(|m| m.segment == unit.segment && m.resource_type == unit.resource_type)
            {
                self.add_unit(map, &unit, name);
            }
        }
    }

    fn add_unit(&mut self, map: &SegmentMap, unit: &Unit<'_, '_>, name: &str) {
        let tally = self.tallies.entry(map.resource_type).or_default();
        for row in &map.rows {
            if !unit.scope.valued(&row.field) {
                continue;
            }
            let condition = unit.scope.condition(&row.condition).unwrap_or_else(|e| {
                panic!(
                    "{} {}: cannot evaluate the IG condition {e:?}",
                    row.field, row.attribute
                )
            });
            let narrative = match narrative(row) {
                Narrative::Condition(c) => unit.scope.condition(c).unwrap_or_else(|e| {
                    panic!(
                        "{}: cannot evaluate the narrative's condition {e:?}",
                        row.field
                    )
                }),
                Narrative::None => true,
            };
            let implied = IMPLIED
                .iter()
                .filter(|i| i.0 == row.field && i.1 == row.attribute && i.2 == row.assignment)
                .all(|i| {
                    unit.scope.condition(i.3).unwrap_or_else(|e| {
                        panic!("{}: cannot evaluate the implied condition {e:?}", row.field)
                    })
                });
            if !(condition && narrative && implied) {
                continue;
            }
            tally.valued += 1;
            if let Some(reason) = exception(row) {
                tally.excepted += 1;
                *self
                    .exceptions
                    .entry((
                        format!("{} {} {}", row.field, row.attribute, row.assignment),
                        reason.to_owned(),
                    ))
                    .or_default() += 1;
                continue;
            }
            let Some(resource) = unit.resource else {
                tally.no_resource += 1;
                tally.missing.push(format!(
                    "{name}: {}: {} {}: no {} for the segment",
                    unit.label, row.field, row.attribute, map.resource_type
                ));
                continue;
            };
            if present(row, &map.rows, resource) {
                tally.mapped += 1;
            } else if let Some(code) = unmapped_code(row, &unit.scope) {
                tally.excepted += 1;
                *self
                    .exceptions
                    .entry((
                        format!("{} {} ({code})", row.field, row.attribute),
                        format!(
                            "the IG's {} map gives this v2 code no FHIR code",
                            row.vocabulary
                        ),
                    ))
                    .or_default() += 1;
            } else {
                tally.missing.push(format!(
                    "{name}: {}: {} {} ({})",
                    unit.label, row.field, row.attribute, row.assignment
                ));
            }
        }
    }

    fn print(&self, title: &str) {
        println!(
            "{title} ({} messages; rows whose v2 field is valued and whose condition holds):",
            self.messages
        );
        println!(
            "{:<17} {:>7} {:>7} {:>9} {:>8} {:>9}",
            "resource", "valued", "mapped", "excepted", "missing", "coverage"
        );
        for (rt, t) in &self.tallies {
            println!(
                "{rt:<17} {:>7} {:>7} {:>9} {:>8} {:>8.1}%",
                t.valued,
                t.mapped,
                t.excepted,
                t.missing.len(),
                self.percent(rt)
            );
        }
        println!("exceptions that occurred (row: times: reason):");
        for ((row, reason), n) in &self.exceptions {
            println!("  {row}: {n}: {reason}");
        }
    }

    /// The rows found missing, with how often: what to map next.
    fn print_missing_rows(&self) {
        let mut rows: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.missing() {
            // "<message>: <SEG n>: <row>": the row is what repeats.
            let row = m.splitn(3, ": ").nth(2).unwrap_or(m);
            *rows.entry(row).or_default() += 1;
        }
        if !rows.is_empty() {
            println!("rows not mapped (row: times):");
        }
        for (row, n) in rows {
            println!("  {row}: {n}");
        }
    }

    /// Mapped rows among the valued rows that are not exceptions.
    fn percent(&self, rt: &str) -> f64 {
        let t = &self.tallies[rt];
        100.0 * t.mapped as f64 / (t.valued - t.excepted).max(1) as f64
    }

    fn missing(&self) -> Vec<&String> {
        self.tallies.values().flat_map(|t| &t.missing).collect()
    }
}

/// The resources of a mapped message and the OBX it skipped (1-based), or
/// `None` for a message without FHIR content or one that cannot be mapped.
fn map(mapper: &Mapper, raw: &[u8]) -> Option<(Vec<Value>, Vec<usize>)> {
    match mapper.map(raw) {
        Ok(Mapped::Resources(r)) => Some((r, Vec::new())),
        Ok(Mapped::Partial { resources, skipped }) => Some((
            resources,
            skipped
                .iter()
                .filter(|s| s.segment == "OBX")
                .map(|s| s.index)
                .collect(),
        )),
        _ => None,
    }
}

#[test]
fn every_valued_field_an_ig_row_maps_is_in_the_resource_or_an_exception() {
    let mapper = Mapper::default();
    let maps = segment_maps();
    let mut coverage = Coverage::default();
    for (name, raw) in ig::fixture_messages() {
        if let Some((resources, skipped)) = map(&mapper, &raw) {
            coverage.add(&maps, &name, &raw, &resources, &skipped);
        }
    }
    assert!(
        coverage.messages >= 20,
        "only {} fixture messages mapped",
        coverage.messages
    );
    coverage.print("IG coverage over the fixtures");
    for rt in [
        "Encounter",
        "Observation",
        "Patient",
        "DiagnosticReport",
        "ServiceRequest",
        "Specimen",
    ] {
        assert!(
            coverage.tallies.get(rt).is_some_and(|t| t.valued > 0),
            "no {rt} row was measured on the fixtures"
        );
    }
    let missing = coverage.missing();
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

/// Generated messages: how many of each shape, and the seed.
const GENERATED_PER_KIND: usize = 60;
const SEED: u64 = 17;

#[test]
fn generated_messages_are_covered_and_valid_fhir_r4() {
    let mapper = Mapper::default();
    let maps = segment_maps();
    let rows: Vec<(&str, &[Row])> = maps
        .iter()
        .map(|m| (m.segment, m.rows.as_slice()))
        .collect();
    let mut generator = ig::generate::Generator::new(SEED, &rows);
    let validator = fhir_r4_validator();
    let mut coverage = Coverage::default();
    let mut resources_checked = 0;
    for &kind in ig::generate::KINDS {
        for _ in 0..GENERATED_PER_KIND {
            let raw = generator.message(kind);
            let name = format!("generated {kind:?}");
            let Some((resources, skipped)) = map(&mapper, &raw) else {
                panic!(
                    "{name}: not mapped: {:?}\n{}",
                    mapper.map(&raw),
                    String::from_utf8_lossy(&raw).replace('\r', "\n")
                );
            };
            for r in &resources {
                let errors: Vec<String> = validator
                    .iter_errors(r)
                    .map(|e| format!("{e} at {}", e.instance_path()))
                    .take(5)
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{name}: {} is not valid FHIR R4: {errors:#?}\n{}",
                    r["resourceType"],
                    String::from_utf8_lossy(&raw).replace('\r', "\n")
                );
                resources_checked += 1;
            }
            coverage.add(&maps, &name, &raw, &resources, &skipped);
        }
    }
    coverage.print("IG coverage over generated messages");
    println!("{resources_checked} resources valid against the FHIR R4 JSON Schema");
    coverage.print_missing_rows();
    for (rt, floor) in GENERATED_FLOORS {
        let got = coverage.percent(rt);
        assert!(got >= *floor, "{rt}: {got:.1}% of the valued rows of generated messages mapped, below the floor of {floor}%");
    }
}

/// The coverage the generated messages reach, per resource type, as a
/// floor a little under what was measured (seed 17: Encounter 100.0%,
/// Observation 99.2%, Patient 99.9%, DiagnosticReport 100.0%,
/// ServiceRequest 95.8%, Specimen 100.0%), so a change that drops mapped
/// rows fails here. Microsoft's FHIR-Converter reaches 94-95% on Encounter
/// and Observation (issue 17).
const GENERATED_FLOORS: &[(&str, f64)] = &[
    ("Encounter", 99.5),
    ("Observation", 99.0),
    ("Patient", 99.5),
    ("DiagnosticReport", 99.5),
    ("ServiceRequest", 95.5),
    ("Specimen", 99.5),
];

/// The official FHIR R4 JSON Schema (MIT notice in tests/fhir/).
fn fhir_r4_validator() -> jsonschema::Validator {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir/fhir.r4.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft6::new(&schema).expect("the FHIR schema compiles")
}

#[test]
fn every_exception_names_a_row_of_the_ig() {
    let maps = segment_maps();
    let rows: Vec<&Row> = maps.iter().flat_map(|m| &m.rows).collect();
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
    for &(field, attribute, assignment, _, reason) in IMPLIED {
        assert!(!reason.is_empty());
        assert!(
            rows.iter().any(|r| r.field == field
                && r.attribute == attribute
                && r.assignment == assignment),
            "{field} {attribute} {assignment}: no such IG row"
        );
    }
    for &(field, opening, _) in NARRATIVES {
        assert!(
            rows.iter()
                .any(|r| r.field == field && r.narrative.starts_with(opening)),
            "{field} {opening:?}: no such narrative in the IG"
        );
    }
    // Every narrative is decided: by NARRATIVES, or the row is an exception.
    for r in rows.iter().filter(|r| !r.narrative.is_empty()) {
        assert!(
            exception(r).is_some()
                || NARRATIVES
                    .iter()
                    .any(|(f, o, _)| *f == r.field && r.narrative.starts_with(o)),
            "{} {}: the narrative {:?} is neither decided nor an exception",
            r.field,
            r.attribute,
            r.narrative
        );
    }
}

enum Narrative {
    None,
    Condition(&'static str),
}

fn narrative(row: &Row) -> Narrative {
    if row.narrative.is_empty() {
        return Narrative::None;
    }
    match NARRATIVES
        .iter()
        .find(|(f, opening, _)| *f == row.field && row.narrative.starts_with(opening))
    {
        Some((_, _, c)) if !c.is_empty() => Narrative::Condition(c),
        _ => Narrative::None,
    }
}

/// Why a row is not mapped, when it is deliberately not.
fn exception(row: &Row) -> Option<&'static str> {
    if row.attribute.contains("extension??") || row.attribute.contains("extension?-") {
        return Some("an extension the IG only proposes: no URL, not defined in R4");
    }
    EXCEPTIONS
        .iter()
        .find(|&&(f, a, v, _)| row.field == f && row.attribute == a && row.assignment == v)
        .map(|e| e.3)
}

/// The v2 code of a row's field, when the concept map the row names lists
/// it without a FHIR code: the row then has nothing to map.
fn unmapped_code(row: &Row, scope: &ig::message::Scope<'_>) -> Option<String> {
    if row.vocabulary.is_empty() {
        return None;
    }
    let code = scope.first(&format!("{}.1", row.field.split('.').next().unwrap_or("")));
    ig::concept_map(&row.vocabulary)
        .iter()
        .any(|c| c.v2.eq_ignore_ascii_case(&code) && c.fhir.is_empty())
        .then_some(code)
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
    let target = Target::parse(equivalent.map_or(row.attribute.as_str(), |(_, _, ours)| ours));
    let assigned = if equivalent.is_some() {
        // The equivalent element holds the value, not what the IG assigns to its own.
        ""
    } else if target.is_extension_url() {
        corrected(row.url_assignment())
    } else {
        corrected(&row.assignment)
    };
    // Each extension step's URL: the one its sibling `….url` row assigns.
    let urls: Vec<Option<String>> = target
        .extension_prefixes()
        .into_iter()
        .map(|prefix| {
            rows.iter()
                .filter(|r| r.field == row.field)
                .find_map(|r| {
                    let t = Target::parse(&r.attribute);
                    (t.is_extension_url() && t.plain_path() == format!("{prefix}.url"))
                        .then(|| corrected(r.url_assignment()).to_owned())
                })
                .filter(|u| !u.is_empty())
        })
        .collect();
    resolve(resource, &target, &urls, assigned)
}
