//! PV1 to Encounter (IG segments/PV1[Encounter].csv).

use serde_json::{Map, Value};

use super::datatypes::{
    code, codeable_concept, concept_of, datetime, first_part, identifier, is_null, location_ref,
    practitioner_ref,
};
use super::{Context, MapError};

/// Cancellation triggers: the encounter did not happen.
const CANCELLATIONS: &[&str] = &["A11", "A12", "A27", "A38"];

/// IG participant types for PV1-7, 8, 9 and 17 (v3-ParticipationType).
const PARTICIPANTS: &[(usize, &str, &str)] = &[
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
];

pub(super) fn map(
    pv1: &hl7_parser::message::Segment<'_>,
    id: &str,
    ctx: &Context<'_>,
) -> Result<Value, MapError> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    // What the mapping reads of a field that does not repeat: its first repetition.
    let field = |n: usize| {
        pv1.field(n)
            .and_then(|f| f.repeat(1))
            .map(|r| r.raw_value())
            .unwrap_or("")
    };
    let trigger = ctx.header.trigger_event.to_ascii_uppercase();
    let class_code = code(first_part(field(2), d.component), d).unwrap_or_default();
    let discharged = !field(45).trim().is_empty() && !is_null(field(45));

    // Status, in the order of precedence documented in the README.
    let status: &str = if CANCELLATIONS.contains(&trigger.as_str()) {
        "cancelled"
    } else if trigger == "A13" {
        "in-progress"
    } else if discharged {
        "finished"
    } else if let Some(s) = t.event_encounter_status.get(&trigger) {
        s
    } else if let Some(s) = t.patient_class_status.get(&class_code) {
        s
    } else {
        "unknown"
    };

    let mut e = Map::with_capacity(16);
    e.insert("resourceType".into(), str_value("Encounter"));
    e.insert("id".into(), str_value(id));
    e.insert("meta".into(), ctx.meta.clone());
    if let Some(visit) = identifier(field(t.visit_number_field), d, t).map(|mut v| {
        // The visit number (PV1-19, or PV1-50 by mapping rule) is type VN whatever CX-5 says.
        v["type"] = concept_of(
            "http://terminology.hl7.org/CodeSystem/v2-0203",
            "VN".into(),
            Some("visit number"),
        );
        v
    }) {
        e.insert("identifier".into(), Value::Array(vec![visit]));
    }
    e.insert("status".into(), str_value(status));
    let class = match t.patient_class.get(&class_code) {
        Some((code, display)) => coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            code,
            Some(display),
        ),
        None if !class_code.is_empty() => coding(
            "http://terminology.hl7.org/CodeSystem/v2-0004",
            &class_code,
            None,
        ),
        // Encounter.class is required; an empty PV1-2 is "unknown".
        None => coding(
            "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
            "UNK",
            Some("unknown"),
        ),
    };
    e.insert("class".into(), class);
    if let Some(cc) = codeable_concept(field(4), d, t, Some("0007")) {
        e.insert("type".into(), Value::Array(vec![cc]));
    }
    if let Some(cc) = codeable_concept(field(10), d, t, Some("0069")) {
        e.insert("serviceType".into(), cc);
    }
    if let Some(s) = &ctx.subject {
        e.insert("subject".into(), s.clone());
    }
    let mut participants = Vec::new();
    for &(n, code, display) in PARTICIPANTS {
        let Some(f) = pv1.field(n) else { continue };
        for rep in f.repeats().map(|r| r.raw_value()).filter(|r| !r.is_empty()) {
            if let Some(who) = practitioner_ref(rep, d, t) {
                let kind = coding(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    code,
                    Some(display),
                );
                let mut concept = Map::new();
                concept.insert("coding".into(), Value::Array(vec![kind]));
                let mut p = Map::new();
                p.insert("type".into(), Value::Array(vec![Value::Object(concept)]));
                p.insert("individual".into(), who);
                participants.push(Value::Object(p));
            }
        }
    }
    if !participants.is_empty() {
        e.insert("participant".into(), Value::Array(participants));
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
    if start.is_some() || end.is_some() {
        let mut p = Map::new();
        if let Some(s) = start {
            p.insert("start".into(), Value::String(s));
        }
        if let Some(x) = end {
            p.insert("end".into(), Value::String(x));
        }
        e.insert("period".into(), Value::Object(p));
    }
    if let Some(loc) = location_ref(field(3), d) {
        let st = if class_code == "P" {
            "planned"
        } else if status == "finished" {
            "completed"
        } else {
            "active"
        };
        let mut l = Map::new();
        l.insert("location".into(), loc);
        l.insert("status".into(), str_value(st));
        e.insert("location".into(), Value::Array(vec![Value::Object(l)]));
    }
    let mut hosp = Map::with_capacity(3);
    if let Some(cc) = codeable_concept(field(14), d, t, Some("0023")) {
        hosp.insert("admitSource".into(), cc);
    }
    if let Some(cc) = codeable_concept(field(36), d, t, Some("0112")) {
        hosp.insert("dischargeDisposition".into(), cc);
    }
    if let Some(id) = identifier(field(5), d, t) {
        hosp.insert("preAdmissionIdentifier".into(), id);
    }
    if !hosp.is_empty() {
        e.insert("hospitalization".into(), Value::Object(hosp));
    }
    Ok(Value::Object(e))
}

fn str_value(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// A Coding: `{"system", "code"[, "display"]}`.
fn coding(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut c = Map::with_capacity(3);
    c.insert("system".into(), str_value(system));
    c.insert("code".into(), str_value(code));
    if let Some(display) = display {
        c.insert("display".into(), str_value(display));
    }
    Value::Object(c)
}
