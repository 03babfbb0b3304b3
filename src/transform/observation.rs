//! OBX to Observation (IG segments/OBX[Observation].csv), one per OBX, in
//! ORU^R01, ORM^O01 and any ADT that carries OBX. A repeating OBX-5 becomes
//! components (IG OBX[Observation-Component]).

use serde_json::{json, Map, Value};

use super::datatypes::{
    codeable_concept, datetime, decimal, part, parts, practitioner_ref, quantity_units, time,
    unescape,
};
use super::{resource_id, Context, MapError};
use crate::hl7::message::Delimiters;
use crate::transform::Tables;

pub(super) fn map_all(
    msg: &hl7_parser::Message<'_>,
    ctx: &Context<'_>,
) -> Result<Vec<Value>, MapError> {
    let mut out = Vec::new();
    let mut obr: Option<&hl7_parser::message::Segment<'_>> = None;
    let segs: Vec<_> = msg.segments().collect();
    let mut n_obx = 0;
    for (i, seg) in segs.iter().enumerate() {
        match seg.name {
            "OBR" => obr = Some(seg),
            "OBX" => {
                n_obx += 1;
                // NTEs directly after this OBX are its notes.
                let notes: Vec<&str> = segs[i + 1..]
                    .iter()
                    .take_while(|s| s.name == "NTE")
                    .filter_map(|s| s.field(3).map(|f| f.raw_value()))
                    .collect();
                out.push(map_one(seg, obr, &notes, n_obx, ctx)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn map_one(
    obx: &hl7_parser::message::Segment<'_>,
    obr: Option<&hl7_parser::message::Segment<'_>>,
    notes: &[&str],
    n: usize,
    ctx: &Context<'_>,
) -> Result<Value, MapError> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    let field = |n: usize| obx.field(n).map(|f| f.raw_value()).unwrap_or("");
    let code = codeable_concept(field(3), d, t, None).ok_or_else(|| {
        MapError::new(format!("OBX-3 observation identifier is empty in OBX {n}"))
    })?;
    let value_type = field(2).trim().to_ascii_uppercase();
    let status_code = field(11).trim().to_ascii_uppercase();
    let status = t
        .observation_status
        .get(&status_code)
        .cloned()
        .ok_or_else(|| {
            MapError::new(format!(
                "OBX-11 result status is not in table 0085 in OBX {n}"
            ))
        })?;

    let filler = obr
        .and_then(|s| s.field(3))
        .map(|f| parts(f.raw_value(), d.component)[0])
        .filter(|v| !v.is_empty());
    let order_key = filler.unwrap_or(&ctx.header.control_id);
    let id = resource_id(&[
        "Observation",
        &ctx.header.sending_facility,
        order_key,
        field(1),
        field(3),
        field(4),
    ]);

    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Observation"));
    o.insert("id".into(), json!(id));
    o.insert("meta".into(), ctx.meta.clone());
    o.insert("status".into(), json!(status));
    o.insert("code".into(), code.clone());
    if let Some(s) = &ctx.subject {
        o.insert("subject".into(), s.clone());
    }
    if let Some(eid) = &ctx.encounter_id {
        o.insert(
            "encounter".into(),
            json!({"reference": format!("Encounter/{eid}")}),
        );
    }
    let tz = &t.default_timezone;
    let effective = datetime(parts(field(14), d.component)[0], tz).or_else(|| {
        obr.and_then(|s| s.field(7))
            .and_then(|f| datetime(parts(f.raw_value(), d.component)[0], tz))
    });
    if let Some(e) = effective {
        o.insert("effectiveDateTime".into(), json!(e));
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

    let values: Vec<&str> = obx
        .field(5)
        .map(|f| {
            f.repeats()
                .map(|r| r.raw_value())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let units = field(6);
    match values.as_slice() {
        [] => {}
        [one] => {
            let (k, v) = value(&value_type, one, units, d, t);
            o.insert(k.into(), v);
        }
        many => {
            let components: Vec<Value> = many
                .iter()
                .map(|v| {
                    let (k, v) = value(&value_type, v, units, d, t);
                    json!({"code": code, k: v})
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
    if !field(7).is_empty() {
        o.insert(
            "referenceRange".into(),
            json!([{"text": unescape(field(7), d)}]),
        );
    }
    let notes: Vec<Value> = notes
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| json!({"text": unescape(n, d)}))
        .collect();
    if !notes.is_empty() {
        o.insert("note".into(), Value::Array(notes));
    }
    Ok(Value::Object(o))
}

/// value[x] by OBX-2. Values that do not fit their declared type are kept as
/// valueString (with the type's text), never dropped.
fn value(
    value_type: &str,
    v: &str,
    units: &str,
    d: &Delimiters,
    t: &Tables,
) -> (&'static str, Value) {
    let text = || ("valueString", json!(unescape(v, d)));
    match value_type {
        "NM" => match decimal(v) {
            Some(n) => {
                let mut q = Map::new();
                q.insert("value".into(), n);
                quantity_units(units, d, t, &mut q);
                ("valueQuantity", Value::Object(q))
            }
            None => text(),
        },
        "ST" | "TX" | "FT" => text(),
        "CE" | "CWE" | "CNE" | "IS" => match codeable_concept(v, d, t, None) {
            Some(cc) => ("valueCodeableConcept", cc),
            None => text(),
        },
        "DT" | "DTM" | "TS" => match datetime(v, &t.default_timezone) {
            Some(dt) => ("valueDateTime", json!(dt)),
            None => text(),
        },
        "TM" => match time(v) {
            Some(tm) => ("valueTime", json!(tm)),
            None => text(),
        },
        "NR" => {
            let p = parts(v, d.component);
            match range(decimal(part(&p, 0)), decimal(part(&p, 1)), units, d, t) {
                Some(r) => ("valueRange", r),
                None => text(),
            }
        }
        "SN" => structured_numeric(v, units, d, t)
            .unwrap_or_else(|| ("valueString", json!(sn_text(v, units, d)))),
        _ => text(),
    }
}

fn quantity(value: Value, units: &str, d: &Delimiters, t: &Tables) -> Value {
    let mut q = Map::new();
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
    let (cmp, n1, sep, n2) = (
        part(&p, 0).trim(),
        part(&p, 1),
        part(&p, 2).trim(),
        part(&p, 3),
    );
    if cmp == "<>" {
        return None;
    }
    match sep {
        "" if n2.is_empty() => {
            let mut q = quantity(decimal(n1)?, units, d, t);
            match cmp {
                "" | "=" => {}
                "<" | ">" | "<=" | ">=" => q["comparator"] = json!(cmp),
                _ => return None,
            }
            Some(("valueQuantity", q))
        }
        "-" if cmp.is_empty() || cmp == "=" => {
            Some(("valueRange", range(decimal(n1), decimal(n2), units, d, t)?))
        }
        ":" | "/" if cmp.is_empty() || cmp == "=" => Some((
            "valueRatio",
            json!({"numerator": quantity(decimal(n1)?, units, d, t), "denominator": quantity(decimal(n2)?, "", d, t)}),
        )),
        _ => None,
    }
}

/// IG fallback text for SN: components and units joined by spaces.
fn sn_text(v: &str, units: &str, d: &Delimiters) -> String {
    let mut words: Vec<String> = parts(v, d.component)
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| unescape(s, d))
        .collect();
    let u = parts(units, d.component)[0];
    if !u.is_empty() {
        words.push(unescape(u, d));
    }
    words.join(" ")
}
