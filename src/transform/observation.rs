//! OBX to Observation (IG segments/OBX[Observation].csv), one per OBX, in
//! ORU^R01, ORM^O01 and any ADT that carries OBX. A repeating OBX-5 becomes
//! components (IG OBX[Observation-Component]).

use std::borrow::Cow;

use serde_json::Number;

use super::datatypes::{
    codeable_concept, datetime, decimal, first_part, has_text, is_null, parts, practitioner_ref,
    push_string, quantity_units, string, time,
};
use super::fhir::{ObsValue, Observation, Quantity, Range, Ratio, Reference, TextOnly};
use super::{resource_id, Context, MapError};
use crate::hl7::message::{Delimiters, MessageView, SegmentView};
use crate::transform::Tables;

pub(super) fn map_all<'a>(
    msg: &'a MessageView<'a>,
    ctx: &'a Context<'a>,
    out: &mut Vec<super::Resource<'a>>,
) -> Result<(), MapError> {
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
                let mut o = map_one(&seg, obr.as_ref(), &notes, n_obx, ctx)?;
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
                out.push(super::Resource::Observation(o));
            }
            _ => {}
        }
    }
    Ok(())
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
    let performer: Vec<Reference<'a>> = obx
        .field(16)
        .map(|f| {
            f.split(d.repetition)
                .filter_map(|r| practitioner_ref(r, d, t))
                .collect()
        })
        .unwrap_or_default();

    // Repetitions with nothing left (empty, or only formatting escapes) are no values.
    let units = first(6);
    let values: Vec<ObsValue<'a>> = obx
        .field(5)
        .map(|f| {
            f.split(d.repetition)
                .filter_map(|r| value(&value_type, r, units, d, t))
                .collect()
        })
        .unwrap_or_default();
    let interpretation = obx
        .field(8)
        .map(|f| {
            f.split(d.repetition)
                .filter_map(|r| codeable_concept(r, d, t, Some("0078")))
                .collect()
        })
        .unwrap_or_default();
    let reference_range = string(first(7), d)
        .map(|range| vec![TextOnly { text: range }])
        .unwrap_or_default();
    // NTE-3 repeats (FT): one note per NTE, its repetitions as lines.
    let note = notes
        .iter()
        .filter_map(|f| {
            let mut lines = String::new();
            for r in f.split(d.repetition) {
                push_string(r, d, "\n", &mut lines);
            }
            (!lines.is_empty()).then(|| TextOnly {
                text: Cow::Owned(lines),
            })
        })
        .collect();
    Ok(Observation {
        id: Cow::Owned(id),
        meta: &ctx.meta,
        status: Cow::Borrowed(status),
        code,
        subject: ctx.subject.as_ref(),
        encounter: ctx.encounter_reference.as_deref().map(|r| Reference {
            reference: Some(Cow::Borrowed(r)),
            type_: None,
            identifier: None,
            display: None,
        }),
        effective_date_time: effective,
        performer,
        values,
        interpretation,
        reference_range,
        note,
        specimen: None,
    })
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
fn value<'a>(
    value_type: &str,
    v: &'a str,
    units: &'a str,
    d: &Delimiters,
    t: &'a Tables,
) -> Option<ObsValue<'a>> {
    // Delimiters around nothing (` ^ `, `^\H\^`) are no value either.
    if !parts(v, d.component).iter().any(|c| has_text(c, d)) {
        return None;
    }
    let text = || string(v, d).map(ObsValue::String);
    match value_type {
        "NM" => match decimal(v) {
            Some(n) => Some(ObsValue::Quantity(quantity(n, units, d, t))),
            None => text(),
        },
        "ST" | "TX" | "FT" => text(),
        "CE" | "CWE" | "CNE" | "IS" => match codeable_concept(v, d, t, None) {
            Some(cc) => Some(ObsValue::CodeableConcept(cc)),
            None => text(),
        },
        // TS is DTM^precision: the value is TS-1.
        "DT" | "DTM" | "TS" => match datetime(first_part(v, d.component), &t.default_timezone) {
            Some(dt) => Some(ObsValue::DateTime(dt)),
            None => text(),
        },
        "TM" => match time(v) {
            Some(tm) => Some(ObsValue::Time(tm)),
            None => text(),
        },
        "NR" => {
            let p = parts(v, d.component);
            match range(decimal(p.get(0)), decimal(p.get(1)), units, d, t) {
                Some(r) => Some(ObsValue::Range(r)),
                None => text(),
            }
        }
        "SN" => structured_numeric(v, units, d, t)
            .or_else(|| sn_text(v, units, d).map(|s| ObsValue::String(Cow::Owned(s)))),
        _ => text(),
    }
}

fn quantity<'a>(value: Number, units: &'a str, d: &Delimiters, t: &'a Tables) -> Quantity<'a> {
    let mut q = Quantity {
        value,
        unit: None,
        system: None,
        code: None,
        comparator: None,
    };
    quantity_units(units, d, t, &mut q);
    q
}

fn range<'a>(
    low: Option<Number>,
    high: Option<Number>,
    units: &'a str,
    d: &Delimiters,
    t: &'a Tables,
) -> Option<Range<'a>> {
    if low.is_none() && high.is_none() {
        return None;
    }
    Some(Range {
        low: low.map(|l| quantity(l, units, d, t)),
        high: high.map(|h| quantity(h, units, d, t)),
    })
}

/// SN (comparator ^ num1 ^ separator ^ num2), per IG SN[Quantity], SN[Range], SN[Ratio]:
/// `^>^200` is a Quantity with comparator, `^1^-^5` a Range, `^1^:^160` a Ratio.
fn structured_numeric<'a>(
    v: &'a str,
    units: &'a str,
    d: &Delimiters,
    t: &'a Tables,
) -> Option<ObsValue<'a>> {
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
                "<" | ">" | "<=" | ">=" => q.comparator = Some(Cow::Borrowed(cmp)),
                _ => return None,
            }
            Some(ObsValue::Quantity(q))
        }
        "-" if cmp.is_empty() || cmp == "=" => Some(ObsValue::Range(range(
            decimal(n1),
            decimal(n2),
            units,
            d,
            t,
        )?)),
        ":" | "/" if cmp.is_empty() || cmp == "=" => Some(ObsValue::Ratio(Ratio {
            numerator: quantity(decimal(n1)?, units, d, t),
            denominator: quantity(decimal(n2)?, "", d, t),
        })),
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
