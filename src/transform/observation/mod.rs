//! OBX to Observation (IG segments/OBX[Observation].csv), one per OBX, in
//! ORU^R01, ORM^O01 and any ADT that carries OBX. A repeating OBX-5 becomes
//! components (IG OBX[Observation-Component]); ED and RP values become the
//! R5 `Observation.value` cross-version extension with an Attachment.
//!
//! Performers (OBX-15, 16, 23, 25), the device (OBX-18) and the specimen
//! (OBX-33) are resources the bridge does not emit: they are logical
//! references, by identifier and display. The IG's PractitionerRole for
//! OBX-16 and OBX-25 is not built: the reference names the Practitioner
//! itself, and the role (responsible observer, medical director) is not
//! carried.

mod value;

use std::borrow::Cow;

use super::datatypes::{
    codeable_concept, concept_of, datetime, entity_identifier, first_part, is_null, parts,
    practitioner_ref, push_string, string,
};
use super::fhir::{
    CodeableConcept, Coding, Element, Extension, ExtensionValue, ObsValue, Observation, Reference,
    TextOnly,
};
use super::references::{coded_ref, logical_ref, organization_ref};
use super::{resource_id, Context, MapError};
use crate::hl7::message::{Delimiters, MessageView, SegmentView};
use value::{attachment, value};

/// The R5 cross-version extension for Observation.value[x], with valueAttachment.
pub(super) const VALUE_EXTENSION: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value";
const NATURE_OF_ABNORMAL_TEST: &str =
    "http://hl7.org/fhir/StructureDefinition/observation-nature-of-abnormal-test";
const ANALYSIS_DATE_TIME: &str =
    "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time";
/// OBX-30, as the IG names it (its comment: not yet a published extension).
const STRUCTURE_TYPE: &str = "http://hl7.org/fhir/StructureDefinition/observation-structure-type";
/// OBX-33 with more than one specimen (R4 Observation.specimen is 0..1).
const SPECIMEN_EXTENSION: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.specimen";
const ALTERNATE_CODES: &str = "http://hl7.org/fhir/StructureDefinition/alternate-codes";

/// Appends one Observation per OBX to `out`. An OBX that cannot be mapped
/// is skipped (noted in `skipped`) and costs only its own Observation.
/// Returns, per OBX in message order, where its Observation is in `out`.
pub(super) fn map_all<'a>(
    msg: &'a MessageView<'a>,
    ctx: &'a Context<'a>,
    out: &mut Vec<super::Resource<'a>>,
    skipped: &mut Vec<super::Skipped>,
) -> Vec<Option<usize>> {
    let mut at = Vec::new();
    let mut segs = msg.segments().peekable();
    let mut obr: Option<SegmentView<'a>> = None;
    let mut n_obx = 0;
    let mut notes: Vec<&'a str> = Vec::new();
    // The first 8 bytes of every Observation id in `out` (ids are hex
    // digests): only a prefix match needs the full comparison below, so
    // checking for a repeat stays cheap for messages with many OBX.
    let prefix = |id: &str| {
        let mut p = [0u8; 8];
        for (d, s) in p.iter_mut().zip(id.bytes()) {
            *d = s;
        }
        u64::from_le_bytes(p)
    };
    let mut prefixes: Vec<u64> = out
        .iter()
        .filter_map(|r| match r {
            super::Resource::Observation(p) => Some(prefix(&p.id)),
            _ => None,
        })
        .collect();
    while let Some(seg) = segs.next() {
        match seg.name {
            "OBR" => obr = Some(seg),
            "OBX" => {
                n_obx += 1;
                // NTEs directly after this OBX are its notes.
                notes.clear();
                while let Some(nte) = segs.next_if(|s| s.name == "NTE") {
                    notes.extend(nte.field(3));
                }
                let mut o = match map_one(&seg, obr.as_ref(), &notes, n_obx, ctx) {
                    Ok(o) => o,
                    Err(e) => {
                        skipped.push(super::Skipped {
                            segment: "OBX",
                            index: n_obx,
                            reason: e.reason,
                        });
                        at.push(None);
                        continue;
                    }
                };
                // OBX with the same set ID, code and sub-ID in one order (senders
                // that leave OBX-1 empty on every line of a text result) would
                // share an id, and downstream upserts keep only the last: the
                // repeat's position makes its id distinct, and stays deterministic.
                // (The ids taken so far are those of the Observations already out.)
                let taken = |id: &str| {
                    out.iter()
                        .any(|r| matches!(r, super::Resource::Observation(p) if p.id == id))
                };
                if prefixes.contains(&prefix(&o.id)) && taken(&o.id) {
                    o.id = Cow::Owned(resource_id(&[&o.id, &n_obx.to_string()]));
                }
                prefixes.push(prefix(&o.id));
                at.push(Some(out.len()));
                out.push(super::Resource::Observation(o));
            }
            _ => {}
        }
    }
    at
}

fn map_one<'a>(
    obx: &SegmentView<'a>,
    obr: Option<&SegmentView<'a>>,
    notes: &[&'a str],
    n: usize,
    ctx: &'a Context<'a>,
) -> Result<Observation<'a>, MapError> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    // As sent, repetitions included: the inputs of the resource id.
    let field = |n: usize| obx.field(n).unwrap_or("");
    // What the mapping reads of a field that does not repeat: its first repetition.
    let first = |n: usize| {
        obx.field(n)
            .and_then(|f| f.split(d.repetition).next())
            .unwrap_or("")
    };
    let code = codeable_concept(first(3), d, t, None).ok_or_else(|| {
        MapError::new(format!("OBX-3 observation identifier is empty in OBX {n}"))
    })?;
    let value_type = upper(first(2).trim());
    let status_code = match first(11).trim() {
        "\"\"" => Cow::Borrowed(""), // the v2 null: as if empty
        s => upper(s),
    };
    let status = t.observation_status.get(&*status_code).ok_or_else(|| {
        MapError::new(format!(
            "OBX-11 result status is not in table 0085 in OBX {n}"
        ))
    })?;

    let filler = obr
        .and_then(|s| s.field(3))
        .map(|f| first_part(f, d.component))
        .filter(|v| !v.trim().is_empty() && !is_null(v));
    let order_key = filler.unwrap_or(&ctx.header.control_id);
    let id = resource_id(&[
        "Observation",
        &ctx.header.sending_facility,
        order_key,
        field(1),
        field(3),
        field(4),
    ]);

    let tz = &t.default_timezone;
    // An invalid OBX-14 is omitted (see `datetime`), and OBR-7 used as when it is empty.
    let obr7 = obr
        .and_then(|s| s.field(7))
        .and_then(|f| f.split(d.repetition).next())
        .unwrap_or("");
    let effective =
        timestamp(first(14), "OBX-14", n, d, tz).or_else(|| timestamp(obr7, "OBR-7", n, d, tz));
    // Every repetition of a repeating field.
    let repetitions = |n: usize| obx.field(n).into_iter().flat_map(|f| f.split(d.repetition));
    // IG performer[1] is OBX-16; performer[2] the producer (OBX-15), the
    // performing organisation (OBX-23) and its medical director (OBX-25).
    let performer: Vec<Reference<'a>> = repetitions(16)
        .filter_map(|r| practitioner_ref(r, d, t))
        .chain(coded_ref("Organization", first(15), d, t))
        .chain(organization_ref(first(23), d, t))
        .chain(practitioner_ref(first(25), d, t))
        .collect();

    // Repetitions with nothing left (empty, or only formatting escapes) are no values.
    let units = first(6);
    let mut extension = Vec::new();
    let mut values: Vec<ObsValue<'a>> = Vec::new();
    if matches!(&*value_type, "ED" | "RP") {
        extension.extend(
            repetitions(5)
                .filter_map(|r| attachment(&value_type, r, n, d))
                .map(|a| Extension {
                    url: VALUE_EXTENSION,
                    value: ExtensionValue::Attachment(a),
                }),
        );
    } else {
        values.extend(repetitions(5).filter_map(|r| value(&value_type, r, units, d, t)));
    }
    let has_value = !values.is_empty() || !extension.is_empty();
    extension.extend(
        repetitions(10)
            .filter_map(|r| codeable_concept(r, d, t, Some("0080")))
            .map(|cc| Extension {
                url: NATURE_OF_ABNORMAL_TEST,
                value: ExtensionValue::CodeableConcept(cc),
            }),
    );
    if let Some(dt) = timestamp(first(19), "OBX-19", n, d, tz) {
        extension.push(Extension {
            url: ANALYSIS_DATE_TIME,
            value: ExtensionValue::DateTime(dt),
        });
    }
    // OBX-30 (table 0937): the IG uses the extension's URL as the code's system.
    if let Some(sub_type) = super::datatypes::code(first(30), d) {
        extension.push(Extension {
            url: STRUCTURE_TYPE,
            value: ExtensionValue::CodeableConcept(concept_of(STRUCTURE_TYPE, sub_type, None)),
        });
    }
    // OBX-33: one specimen is Observation.specimen, several the R5 extension.
    let mut specimens: Vec<Reference<'a>> = repetitions(33)
        .filter_map(|r| specimen_ref(r, d, t))
        .collect();
    let specimen = if specimens.len() == 1 {
        specimens.pop()
    } else {
        extension.extend(specimens.into_iter().map(|r| Extension {
            url: SPECIMEN_EXTENSION,
            value: ExtensionValue::Reference(r),
        }));
        None
    };
    let interpretation = repetitions(8)
        .filter_map(|r| codeable_concept(r, d, t, Some("0078")))
        .collect();
    let reference_range = string(first(7), d)
        .map(|range| vec![TextOnly { text: range }])
        .unwrap_or_default();
    // NTE-3 repeats (FT): one note per NTE, its repetitions as lines.
    let note = notes
        .iter()
        .filter_map(|f| {
            let mut lines = String::with_capacity(f.len());
            for r in f.split(d.repetition) {
                push_string(r, d, "\n", &mut lines);
            }
            (!lines.is_empty()).then_some(TextOnly {
                text: Cow::Owned(lines),
            })
        })
        .collect();
    // OBX-21, the filler's instance identifier (type FILL).
    let identifier = entity_identifier(first(21), d.component, d, t).map(|mut i| {
        i.type_ = Some(concept_of(
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            Cow::Borrowed("FILL"),
            None,
        ));
        i
    });
    // OBX-29 observation type (table 0936).
    let category = super::datatypes::code(first(29), d).map(|c| CodeableConcept {
        coding: vec![v2_coding("0936", c)],
        text: None,
    });
    Ok(Observation {
        id: Cow::Owned(id),
        meta: &ctx.meta,
        extension,
        identifier: identifier.into_iter().collect(),
        status: Cow::Borrowed(status),
        status_element: (status_code == "X").then(|| Element {
            extension: vec![Extension {
                url: ALTERNATE_CODES,
                value: ExtensionValue::CodeableConcept(CodeableConcept {
                    coding: vec![v2_coding("0085", Cow::Borrowed("X"))],
                    text: None,
                }),
            }],
        }),
        category: category.into_iter().collect(),
        code,
        subject: ctx.subject.as_ref(),
        encounter: ctx.encounter_reference.as_deref().map(|r| Reference {
            reference: Some(Cow::Borrowed(r)),
            type_: None,
            identifier: None,
            display: None,
            extension: Vec::new(),
        }),
        effective_date_time: effective,
        performer,
        // OBX-11 N: not asked; the reason only where there is no value (FHIR obs-6).
        data_absent_reason: (status_code == "N" && !has_value).then(|| CodeableConcept {
            coding: vec![
                v2_coding("0085", Cow::Borrowed("N")),
                Coding {
                    system: Some(Cow::Borrowed(
                        "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    )),
                    version: None,
                    code: Some(Cow::Borrowed("not-asked")),
                    display: Some(Cow::Borrowed("Not Asked")),
                },
            ],
            text: None,
        }),
        values,
        interpretation,
        reference_range,
        note,
        body_site: codeable_concept(first(20), d, t, Some("0163")),
        method: codeable_concept(first(17), d, t, None),
        specimen,
        // OBX-18 repeats; Observation.device is 0..1: the first instance.
        device: logical_ref(
            "Device",
            entity_identifier(first(18), d.component, d, t),
            None,
        ),
    })
}

/// A code of v2 table `table` (e.g. "0085").
fn v2_coding<'a>(table: &str, code: Cow<'a, str>) -> Coding<'a> {
    Coding {
        system: Some(Cow::Owned(format!(
            "http://terminology.hl7.org/CodeSystem/v2-{table}"
        ))),
        version: None,
        code: Some(code),
        display: None,
    }
}

/// An EIP (placer^filler, each an EI in subcomponents) as a logical
/// reference to the Specimen: by the filler's identifier, else the placer's.
fn specimen_ref<'a>(
    v: &'a str,
    d: &Delimiters,
    t: &crate::transform::Tables,
) -> Option<Reference<'a>> {
    let p = parts(v, d.component);
    let id = entity_identifier(p.get(1), d.subcomponent, d, t)
        .or_else(|| entity_identifier(p.get(0), d.subcomponent, d, t));
    logical_ref("Specimen", id, None)
}

/// ASCII upper case, borrowed when it already is.
fn upper(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// A timestamp field of OBX `n` (its first component, TS-1), or `None`; an
/// invalid one is omitted with a warning that names the field, not the value.
fn timestamp(raw: &str, field: &str, n: usize, d: &Delimiters, tz: &str) -> Option<String> {
    let ts = first_part(raw, d.component);
    let dt = datetime(ts, tz);
    if dt.is_none() && !ts.trim().is_empty() && !is_null(ts) {
        tracing::warn!(
            field,
            obx = n,
            "not a valid timestamp: Observation element omitted"
        );
    }
    dt
}
