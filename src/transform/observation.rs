//! OBX to Observation (IG segments/OBX[Observation].csv), one per OBX, in
//! ORU^R01, ORM^O01 and any ADT that carries OBX. A repeating OBX-5 becomes
//! components (IG OBX[Observation-Component]).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::datatypes::{
    codeable_concept, datetime, decimal, first_part, has_text, is_null, parts, practitioner_ref,
    push_string, quantity_units, string, time,
};
use super::{resource_id, Context, MapError};
use crate::hl7::message::Delimiters;
use crate::transform::Tables;

pub(super) fn map_all(
    msg: &hl7_parser::Message<'_>,
    ctx: &Context<'_>,
) -> Result<Vec<Value>, MapError> {
    let segs: Vec<_> = msg.segments().collect();
    let mut out = Vec::with_capacity(segs.iter().filter(|s| s.name == "OBX").count());
    let mut ids = std::collections::HashSet::new();
    let mut obr: Option<&hl7_parser::message::Segment<'_>> = None;
    let mut n_obx = 0;
    for (i, seg) in segs.iter().enumerate() {
        match seg.name {
            "OBR" => obr = Some(seg),
            "OBX" => {
                n_obx += 1;
                // NTEs directly after this OBX are its notes.
                let notes: Vec<&hl7_parser::message::Field<'_>> = segs[i + 1..]
                    .iter()
                    .take_while(|s| s.name == "NTE")
                    .filter_map(|s| s.field(3))
                    .collect();
                let mut o = map_one(seg, obr, &notes, n_obx, ctx)?;
                // OBX with the same set ID, code and sub-ID in one order (senders
                // that leave OBX-1 empty on every line of a text result) would
                // share an id, and downstream upserts keep only the last: the
                // repeat's position makes its id distinct, and stays deterministic.
                if let Some(id) = o.get("id").and_then(Value::as_str) {
                    if ids.contains(id) {
                        let distinct = resource_id(&[id, &n_obx.to_string()]);
                        ids.insert(distinct.clone());
                        o["id"] = Value::String(distinct);
                    } else {
                        ids.insert(id.to_owned());
                    }
                }
                out.push(o);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn map_one(
    obx: &hl7_parser::message::Segment<'_>,
    obr: Option<&hl7_parser::message::Segment<'_>>,
    notes: &[&hl7_parser::message::Field<'_>],
    n: usize,
    ctx: &Context<'_>,
) -> Result<Value, MapError> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    // As sent, repetitions included: the inputs of the resource id.
    let field = |n: usize| obx.field(n).map(|f| f.raw_value()).unwrap_or("");
    // What the mapping reads of a field that does not repeat: its first repetition.
    let first = |n: usize| {
        obx.field(n)
            .and_then(|f| f.repeat(1))
            .map(|r| r.raw_value())
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
        .map(|f| first_part(f.raw_value(), d.component))
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

    let mut o = Map::with_capacity(16);
    o.insert("resourceType".into(), Value::String("Observation".into()));
    o.insert("id".into(), Value::String(id));
    o.insert("meta".into(), ctx.meta.clone());
    o.insert("status".into(), Value::String(status.clone()));
    o.insert("code".into(), code);
    if let Some(s) = &ctx.subject {
        o.insert("subject".into(), s.clone());
    }
    if let Some(reference) = &ctx.encounter_reference {
        let mut r = Map::new();
        r.insert("reference".into(), Value::String(reference.clone()));
        o.insert("encounter".into(), Value::Object(r));
    }
    let tz = &t.default_timezone;
    // An invalid OBX-14 is omitted (see `datetime`), and OBR-7 used as when it is empty.
    let obr7 = obr
        .and_then(|s| s.field(7))
        .and_then(|f| f.repeat(1))
        .map_or("", |r| r.raw_value());
    let effective =
        timestamp(first(14), "OBX-14", n, d, tz).or_else(|| timestamp(obr7, "OBR-7", n, d, tz));
    if let Some(e) = effective {
        o.insert("effectiveDateTime".into(), Value::String(e));
    }
    let performers: Vec<Value> = obx
        .field(16)
        .map(|f| {
            f.repeats()
                .filter_map(|r| practitioner_ref(r.raw_value(), d, t))
                .collect()
        })
        .unwrap_or_default();
    if !performers.is_empty() {
        o.insert("performer".into(), Value::Array(performers));
    }

    // Repetitions with nothing left (empty, or only formatting escapes) are no values.
    let units = first(6);
    let mut values: Vec<(&str, Value)> = obx
        .field(5)
        .map(|f| {
            f.repeats()
                .filter_map(|r| value(&value_type, r.raw_value(), units, d, t))
                .collect()
        })
        .unwrap_or_default();
    match values.len() {
        0 => {} // FHIR allows an Observation without value[x]
        1 => {
            let (k, v) = values.pop().expect("one value");
            o.insert(k.into(), v);
        }
        _ => {
            let code = &o["code"];
            let components: Vec<Value> = values
                .into_iter()
                .map(|(k, v)| {
                    let mut c = Map::new();
                    c.insert("code".into(), code.clone());
                    c.insert(k.into(), v);
                    Value::Object(c)
                })
                .collect();
            o.insert("component".into(), Value::Array(components));
        }
    }
    let interpretation: Vec<Value> = obx
        .field(8)
        .map(|f| {
            f.repeats()
                .filter_map(|r| codeable_concept(r.raw_value(), d, t, Some("0078")))
                .collect()
        })
        .unwrap_or_default();
    if !interpretation.is_empty() {
        o.insert("interpretation".into(), Value::Array(interpretation));
    }
    if let Some(range) = string(first(7), d) {
        o.insert("referenceRange".into(), Value::Array(vec![text(range)]));
    }
    // NTE-3 repeats (FT): one note per NTE, its repetitions as lines.
    let notes: Vec<Value> = notes
        .iter()
        .filter_map(|f| {
            let mut lines = String::new();
            for r in f.repeats() {
                push_string(r.raw_value(), d, "\n", &mut lines);
            }
            (!lines.is_empty()).then(|| text(lines))
        })
        .collect();
    if !notes.is_empty() {
        o.insert("note".into(), Value::Array(notes));
    }
    Ok(Value::Object(o))
}

/// `{"text": text}`.
fn text(text: String) -> Value {
    let mut m = Map::new();
    m.insert("text".into(), Value::String(text));
    Value::Object(m)
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
            "not a valid timestamp: Observation.effectiveDateTime omitted"
        );
    }
    dt
}

/// value[x] by OBX-2. Values that do not fit their declared type are kept as
/// valueString (with the type's text), never dropped; `None` only when
/// nothing is left (FHIR has no empty strings).
fn value(
    value_type: &str,
    v: &str,
    units: &str,
    d: &Delimiters,
    t: &Tables,
) -> Option<(&'static str, Value)> {
    // Delimiters around nothing (` ^ `, `^\H\^`) are no value either.
    if !parts(v, d.component).iter().any(|c| has_text(c, d)) {
        return None;
    }
    let text = || string(v, d).map(|s| ("valueString", Value::String(s)));
    match value_type {
        "NM" => match decimal(v) {
            Some(n) => {
                let mut q = Map::with_capacity(5);
                q.insert("value".into(), n);
                quantity_units(units, d, t, &mut q);
                Some(("valueQuantity", Value::Object(q)))
            }
            None => text(),
        },
        "ST" | "TX" | "FT" => text(),
        "CE" | "CWE" | "CNE" | "IS" => match codeable_concept(v, d, t, None) {
            Some(cc) => Some(("valueCodeableConcept", cc)),
            None => text(),
        },
        // TS is DTM^precision: the value is TS-1.
        "DT" | "DTM" | "TS" => match datetime(first_part(v, d.component), &t.default_timezone) {
            Some(dt) => Some(("valueDateTime", Value::String(dt))),
            None => text(),
        },
        "TM" => match time(v) {
            Some(tm) => Some(("valueTime", Value::String(tm))),
            None => text(),
        },
        "NR" => {
            let p = parts(v, d.component);
            match range(decimal(p.get(0)), decimal(p.get(1)), units, d, t) {
                Some(r) => Some(("valueRange", r)),
                None => text(),
            }
        }
        "SN" => structured_numeric(v, units, d, t)
            .or_else(|| sn_text(v, units, d).map(|s| ("valueString", Value::String(s)))),
        _ => text(),
    }
}

fn quantity(value: Value, units: &str, d: &Delimiters, t: &Tables) -> Value {
    let mut q = Map::with_capacity(5);
    q.insert("value".into(), value);
    quantity_units(units, d, t, &mut q);
    Value::Object(q)
}

fn range(
    low: Option<Value>,
    high: Option<Value>,
    units: &str,
    d: &Delimiters,
    t: &Tables,
) -> Option<Value> {
    if low.is_none() && high.is_none() {
        return None;
    }
    let mut r = Map::new();
    if let Some(l) = low {
        r.insert("low".into(), quantity(l, units, d, t));
    }
    if let Some(h) = high {
        r.insert("high".into(), quantity(h, units, d, t));
    }
    Some(Value::Object(r))
}

/// SN (comparator ^ num1 ^ separator ^ num2), per IG SN[Quantity], SN[Range], SN[Ratio]:
/// `^>^200` is a Quantity with comparator, `^1^-^5` a Range, `^1^:^160` a Ratio.
fn structured_numeric(
    v: &str,
    units: &str,
    d: &Delimiters,
    t: &Tables,
) -> Option<(&'static str, Value)> {
    let p = parts(v, d.component);
    let (cmp, n1, sep, n2) = (p.get(0).trim(), p.get(1), p.get(2).trim(), p.get(3));
    if cmp == "<>" {
        return None;
    }
    match sep {
        "" if n2.is_empty() => {
            let mut q = quantity(decimal(n1)?, units, d, t);
            match cmp {
                "" | "=" => {}
                "<" | ">" | "<=" | ">=" => q["comparator"] = Value::String(cmp.to_owned()),
                _ => return None,
            }
            Some(("valueQuantity", q))
        }
        "-" if cmp.is_empty() || cmp == "=" => {
            Some(("valueRange", range(decimal(n1), decimal(n2), units, d, t)?))
        }
        ":" | "/" if cmp.is_empty() || cmp == "=" => {
            let mut r = Map::new();
            r.insert("numerator".into(), quantity(decimal(n1)?, units, d, t));
            r.insert("denominator".into(), quantity(decimal(n2)?, "", d, t));
            Some(("valueRatio", Value::Object(r)))
        }
        _ => None,
    }
}

/// IG fallback text for SN: components and units joined by spaces (`None`
/// when nothing is left).
fn sn_text(v: &str, units: &str, d: &Delimiters) -> Option<String> {
    let mut words = String::new();
    for s in v.split(d.component) {
        push_string(s, d, " ", &mut words);
    }
    if words.is_empty() {
        return None;
    }
    push_string(first_part(units, d.component), d, " ", &mut words);
    Some(words)
}
