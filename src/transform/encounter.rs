//! PV1 to Encounter (IG segments/PV1[Encounter].csv).

use std::borrow::Cow;

use super::datatypes::{
    code, codeable_concept, concept_of, datetime, first_part, identifier, is_null, location_ref,
    practitioner_ref,
};
use super::fhir::{Coding, Encounter, Hospitalization, Location, Participant, Period, Text};
use super::{Context, MapError};
use crate::hl7::message::SegmentView;

/// Cancellation triggers: the encounter did not happen.
const CANCELLATIONS: &[&str] = &["A11", "A12", "A27", "A38"];

/// IG participant types for PV1-7, 8, 9 and 17 (v3-ParticipationType).
const PARTICIPANTS: &[(usize, &str, &str)] = &[
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
];

pub(super) fn map<'a>(
    pv1: &SegmentView<'a>,
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
    for &(n, code, display) in PARTICIPANTS {
        let Some(f) = pv1.field(n) else { continue };
        for rep in f.split(d.repetition).filter(|r| !r.is_empty()) {
            if let Some(who) = practitioner_ref(rep, d, t) {
                let kind = coding(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    Cow::Borrowed(code),
                    Some(display),
                );
                participants.push(Participant {
                    type_: vec![super::fhir::CodeableConcept {
                        coding: vec![kind],
                        text: None,
                    }],
                    individual: who,
                });
            }
        }
    }
    // An invalid timestamp is omitted (see `datetime`), with a content-free warning.
    let timestamp = |n: usize, element: &str| {
        let ts = first_part(field(n), d.component);
        let dt = datetime(ts, &t.default_timezone);
        if dt.is_none() && !ts.trim().is_empty() && !is_null(ts) {
            tracing::warn!(
                field = format!("PV1-{n}"),
                "not a valid timestamp: Encounter.period.{element} omitted"
            );
        }
        dt
    };
    let start = timestamp(44, "start");
    // A13 cancels the discharge: the encounter has no end.
    let end = if trigger == "A13" {
        None
    } else {
        timestamp(45, "end")
    };
    let period = (start.is_some() || end.is_some()).then_some(Period { start, end });
    let location = location_ref(field(3), d).map(|loc| {
        let st = if class_code == "P" {
            "planned"
        } else if status == "finished" {
            "completed"
        } else {
            "active"
        };
        Location {
            location: loc,
            status: st,
        }
    });
    let hosp = Hospitalization {
        admit_source: codeable_concept(field(14), d, t, Some("0023")),
        discharge_disposition: codeable_concept(field(36), d, t, Some("0112")),
        pre_admission_identifier: identifier(field(5), d, t),
    };
    Ok(Encounter {
        resource_type: "Encounter",
        id: Cow::Borrowed(id),
        meta: &ctx.meta,
        identifier: visit.into_iter().collect(),
        status: Cow::Borrowed(status),
        class,
        type_: codeable_concept(field(4), d, t, Some("0007"))
            .into_iter()
            .collect(),
        service_type: codeable_concept(field(10), d, t, Some("0069")),
        subject: ctx.subject.as_ref(),
        participant: participants,
        period,
        location: location.into_iter().collect(),
        hospitalization: (!hosp.is_empty()).then_some(hosp),
    })
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
