//! OBX value[x] (IG OBX[Observation], OBX-5 and OBX-6 rows) and ED/RP
//! values as Attachments (IG datatypes/ED[Attachment].csv, RP[Attachment].csv).

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::Number;

use super::super::datatypes::{
    code, codeable_concept, concept_of, datetime, decimal, first_part, has_text, parts,
    push_string, quantity_units, string, time, uri_as_sent,
};
use super::super::fhir::{Attachment, Extension, ExtensionValue, ObsValue, Quantity, Range, Ratio};
use crate::hl7::message::Delimiters;
use crate::transform::Tables;

/// value[x] by OBX-2. Values that do not fit their declared type are kept as
/// valueString (with the type's text), never dropped; `None` only when
/// nothing is left (FHIR has no empty strings).
pub(super) fn value<'a>(
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

/// An ED or RP repetition of OBX-5 as an Attachment; `None` when nothing
/// is left. `n` is the OBX's position, for content-free warnings.
pub(super) fn attachment<'a>(
    value_type: &str,
    v: &'a str,
    n: usize,
    d: &Delimiters,
) -> Option<Attachment<'a>> {
    let p = parts(v, d.component);
    let a = if value_type == "RP" {
        // RP-1 pointer, RP-3 type and RP-4 subtype: contentType "RP-3/RP-4".
        let url = string(p.get(0), d).and_then(|u| match uri_as_sent(&u) {
            Some(_) => Some(u),
            None => {
                tracing::warn!(
                    field = "OBX-5.1",
                    obx = n,
                    "RP pointer is not a URL: omitted"
                );
                None
            }
        });
        Attachment {
            extension: Vec::new(),
            content_type: media_type(p.get(2), p.get(3), d),
            data: None,
            url,
        }
    } else {
        // ED-2 type, ED-3 subtype, ED-4 encoding, ED-5 data. Without a
        // subtype, ED-2 (table 0191) is the IG's alternate code on the Attachment.
        let subtype = code(p.get(2), d);
        let extension = match (&subtype, code(p.get(1), d)) {
            (None, Some(kind)) => vec![Extension {
                url: super::ALTERNATE_CODES,
                value: ExtensionValue::CodeableConcept(concept_of(
                    "http://terminology.hl7.org/CodeSystem/v2-0191",
                    kind,
                    None,
                )),
            }],
            _ => Vec::new(),
        };
        Attachment {
            extension,
            content_type: media_type(p.get(1), p.get(2), d),
            data: base64_data(p.get(3), p.get(4), n, d),
            url: None,
        }
    };
    (!a.extension.is_empty() || a.content_type.is_some() || a.data.is_some() || a.url.is_some())
        .then_some(a)
}

/// A MIME type from v2's type and subtype (`application` and `pdf`, or a
/// subtype that already is `application/pdf`). The IG maps the subtype
/// alone, which is not a MIME type; consumers need the whole one.
fn media_type<'a>(kind: &'a str, subtype: &'a str, d: &Delimiters) -> Option<Cow<'a, str>> {
    let sub = code(subtype, d)?;
    let full = match code(kind, d) {
        Some(k) if !sub.contains('/') => format!("{k}/{sub}"),
        _ => sub.into_owned(),
    };
    // A FHIR code has no whitespace runs; a MIME type has none at all.
    (!full.contains(char::is_whitespace)).then(|| Cow::Owned(full.to_ascii_lowercase()))
}

/// ED-5 as base64Binary, by ED-4: Base64 as sent (whitespace removed), A
/// (text) and Hex encoded to Base64 (IG ED[Attachment]: "convert from A or
/// HEX to binary64"). Data that does not decode is omitted, with a warning
/// that names the field, never the data.
fn base64_data<'a>(
    encoding: &str,
    data: &'a str,
    n: usize,
    d: &Delimiters,
) -> Option<Cow<'a, str>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let encoded = match encoding.trim().to_ascii_uppercase().as_str() {
        "BASE64" => {
            let compact: Cow<'a, str> = if data.contains(char::is_whitespace) {
                Cow::Owned(data.split_whitespace().collect())
            } else {
                Cow::Borrowed(data)
            };
            b64.decode(compact.as_bytes()).ok().map(|_| compact)
        }
        "A" => string(data, d).map(|text| Cow::Owned(b64.encode(text.as_bytes()))),
        "HEX" => hex(data.trim()).map(|bytes| Cow::Owned(b64.encode(bytes))),
        _ => None,
    };
    let encoded = encoded.filter(|e| !e.is_empty());
    if encoded.is_none() && !data.trim().is_empty() {
        tracing::warn!(
            field = "OBX-5.5",
            obx = n,
            "ED data cannot be decoded: omitted"
        );
    }
    encoded
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(a: Option<Attachment<'_>>) -> serde_json::Value {
        serde_json::to_value(a).unwrap()
    }

    #[test]
    fn an_ed_becomes_an_attachment_with_a_mime_type_and_base64_data() {
        let d = Delimiters::default();
        assert_eq!(
            json(attachment(
                "ED",
                "APP^application^PDF^Base64^JVBE Ri0x",
                1,
                &d
            )),
            serde_json::json!({"contentType": "application/pdf", "data": "JVBERi0x"}),
            "whitespace in the Base64 is dropped, the MIME type lower-cased"
        );
        assert_eq!(
            json(attachment("ED", "^TEXT^^Hex^48690A", 1, &d)),
            serde_json::json!({
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/alternate-codes",
                  "valueCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0191", "code": "TEXT"}]}}],
                "data": "SGkK"
            }),
            "Hex is re-encoded; without a subtype, ED-2 is an alternate code"
        );
    }

    #[test]
    fn ed_data_that_does_not_decode_is_omitted_and_nothing_left_is_no_attachment() {
        let d = Delimiters::default();
        assert_eq!(
            json(attachment(
                "ED",
                "^application^pdf^Base64^not base64!",
                1,
                &d
            )),
            serde_json::json!({"contentType": "application/pdf"})
        );
        assert!(attachment("ED", "^^^Base64^", 1, &d).is_none());
        assert!(attachment("ED", "^^^Hex^ABC", 1, &d).is_none(), "odd hex");
    }

    #[test]
    fn an_rp_is_a_url_with_type_and_subtype_and_a_pointer_with_spaces_is_no_url() {
        let d = Delimiters::default();
        assert_eq!(
            json(attachment(
                "RP",
                "https://x.example/a.jpg^PACS^IMAGE^JPEG",
                1,
                &d
            )),
            serde_json::json!({"contentType": "image/jpeg", "url": "https://x.example/a.jpg"})
        );
        assert_eq!(
            json(attachment("RP", "a b^PACS^image^jpeg", 1, &d)),
            serde_json::json!({"contentType": "image/jpeg"})
        );
    }
}
