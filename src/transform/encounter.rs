//! PV1 and PV2 to Encounter (IG segments/PV1[Encounter].csv and
//! segments/PV2[Encounter].csv). Locations, the episode of care and the
//! discharge destination are resources the bridge does not emit: they stay
//! logical references (identifier and/or display).

use std::borrow::Cow;

use super::datatypes::{
    code, codeable_concept, concept_of, datetime, decimal, first_coding, first_part, identifier,
    is_null, location_ref, parts, practitioner_ref, string,
};
use super::fhir::{
    CodeableConcept, Coding, Encounter, Extension, ExtensionValue, Hospitalization, Location,
    Narrative, Participant, Period, Quantity, Text,
};
use super::references::logical_ref;
use super::{Context, MapError};
use crate::hl7::message::{Delimiters, SegmentView};

/// Cancellation triggers: the encounter did not happen.
const CANCELLATIONS: &[&str] = &["A11", "A12", "A27", "A38"];

/// IG participant types for PV1-7, 8, 9, 17 and 52, and PV2-13
/// (v3-ParticipationType): (segment, field, code, display).
const PARTICIPANTS: &[(&str, usize, &str, &str)] = &[
    ("PV1", 7, "ATND", "attender"),
    ("PV1", 8, "REF", "referrer"),
    ("PV1", 9, "CON", "consultant"),
    ("PV1", 17, "ADM", "admitter"),
    ("PV1", 52, "PART", "Participation"),
    ("PV2", 13, "REF", "referrer"),
];

/// codesystems/EncounterPriority.csv: PV2-25 (table 0217) to v3-ActPriority.
const PRIORITY: &[(&str, &str, &str)] = &[
    ("1", "EM", "emergency"),
    ("2", "UR", "urgent"),
    ("3", "EL", "elective"),
];

/// PV2-8 and PV2-9: the R5 cross-version extensions the IG names.
const PLANNED_START: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate";
const PLANNED_END: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate";
const MODE_OF_ARRIVAL: &str = "http://hl7.org/fhir/StructureDefinition/encounter-modeOfArrival";
/// PV1-11: the IG's temporary-location classification (URL and system as it writes them).
const LOCATION_CLASSIFICATION: &str =
    "http://hl7.org/fhir/StructureDefinition/subject-locationClassification";
const SUBJECT_LOCATION: &str = "http://hl7.org/fhir/ValueSet/subject-location";

pub(super) fn map<'a>(
    pv1: &SegmentView<'a>,
    pv2: Option<&SegmentView<'a>>,
    id: &'a str,
    ctx: &'a Context<'a>,
) -> Result<Encounter<'a>, MapError> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    // What the mapping reads of a field that does not repeat: its first repetition.
    let field = |n: usize| {
        pv1.field(n)
            .and_then(|f| f.split(d.repetition).next())
            .unwrap_or("")
    };
    let pv2_field = |n: usize| {
        pv2.and_then(|s| s.field(n))
            .and_then(|f| f.split(d.repetition).next())
            .unwrap_or("")
    };
    // Every repetition of a repeating field.
    let repetitions = |seg: Option<&SegmentView<'a>>, n: usize| {
        seg.and_then(|s| s.field(n))
            .into_iter()
            .flat_map(|f| f.split(d.repetition))
    };
    let trigger = ctx.header.trigger_event.to_ascii_uppercase();
    let class_code = code(first_part(field(2), d.component), d).unwrap_or_default();
    let discharged = !field(45).trim().is_empty() && !is_null(field(45));

    // Status, in the order of precedence documented in the README.
    let status: &'a str = if CANCELLATIONS.contains(&trigger.as_str()) {
        "cancelled"
    } else if trigger == "A13" {
        "in-progress"
    } else if discharged {
        "finished"
    } else if let Some(s) = t.event_encounter_status.get(&trigger) {
        s
    } else if let Some(s) = t.patient_class_status.get(&*class_code) {
        s
    } else {
        "unknown"
    };

    let visit = identifier(field(t.visit_number_field), d, t).map(|mut v| {
        // The visit number (PV1-19, or PV1-50 by mapping rule) is type VN whatever CX-5 says.
        v.type_ = Some(concept_of(
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            Cow::Borrowed("VN"),
            Some("visit number"),
        ));
        v
    });
    let class = match t.patient_class.get(&*class_code) {
        Some((code, display)) => coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            Cow::Borrowed(code),
            Some(display),
        ),
        None if !class_code.is_empty() => coding(
            "http://terminology.hl7.org/CodeSystem/v2-0004",
            Cow::Owned(class_code.clone().into_owned()),
            None,
        ),
        // Encounter.class is required; an empty PV1-2 is "unknown".
        None => coding(
            "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
            Cow::Borrowed("UNK"),
            Some("unknown"),
        ),
    };
    let mut participants = Vec::new();
    for &(segment, n, code, display) in PARTICIPANTS {
        let seg = if segment == "PV1" { Some(pv1) } else { pv2 };
        for rep in repetitions(seg, n).filter(|r| !r.is_empty()) {
            if let Some(who) = practitioner_ref(rep, d, t) {
                let kind = coding(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    Cow::Borrowed(code),
                    Some(display),
                );
                // The IG fills the type's text for most roles, its display for
                // PV1-7: both are given, so either reading finds it.
                participants.push(Participant {
                    type_: vec![CodeableConcept {
                        coding: vec![kind],
                        text: Some(Cow::Borrowed(display)),
                    }],
                    individual: who,
                });
            }
        }
    }
    // An invalid timestamp is omitted (see `datetime`), with a content-free warning.
    let timestamp = |n: usize| timestamp_of("PV1", n, field(n), d, &t.default_timezone);
    let start = timestamp(44);
    // A13 cancels the discharge: the encounter has no end.
    let end = if trigger == "A13" {
        None
    } else {
        timestamp(45)
    };
    let period = (start.is_some() || end.is_some()).then_some(Period { start, end });
    // PV1-3 current, PV1-6 prior, PV1-11 temporary, PV1-42 pending and
    // PV2-1 prior pending locations, in the IG's order.
    let current = if class_code == "P" {
        "planned"
    } else if status == "finished" {
        // The IG says "active"; a finished encounter's location is left.
        "completed"
    } else {
        "active"
    };
    let temporary = || Extension {
        url: LOCATION_CLASSIFICATION,
        value: ExtensionValue::CodeableConcept(concept_of(
            SUBJECT_LOCATION,
            Cow::Borrowed("temporary"),
            None,
        )),
    };
    let locations = [
        (field(3), current),
        (field(6), "completed"),
        (field(11), "active"),
        (field(42), "reserved"),
        (pv2_field(1), "planned"),
    ];
    let location = locations
        .iter()
        .enumerate()
        .filter_map(|(i, &(v, status))| {
            location_ref(v, d).map(|location| Location {
                location,
                status,
                extension: if i == 2 {
                    vec![temporary()]
                } else {
                    Vec::new()
                },
            })
        })
        .collect();
    let concepts = |seg: Option<&SegmentView<'a>>, n: usize, table: &str| {
        repetitions(seg, n)
            .filter_map(|r| codeable_concept(r, d, t, Some(table)))
            .collect::<Vec<_>>()
    };
    let hosp = Hospitalization {
        admit_source: codeable_concept(field(14), d, t, Some("0023")),
        discharge_disposition: codeable_concept(field(36), d, t, Some("0112")),
        pre_admission_identifier: identifier(field(5), d, t),
        re_admission: codeable_concept(field(13), d, t, Some("0092")),
        diet_preference: concepts(Some(pv1), 38, "0159"),
        special_courtesy: concepts(Some(pv1), 16, "0099"),
        special_arrangement: concepts(Some(pv1), 15, "0009"),
        destination: discharge_location(field(37), d),
    };
    // PV1-19 (or the configured field) is the visit number; the other of
    // PV1-19 and PV1-50 (alternate visit IDs) follows it, without type VN.
    let alternate = if t.visit_number_field == 50 { 19 } else { 50 };
    let identifiers = visit
        .into_iter()
        .chain(repetitions(Some(pv1), alternate).filter_map(|r| identifier(r, d, t)))
        .collect();
    // PV1-54 identifies the episode of care, PV1-53 describes it.
    let episode_of_care = logical_ref(
        "EpisodeOfCare",
        identifier(field(54), d, t),
        string(field(53), d),
    );
    let mut extension = Vec::new();
    for (n, url) in [(8, PLANNED_START), (9, PLANNED_END)] {
        if let Some(dt) = timestamp_of("PV2", n, pv2_field(n), d, &t.default_timezone) {
            extension.push(Extension {
                url,
                value: ExtensionValue::DateTime(dt),
            });
        }
    }
    if let Some(c) = first_coding(pv2_field(38), d, t, Some("0430")) {
        extension.push(Extension {
            url: MODE_OF_ARRIVAL,
            value: ExtensionValue::Coding(c),
        });
    }
    let meta = match protection(pv2_field(22)) {
        Some(label) => {
            let mut m = ctx.meta.clone();
            m.security.push(label);
            Cow::Owned(m)
        }
        None => Cow::Borrowed(&ctx.meta),
    };
    Ok(Encounter {
        resource_type: "Encounter",
        id: Cow::Borrowed(id),
        meta,
        text: string(pv2_field(12), d).map(|s| narrative(&s)),
        extension,
        identifier: identifiers,
        status: Cow::Borrowed(status),
        class,
        type_: codeable_concept(field(4), d, t, Some("0007"))
            .into_iter()
            .collect(),
        service_type: codeable_concept(field(10), d, t, Some("0069")),
        priority: codeable_concept(pv2_field(25), d, t, Some("0217")).map(with_act_priority),
        subject: ctx.subject.as_ref(),
        episode_of_care: episode_of_care.into_iter().collect(),
        participant: participants,
        period,
        length: length_of_stay(pv2_field(11)),
        reason_code: codeable_concept(pv2_field(3), d, t, None)
            .into_iter()
            .collect(),
        location,
        hospitalization: (!hosp.is_empty()).then_some(hosp),
    })
}

/// A timestamp of `segment`-`n`, or `None`; an invalid one is omitted with
/// a warning that names the field, never the value.
fn timestamp_of(segment: &str, n: usize, raw: &str, d: &Delimiters, tz: &str) -> Option<String> {
    let ts = first_part(raw, d.component);
    let dt = datetime(ts, tz);
    if dt.is_none() && !ts.trim().is_empty() && !is_null(ts) {
        tracing::warn!(
            field = format!("{segment}-{n}"),
            "not a valid timestamp: Encounter element omitted"
        );
    }
    dt
}

/// PV2-11 as a Duration in days (IG NM[Quantity-LengthOfStay]). The IG
/// raises an error on a negative length; here it is omitted, with a warning,
/// so one bad field does not cost the visit and its results.
fn length_of_stay<'a>(raw: &str) -> Option<Quantity<'a>> {
    let value = decimal(raw.trim())?;
    if value.as_str().starts_with('-') {
        tracing::warn!(
            field = "PV2-11",
            "negative length of stay: Encounter.length omitted"
        );
        return None;
    }
    Some(Quantity {
        value,
        unit: Some(Cow::Borrowed("days")),
        system: Some(Cow::Borrowed("http://unitsofmeasure.org")),
        code: Some(Cow::Borrowed("d")),
        comparator: None,
    })
}

/// PV2-12 as the Encounter's narrative: the description is not in the
/// structured data, so the status is "additional".
fn narrative(text: &str) -> Narrative {
    let mut div = String::from("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    for c in text.chars() {
        match c {
            '&' => div.push_str("&amp;"),
            '<' => div.push_str("&lt;"),
            '>' => div.push_str("&gt;"),
            c => div.push(c),
        }
    }
    div.push_str("</div>");
    Narrative {
        status: "additional",
        div,
    }
}

/// PV2-22 to meta.security, as codesystems/YesNoIndicator.csv maps it
/// (Y/N to special-values true/false).
fn protection<'a>(raw: &str) -> Option<Coding<'a>> {
    let value = match raw.trim() {
        "Y" | "y" => "true",
        "N" | "n" => "false",
        _ => return None,
    };
    Some(coding(
        "http://terminology.hl7.org/CodeSystem/special-values",
        Cow::Borrowed(value),
        None,
    ))
}

/// PV2-25 with the v3-ActPriority coding the IG maps table 0217's codes to.
fn with_act_priority(mut cc: CodeableConcept<'_>) -> CodeableConcept<'_> {
    let sent = cc.coding.first().and_then(|c| c.code.as_deref());
    if let Some(&(_, code, display)) = PRIORITY.iter().find(|(v2, _, _)| Some(*v2) == sent) {
        cc.coding.push(coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
            Cow::Borrowed(code),
            Some(display),
        ));
    }
    cc
}

/// PV1-37 (DLD) to a logical Location reference: DLD-1 is the kind of
/// place (IG DLD[Location-Discharge] maps it to Location.type), so its text,
/// else its code, is the display.
fn discharge_location<'a>(raw: &'a str, d: &Delimiters) -> Option<super::fhir::Reference<'a>> {
    let cwe = parts(first_part(raw, d.component), d.subcomponent);
    let display = string(cwe.get(1), d).or_else(|| string(cwe.get(0), d));
    logical_ref("Location", None, display)
}

/// A Coding: `{"system", "code"[, "display"]}`.
fn coding<'a>(system: &'static str, code: Text<'a>, display: Option<&'a str>) -> Coding<'a> {
    Coding {
        system: Some(Cow::Borrowed(system)),
        version: None,
        code: Some(code),
        display: display.map(Cow::Borrowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_of_stay_is_in_days_and_a_negative_one_is_omitted() {
        let l = serde_json::to_value(length_of_stay("5")).unwrap();
        assert_eq!(
            l,
            serde_json::json!({"value": 5, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"})
        );
        assert!(length_of_stay("-2").is_none());
        assert!(length_of_stay("five").is_none());
    }

    #[test]
    fn the_visit_description_is_escaped_xhtml() {
        assert_eq!(
            narrative("a < b & c > d").div,
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">a &lt; b &amp; c &gt; d</div>"
        );
    }
}
