//! HL7 v2 datatypes to FHIR R4 datatypes, per the IG's datatype maps
//! (CWE[CodeableConcept], CX[Identifier], DTM[dateTime], NM/SN/NR, XCN, PL).
//!
//! Functions take raw (still escaped) v2 values and the message delimiters;
//! text that reaches FHIR is unescaped first.

use serde_json::{json, Map, Value};

use crate::hl7::message::Delimiters;

use super::tables::Tables;

/// Splits on a delimiter; a missing part reads as "".
pub fn parts(v: &str, sep: char) -> Vec<&str> {
    v.split(sep).collect()
}

pub fn part<'a>(p: &[&'a str], i: usize) -> &'a str {
    p.get(i).copied().unwrap_or("")
}

/// Decodes v2 escape sequences (\F\ \S\ \T\ \R\ \E\, \.br\ and \X..\ hex);
/// formatting escapes that have no text meaning (\H\ \N\ …) are dropped.
pub fn unescape(v: &str, d: &Delimiters) -> String {
    if !v.contains(d.escape) {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(start) = rest.find(d.escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + d.escape.len_utf8()..];
        let Some(end) = after.find(d.escape) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            ".br" => out.push('\n'),
            s if s.starts_with('X') => {
                let hex = &s[1..];
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
                    .collect();
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
            _ => {}
        }
        rest = &after[end + d.escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// v2 DTM/TS/DT to a FHIR dateTime, keeping the precision that was sent.
///
/// - `YYYY`, `YYYYMM`, `YYYYMMDD` stay a year, month or date.
/// - With a time, FHIR R4 requires seconds and an offset: missing minutes or
///   seconds become `:00` (R4 allows nothing coarser), fractional seconds are
///   kept as sent, and a missing offset becomes `default_tz` (e.g. `+00:00`).
/// - Anything else is not a timestamp: `None`.
pub fn datetime(v: &str, default_tz: &str) -> Option<String> {
    let v = v.trim();
    let v = v.split('^').next().unwrap_or(v); // TS: DTM^precision
    let (body, tz) = match v.find(['+', '-']) {
        Some(i) if i >= 4 => (&v[..i], Some(&v[i..])),
        Some(_) => return None,
        None => (v, None),
    };
    if tz.is_some_and(|z| z.len() != 5 || !z[1..].bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (digits, frac) = match body.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (body, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14)
    {
        return None;
    }
    if frac.is_some_and(|f| f.is_empty() || f.len() > 4 || !f.bytes().all(|b| b.is_ascii_digit()))
        || (frac.is_some() && digits.len() != 14)
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).and_then(|s| s.parse::<u32>().ok());
    let (month, day) = (n(4..6), n(6..8));
    if month.is_some_and(|m| !(1..=12).contains(&m)) || day.is_some_and(|d| !(1..=31).contains(&d))
    {
        return None;
    }
    let mut out = digits[..4].to_owned();
    if digits.len() >= 6 {
        out.push('-');
        out.push_str(&digits[4..6]);
    }
    if digits.len() >= 8 {
        out.push('-');
        out.push_str(&digits[6..8]);
    }
    if digits.len() <= 8 {
        return Some(out); // a date stays a date; an offset on a date is dropped by FHIR's rules
    }
    let (h, m, s) = (n(8..10)?, n(10..12).unwrap_or(0), n(12..14).unwrap_or(0));
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    out.push_str(&format!("T{h:02}:{m:02}:{s:02}"));
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    match tz {
        Some(z) => {
            out.push_str(&z[..3]);
            out.push(':');
            out.push_str(&z[3..]);
        }
        None => out.push_str(default_tz),
    }
    Some(out)
}

/// v2 TM to FHIR time (`hh:mm:ss`, no offset in FHIR).
pub fn time(v: &str) -> Option<String> {
    let v = v.trim();
    let body = v.split(['+', '-']).next().unwrap_or(v);
    let (digits, frac) = body
        .split_once('.')
        .map_or((body, None), |(d, f)| (d, Some(f)));
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4 | 6) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| {
        digits
            .get(r)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (h, m, s) = (n(0..2), n(2..4), n(4..6));
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let mut out = format!("{h:02}:{m:02}:{s:02}");
    if let Some(f) = frac.filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())) {
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}

/// A FHIR decimal from a v2 NM, as a JSON number (None when not a number).
pub fn decimal(v: &str) -> Option<Value> {
    let t = v.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    let ok = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && t.bytes().filter(|&b| b == b'.').count() <= 1
        && !t[1..].contains('-')
        && t.bytes().any(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    serde_json::from_str::<serde_json::Number>(&normalise_decimal(t))
        .ok()
        .map(Value::Number)
}

fn normalise_decimal(t: &str) -> String {
    let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
    let t = t.trim_start_matches('0');
    let t = if t.is_empty() || t.starts_with('.') {
        format!("0{t}")
    } else {
        t.to_owned()
    };
    let t = t.strip_suffix('.').map(str::to_owned).unwrap_or(t);
    if neg {
        format!("-{t}")
    } else {
        t
    }
}

/// One coding (code, display, v2 coding-system name) as FHIR.
fn coding(
    code: &str,
    display: &str,
    system: &str,
    version: &str,
    d: &Delimiters,
    t: &Tables,
    default_table: Option<&str>,
) -> Option<Value> {
    if code.is_empty() && display.is_empty() {
        return None;
    }
    let mut c = Map::new();
    let system = if system.is_empty() {
        default_table.map(|t| format!("HL7{t}")).unwrap_or_default()
    } else {
        system.to_owned()
    };
    if let Some(uri) = t.system_uri(&system) {
        c.insert("system".into(), json!(uri));
    }
    if !version.is_empty() {
        c.insert("version".into(), json!(unescape(version, d)));
    }
    if !code.is_empty() {
        c.insert("code".into(), json!(unescape(code, d).trim()));
    }
    if !display.is_empty() {
        c.insert("display".into(), json!(unescape(display, d)));
    }
    Some(Value::Object(c))
}

/// CWE/CE/CNE to CodeableConcept (IG CWE[CodeableConcept]). `default_table`
/// (e.g. "0078") names the v2 table when CWE-3 is empty, so an unknown code
/// still carries its table's system rather than being dropped.
pub fn codeable_concept(
    v: &str,
    d: &Delimiters,
    t: &Tables,
    default_table: Option<&str>,
) -> Option<Value> {
    let p = parts(v, d.component);
    // CWE triplets: (code, display, system, version) for codings 1, 2 and 3.
    let triplets: [(usize, usize, usize, usize, Option<&str>); 3] = [
        (0, 1, 2, 6, default_table),
        (3, 4, 5, 7, None),
        (9, 10, 11, 12, None),
    ];
    let codings: Vec<Value> = triplets
        .iter()
        .filter_map(|&(c, dsp, sys, ver, table)| {
            coding(
                part(&p, c),
                part(&p, dsp),
                part(&p, sys),
                part(&p, ver),
                d,
                t,
                table,
            )
        })
        .collect();
    let text = part(&p, 8);
    if codings.is_empty() && text.is_empty() {
        return None;
    }
    let mut cc = Map::new();
    if !codings.is_empty() {
        cc.insert("coding".into(), Value::Array(codings));
    }
    if !text.is_empty() {
        cc.insert("text".into(), json!(unescape(text, d)));
    }
    Some(Value::Object(cc))
}

/// CWE units to the unit/system/code part of a Quantity (IG CWE[Quantity]).
pub fn quantity_units(units: &str, d: &Delimiters, t: &Tables, q: &mut Map<String, Value>) {
    let p = parts(units, d.component);
    let (code, text, system) = (part(&p, 0), part(&p, 1), part(&p, 2));
    let unit = if text.is_empty() { code } else { text };
    if !unit.is_empty() {
        q.insert("unit".into(), json!(unescape(unit, d)));
    }
    if !code.is_empty() && !system.is_empty() {
        if let Some(uri) = t.system_uri(system) {
            q.insert("system".into(), json!(uri));
            q.insert("code".into(), json!(unescape(code, d)));
        }
    }
}

/// CX to Identifier (IG CX[Identifier]): value, system from the assigning
/// authority, type from CX-5 (table 0203).
pub fn identifier(v: &str, d: &Delimiters, t: &Tables) -> Option<Value> {
    let p = parts(v, d.component);
    let value = part(&p, 0);
    if value.is_empty() {
        return None;
    }
    let mut id = Map::new();
    let auth = parts(part(&p, 3), d.subcomponent);
    let system = match (part(&auth, 0), part(&auth, 1), part(&auth, 2)) {
        (_, uid, ty) if !uid.is_empty() && ty.eq_ignore_ascii_case("ISO") => {
            Some(format!("urn:oid:{uid}"))
        }
        (_, uid, _) if uid.contains("://") => Some(uid.to_owned()),
        (ns, _, _) if !ns.is_empty() => Some(t.authority_uri(&unescape(ns, d))),
        (_, uid, _) if !uid.is_empty() => Some(t.authority_uri(&unescape(uid, d))),
        _ => None,
    };
    let ty = part(&p, 4);
    if !ty.is_empty() {
        id.insert("type".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": ty}]}));
    }
    if let Some(s) = system {
        id.insert("system".into(), json!(s));
    }
    id.insert("value".into(), json!(unescape(value, d)));
    Some(Value::Object(id))
}

/// XCN to a Reference to the Practitioner, by identifier and name (the IG maps
/// XCN to a Practitioner resource; this stage emits only Encounter and
/// Observation, so the practitioner travels as a logical reference).
pub fn practitioner_ref(v: &str, d: &Delimiters, t: &Tables) -> Option<Value> {
    let p = parts(v, d.component);
    let (id, family, given) = (part(&p, 0), part(&p, 1), part(&p, 2));
    if id.is_empty() && family.is_empty() && given.is_empty() {
        return None;
    }
    let mut r = Map::new();
    r.insert("type".into(), json!("Practitioner"));
    if !id.is_empty() {
        let mut ident = Map::new();
        let auth = parts(part(&p, 8), d.subcomponent);
        if !part(&auth, 0).is_empty() {
            ident.insert(
                "system".into(),
                json!(t.authority_uri(&unescape(part(&auth, 0), d))),
            );
        }
        ident.insert("value".into(), json!(unescape(id, d)));
        r.insert("identifier".into(), Value::Object(ident));
    }
    let name: Vec<String> = [part(&p, 5), given, part(&p, 3), family]
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| unescape(s, d))
        .collect();
    if !name.is_empty() {
        r.insert("display".into(), json!(name.join(" ")));
    }
    Some(Value::Object(r))
}

/// PL to a Location reference with a readable display (point of care, room, bed, facility).
pub fn location_ref(v: &str, d: &Delimiters) -> Option<Value> {
    let p = parts(v, d.component);
    let names: Vec<String> = [0, 1, 2, 3]
        .iter()
        .map(|&i| part(&p, i))
        .filter(|s| !s.is_empty())
        .map(|s| unescape(parts(s, d.subcomponent)[0], d))
        .collect();
    if names.is_empty() {
        return None;
    }
    Some(json!({"type": "Location", "display": names.join(" ")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_precision_and_offset() {
        let tz = "+00:00";
        assert_eq!(datetime("2026", tz).as_deref(), Some("2026"));
        assert_eq!(datetime("202611", tz).as_deref(), Some("2026-11"));
        assert_eq!(datetime("20261101", tz).as_deref(), Some("2026-11-01"));
        assert_eq!(
            datetime("202611011230", tz).as_deref(),
            Some("2026-11-01T12:30:00+00:00")
        );
        assert_eq!(
            datetime("20261101123015.25-0500", tz).as_deref(),
            Some("2026-11-01T12:30:15.25-05:00")
        );
        assert_eq!(
            datetime("20261101123015+0100", "-05:00").as_deref(),
            Some("2026-11-01T12:30:15+01:00"),
            "a sent offset wins"
        );
        assert_eq!(
            datetime("20261101123015", "-05:00").as_deref(),
            Some("2026-11-01T12:30:15-05:00")
        );
        for bad in [
            "",
            "2026-11-01",
            "20261301",
            "2026110112301",
            "abc",
            "20261101250000",
        ] {
            assert_eq!(datetime(bad, tz), None, "{bad}");
        }
    }

    #[test]
    fn decimals_are_json_numbers() {
        assert_eq!(decimal("182"), Some(json!(182)));
        assert_eq!(decimal("0.50"), Some(serde_json::from_str("0.50").unwrap()));
        assert_eq!(decimal(".5"), Some(serde_json::from_str("0.5").unwrap()));
        assert_eq!(decimal("-3"), Some(json!(-3)));
        assert_eq!(decimal("POS"), None);
        assert_eq!(decimal("1-2"), None);
    }

    #[test]
    fn escapes_are_decoded() {
        let d = Delimiters::default();
        assert_eq!(unescape("a\\F\\b\\S\\c\\.br\\d\\E\\", &d), "a|b^c\nd\\");
        assert_eq!(unescape("\\H\\bold\\N\\", &d), "bold");
        assert_eq!(unescape("\\X41\\", &d), "A");
    }
}
