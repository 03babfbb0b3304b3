//! HL7 v2 datatypes to FHIR R4 datatypes, per the IG's datatype maps
//! (CWE[CodeableConcept], CX[Identifier], DTM[dateTime], NM/SN/NR, XCN, PL).
//!
//! Functions take raw (still escaped) v2 values and the message delimiters;
//! text that reaches FHIR is unescaped first.

use std::borrow::Cow;

use serde_json::Number;

use crate::hl7::message::Delimiters;

use super::fhir::{CodeableConcept, Coding, Identifier, Quantity, Reference, Text};
use super::tables::Tables;

/// How many parts [`Parts`] keeps at hand; later ones are found by splitting again.
const KEPT: usize = 16;

/// A value split on a delimiter, without allocating: a missing part reads as "".
pub struct Parts<'a> {
    v: &'a str,
    sep: char,
    first: [&'a str; KEPT],
    /// Parts in `first`; `KEPT` means there may be more.
    n: usize,
}

impl<'a> Parts<'a> {
    /// Part `i` (0-based), or "" when there are fewer parts.
    pub fn get(&self, i: usize) -> &'a str {
        if i < self.n {
            self.first[i]
        } else if self.n < KEPT {
            ""
        } else {
            self.v.split(self.sep).nth(i).unwrap_or("")
        }
    }

    /// Every part, in order (at least one: "" splits into [""]).
    pub fn iter(&self) -> std::str::Split<'a, char> {
        self.v.split(self.sep)
    }
}

/// Splits on a delimiter; a missing part reads as "".
pub fn parts(v: &str, sep: char) -> Parts<'_> {
    let mut first = [""; KEPT];
    let mut n = 0;
    match u8::try_from(sep) {
        // Delimiters are ASCII (checked when MSH is read): one byte loop over
        // a short value is much cheaper than `str::split`'s searcher per part,
        // and an ASCII byte is always a char boundary.
        Ok(s) if s.is_ascii() => {
            let mut start = 0;
            for (i, &b) in v.as_bytes().iter().enumerate() {
                if b == s {
                    first[n] = v.get(start..i).unwrap_or("");
                    n += 1;
                    start = i + 1;
                    if n == KEPT {
                        // More follow: `get` splits again for those.
                        return Parts { v, sep, first, n };
                    }
                }
            }
            first[n] = v.get(start..).unwrap_or("");
            n += 1;
        }
        _ => {
            for (slot, p) in first.iter_mut().zip(v.split(sep)) {
                *slot = p;
                n += 1;
            }
        }
    }
    Parts { v, sep, first, n }
}

/// The first part (what `parts(v, sep).get(0)` is), e.g. TS-1 of a TS.
pub fn first_part(v: &str, sep: char) -> &str {
    match u8::try_from(sep) {
        Ok(s) if s.is_ascii() => match v.bytes().position(|b| b == s) {
            Some(i) => v.get(..i).unwrap_or(""),
            None => v,
        },
        _ => v.split(sep).next().unwrap_or(""),
    }
}

/// Decodes v2 escape sequences (\F\ \S\ \T\ \R\ \E\, \.br\ and \X..\ hex);
/// formatting escapes that have no text meaning (\H\ \N\ …) are dropped.
/// Borrows `v` when it has no escape sequence.
pub fn unescape<'a>(v: &'a str, d: &Delimiters) -> Cow<'a, str> {
    if !v.contains(d.escape) {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(start) = rest.find(d.escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + d.escape.len_utf8()..];
        let Some(end) = after.find(d.escape) else {
            out.push_str(&rest[start..]);
            return Cow::Owned(out);
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
    Cow::Owned(out)
}

/// Whitespace as the FHIR schema's patterns see it: ECMA-262 `\s`, which is
/// Unicode White_Space plus U+FEFF.
fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// The v2 explicit null `""` ("delete this value"): no value in FHIR.
pub fn is_null(raw: &str) -> bool {
    raw.trim() == "\"\""
}

/// Raw (escaped) v2 text as a FHIR `string`, or `None` when nothing is left.
///
/// FHIR has no empty strings, so text that is empty after unescaping and
/// trimming (e.g. only formatting escapes like `\H\\N\`, or spaces), or the
/// v2 null `""`, is no value at all: the caller omits the element.
/// Characters a FHIR string may not carry are cleaned: whitespace other than
/// space, tab, CR and LF (NBSP, line separator, form feed, …) becomes a
/// space, control characters and U+FEFF are dropped.
/// Borrows `raw` when nothing had to change but trimming.
pub fn string<'a>(raw: &'a str, d: &Delimiters) -> Option<Text<'a>> {
    if is_null(raw) {
        return None;
    }
    match unescape(raw, d) {
        Cow::Borrowed(s) => cleaned(s),
        Cow::Owned(s) => cleaned(&s).map(|c| Cow::Owned(c.into_owned())),
    }
}

/// Whether [`string`] leaves anything (`string(raw, d).is_some()`), mostly
/// without allocating.
pub fn has_text(raw: &str, d: &Delimiters) -> bool {
    if is_null(raw) {
        return false;
    }
    let u = unescape(raw, d);
    if u.bytes().all(plain) {
        !u.trim().is_empty()
    } else {
        cleaned(&u).is_some()
    }
}

/// A byte that [`cleaned`] keeps as it is: printable ASCII, tab, CR, LF.
fn plain(b: u8) -> bool {
    matches!(b, b' '..=b'~' | b'\t' | b'\r' | b'\n')
}

/// Unescaped text cleaned and trimmed (see [`string`]).
fn cleaned(s: &str) -> Option<Cow<'_, str>> {
    if s.bytes().all(plain) {
        // Nothing to clean (the usual case): no allocation.
        let t = s.trim();
        return (!t.is_empty()).then_some(Cow::Borrowed(t));
    }
    let cleaned: String = s
        .chars()
        .filter_map(|c| match c {
            ' ' | '\t' | '\r' | '\n' => Some(c),
            '\u{feff}' => None,
            c if is_space(c) => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    let t = cleaned.trim();
    (!t.is_empty()).then(|| Cow::Owned(t.to_owned()))
}

/// Raw v2 text as a FHIR `code` (`[^\s]+( [^\s]+)*`): a [`string`] with
/// every run of whitespace made one space. `None` when nothing is left.
pub fn code<'a>(raw: &'a str, d: &Delimiters) -> Option<Text<'a>> {
    let s = string(raw, d)?;
    // After `string`, the only whitespace left is space, tab, CR and LF.
    if !s.contains(['\t', '\r', '\n']) && !s.contains("  ") {
        return Some(s);
    }
    Some(Cow::Owned(
        s.split_whitespace().collect::<Vec<_>>().join(" "),
    ))
}

/// [`Tables::system_uri`] for text that may be borrowed or owned.
fn system_uri<'a>(t: &'a Tables, name: Text<'a>) -> Option<Text<'a>> {
    match name {
        Cow::Borrowed(n) => t.system_uri(n),
        Cow::Owned(n) => t.system_uri(&n).map(|u| Cow::Owned(u.into_owned())),
    }
}

/// A URI as sent (a FHIR `uri` has no whitespace), or `None`.
pub fn uri_as_sent(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains(is_space)).then_some(s)
}

/// An OID (`urn:oid:` takes `[0-2](\.(0|[1-9][0-9]*))+`).
fn is_oid(s: &str) -> bool {
    let mut arcs = s.split('.');
    matches!(arcs.next(), Some("0" | "1" | "2"))
        && s.contains('.')
        && arcs.all(|a| {
            !a.is_empty()
                && a.bytes().all(|b| b.is_ascii_digit())
                && (a == "0" || !a.starts_with('0'))
        })
}

/// A v2 offset `+HHMM` / `-HHMM` as FHIR's `+hh:mm`, or `None` when it is not
/// one: four digits, minutes below 60, and within FHIR's range (-14:00 to
/// +14:00; the schema allows nothing past 14:00).
pub fn offset(z: &str) -> Option<String> {
    let (sign, hh, mm) = offset_parts(z)?;
    let mut out = String::with_capacity(6);
    for p in [sign, hh, ":", mm] {
        out.push_str(p);
    }
    Some(out)
}

/// [`offset`]'s checks; the sign, the two hour digits and the two minute digits.
fn offset_parts(z: &str) -> Option<(&str, &str, &str)> {
    let (sign, digits) = (z.get(..1)?, z.get(1..)?);
    if !matches!(sign, "+" | "-")
        || digits.len() != 4
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (hh, mm) = digits.split_at(2);
    let (h, m): (u32, u32) = (hh.parse().ok()?, mm.parse().ok()?);
    if m > 59 || h > 14 || (h == 14 && m != 0) {
        return None;
    }
    Some((sign, hh, mm))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// v2 DTM/DT (or TS-1: callers split off TS-2) to a FHIR dateTime, keeping
/// the precision that was sent.
///
/// - `YYYY`, `YYYYMM`, `YYYYMMDD` stay a year, month or date.
/// - With a time, FHIR R4 requires seconds and an offset: missing minutes or
///   seconds become `:00` (R4 allows nothing coarser), fractional seconds
///   (1-4 digits, only after seconds, as v2 allows) are kept as sent, and a
///   missing offset becomes `default_tz` (e.g. `+00:00`).
/// - Every part is range-checked: year 0001-9999, month 1-12, a day that
///   exists in that month, hour < 24, minute < 60, second < 60, and an offset
///   whose hours are at most 14 and minutes below 60 (see [`offset`]).
///
/// Anything else is not a timestamp: `None`, never an invalid dateTime. The
/// callers' choice for an invalid value: an optional element (OBX-14, OBR-7,
/// PV1-44, PV1-45) is omitted, with a content-free warning; an OBX-5 value
/// is kept as `valueString`, like any value that does not fit its type.
pub fn datetime(v: &str, default_tz: &str) -> Option<String> {
    let v = v.trim();
    let (body, tz) = match v.find(['+', '-']) {
        Some(i) => (&v[..i], Some(offset_parts(&v[i..])?)),
        None => (v, None),
    };
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
    let year = n(0..4)?;
    let (month, day) = (n(4..6), n(6..8));
    if year == 0
        || month.is_some_and(|m| !(1..=12).contains(&m))
        || day.is_some_and(|d| d == 0 || d > days_in_month(year, month.unwrap_or(1)))
    {
        return None;
    }
    let mut out = String::with_capacity(32);
    out.push_str(&digits[..4]);
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
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    // Two digits each, as sent; a missing minute or second is `00`.
    let two = |r: std::ops::Range<usize>| digits.get(r).unwrap_or("00");
    for p in ["T", two(8..10), ":", two(10..12), ":", two(12..14)] {
        out.push_str(p);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    match tz {
        Some((sign, hh, mm)) => {
            for p in [sign, hh, ":", mm] {
                out.push_str(p);
            }
        }
        None => out.push_str(default_tz),
    }
    Some(out)
}

/// v2 TM (`HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ]`) to a FHIR time (`hh:mm:ss[.s]`).
///
/// FHIR time requires seconds, so missing minutes or seconds become `:00`; a
/// fraction belongs to seconds only (as in v2) and is kept as sent, never
/// attached to a coarser time. FHIR time has no offset: a valid one is
/// dropped. Out-of-range parts, a fraction without seconds, or a malformed
/// offset: `None`.
pub fn time(v: &str) -> Option<String> {
    let v = v.trim();
    let body = match v.find(['+', '-']) {
        Some(i) => {
            offset(&v[i..])?;
            &v[..i]
        }
        None => v,
    };
    let (digits, frac) = body
        .split_once('.')
        .map_or((body, None), |(d, f)| (d, Some(f)));
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4 | 6) {
        return None;
    }
    if frac.is_some_and(|f| {
        digits.len() != 6 || f.is_empty() || f.len() > 4 || !f.bytes().all(|b| b.is_ascii_digit())
    }) {
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
    let two = |r: std::ops::Range<usize>| digits.get(r).unwrap_or("00");
    let mut out = String::with_capacity(16);
    for p in [two(0..2), ":", two(2..4), ":", two(4..6)] {
        out.push_str(p);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}

/// A FHIR decimal from a v2 NM, as a JSON number (None when not a number).
pub fn decimal(v: &str) -> Option<Number> {
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
    serde_json::from_str::<Number>(&normalise_decimal(t)).ok()
}

fn normalise_decimal(t: &str) -> String {
    let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
    let t = t.trim_start_matches('0');
    // (At most one '.': dropping a trailing one first gives the same text.)
    let t = t.strip_suffix('.').unwrap_or(t);
    let mut out = String::with_capacity(t.len() + 2);
    if neg {
        out.push('-');
    }
    if t.is_empty() || t.starts_with('.') {
        out.push('0');
    }
    out.push_str(t);
    out
}

/// One coding (code, display, v2 coding-system name) as FHIR; `None` when
/// neither a code nor a display is left after cleaning.
fn coding<'a>(
    code_raw: &'a str,
    display: &'a str,
    system: &'a str,
    version: &'a str,
    d: &Delimiters,
    t: &'a Tables,
    default_table: Option<&str>,
) -> Option<Coding<'a>> {
    let (code, display) = (code(code_raw, d), string(display, d));
    if code.is_none() && display.is_none() {
        return None;
    }
    let system = match string(system, d) {
        Some(s) => system_uri(t, s),
        None => default_table.and_then(|table| t.table_uri_cow(table)),
    };
    Some(Coding {
        system,
        version: string(version, d),
        code,
        display,
    })
}

/// CWE/CE/CNE to CodeableConcept (IG CWE[CodeableConcept]). `default_table`
/// (e.g. "0078") names the v2 table when CWE-3 is empty, so an unknown code
/// still carries its table's system rather than being dropped. Codings with
/// nothing left are dropped; with no coding and no text, `None`.
pub fn codeable_concept<'a>(
    v: &'a str,
    d: &Delimiters,
    t: &'a Tables,
    default_table: Option<&str>,
) -> Option<CodeableConcept<'a>> {
    let p = parts(v, d.component);
    // CWE triplets: (code, display, system, version) for codings 1, 2 and 3.
    let triplets: [(usize, usize, usize, usize, Option<&str>); 3] = [
        (0, 1, 2, 6, default_table),
        (3, 4, 5, 7, None),
        (9, 10, 11, 12, None),
    ];
    let mut codings = Vec::new();
    for &(c, dsp, sys, ver, table) in &triplets {
        codings.extend(coding(
            p.get(c),
            p.get(dsp),
            p.get(sys),
            p.get(ver),
            d,
            t,
            table,
        ));
    }
    let text = string(p.get(8), d);
    if codings.is_empty() && text.is_none() {
        return None;
    }
    Some(CodeableConcept {
        coding: codings,
        text,
    })
}

/// CWE units to the unit/system/code part of a Quantity (IG CWE[Quantity]).
pub fn quantity_units<'a>(units: &'a str, d: &Delimiters, t: &'a Tables, q: &mut Quantity<'a>) {
    let p = parts(units, d.component);
    let (code, text) = (code(p.get(0), d), string(p.get(1), d));
    let system = string(p.get(2), d).and_then(|s| system_uri(t, s));
    match (text, code, system) {
        (Some(unit), Some(code), Some(uri)) => {
            q.unit = Some(unit);
            q.system = Some(uri);
            q.code = Some(code);
        }
        (None, Some(code), Some(uri)) => {
            q.unit = Some(code.clone());
            q.system = Some(uri);
            q.code = Some(code);
        }
        (text, code, _) => {
            if let Some(unit) = text.or(code) {
                q.unit = Some(unit);
            }
        }
    }
}

/// `{"coding": [{"system": <system>, "code": <code>}]}` (and `text` when given).
pub fn concept_of<'a>(
    system: &'static str,
    code: Text<'a>,
    text: Option<&'static str>,
) -> CodeableConcept<'a> {
    CodeableConcept {
        coding: vec![Coding {
            system: Some(Cow::Borrowed(system)),
            version: None,
            code: Some(code),
            display: None,
        }],
        text: text.map(Cow::Borrowed),
    }
}

/// CX to Identifier (IG CX[Identifier]): value, system from the assigning
/// authority, type from CX-5 (table 0203). `None` without a value.
pub fn identifier<'a>(v: &'a str, d: &Delimiters, t: &Tables) -> Option<Identifier<'a>> {
    let p = parts(v, d.component);
    let value = string(p.get(0), d)?;
    let auth = parts(p.get(3), d.subcomponent);
    Some(Identifier {
        type_: code(p.get(4), d)
            .map(|ty| concept_of("http://terminology.hl7.org/CodeSystem/v2-0203", ty, None)),
        system: authority_system(auth.get(0), auth.get(1), auth.get(2), d, t),
        value,
    })
}

/// An assigning authority (HD: namespace, universal ID, its type) as an
/// identifier system: an ISO OID as `urn:oid:`, a URI as sent, a name as
/// [`Tables::authority_uri`].
pub(super) fn authority_system<'a>(
    namespace: &'a str,
    universal_id: &'a str,
    id_type: &str,
    d: &Delimiters,
    t: &Tables,
) -> Option<Text<'a>> {
    let (ns, uid) = (string(namespace, d), string(universal_id, d));
    let iso = id_type.trim().eq_ignore_ascii_case("ISO");
    match (ns, uid) {
        (_, Some(uid)) if iso && is_oid(&uid) => Some(Cow::Owned(format!("urn:oid:{uid}"))),
        (_, Some(uid)) if uid.contains("://") && uri_as_sent(&uid).is_some() => Some(uid),
        (Some(ns), _) => Some(Cow::Owned(t.authority_uri(&ns))),
        (None, Some(uid)) => Some(Cow::Owned(t.authority_uri(&uid))),
        (None, None) => None,
    }
}

/// EI to Identifier (IG EI[Identifier-Extension]): EI-1 the value, EI-2 to
/// EI-4 (the assigning authority) the system. `sep` is the component
/// delimiter, or the subcomponent one for an EI inside an EIP.
pub fn entity_identifier<'a>(
    v: &'a str,
    sep: char,
    d: &Delimiters,
    t: &Tables,
) -> Option<Identifier<'a>> {
    let p = parts(v, sep);
    Some(Identifier {
        type_: None,
        system: authority_system(p.get(1), p.get(2), p.get(3), d, t),
        value: string(p.get(0), d)?,
    })
}

/// CWE to its first Coding (IG CWE[Coding]), `default_table` as in
/// [`codeable_concept`].
pub fn first_coding<'a>(
    v: &'a str,
    d: &Delimiters,
    t: &'a Tables,
    default_table: Option<&str>,
) -> Option<Coding<'a>> {
    let p = parts(v, d.component);
    coding(p.get(0), p.get(1), p.get(2), p.get(6), d, t, default_table)
}

/// Appends [`string`]`(raw)` to `out`, after `sep` unless `out` is empty:
/// what joining the non-`None` strings with `sep` gives, without a string
/// per part. False (and `out` unchanged) when nothing is left.
pub fn push_string(raw: &str, d: &Delimiters, sep: &str, out: &mut String) -> bool {
    if is_null(raw) {
        return false;
    }
    let u = unescape(raw, d);
    let mut push = |t: &str| {
        if !out.is_empty() {
            out.push_str(sep);
        }
        out.push_str(t);
    };
    if u.bytes().all(plain) {
        let t = u.trim();
        if t.is_empty() {
            return false;
        }
        push(t);
    } else {
        let Some(c) = cleaned(&u) else {
            return false;
        };
        push(&c);
    }
    true
}

/// XCN to a Reference to the Practitioner, by identifier and name (the IG maps
/// XCN to a Practitioner resource; this stage emits only Encounter and
/// Observation, so the practitioner travels as a logical reference).
pub fn practitioner_ref<'a>(v: &'a str, d: &Delimiters, t: &Tables) -> Option<Reference<'a>> {
    let p = parts(v, d.component);
    let id = string(p.get(0), d);
    // XCN-2 is FN: its first subcomponent is the surname.
    let family = first_part(p.get(1), d.subcomponent);
    let mut name = String::new();
    for s in [p.get(5), p.get(2), p.get(3), family] {
        push_string(s, d, " ", &mut name);
    }
    if id.is_none() && name.is_empty() {
        return None;
    }
    let identifier = id.map(|id| {
        let auth = first_part(p.get(8), d.subcomponent);
        Identifier {
            type_: None,
            system: string(auth, d).map(|ns| Cow::Owned(t.authority_uri(&ns))),
            value: id,
        }
    });
    Some(Reference {
        reference: None,
        type_: Some("Practitioner"),
        identifier,
        display: (!name.is_empty()).then_some(Cow::Owned(name)),
    })
}

/// PL to a Location reference with a readable display (point of care, room, bed, facility).
pub fn location_ref<'a>(v: &'a str, d: &Delimiters) -> Option<Reference<'a>> {
    let p = parts(v, d.component);
    let mut names = String::new();
    for i in 0..4 {
        push_string(first_part(p.get(i), d.subcomponent), d, " ", &mut names);
    }
    if names.is_empty() {
        return None;
    }
    Some(Reference {
        reference: None,
        type_: Some("Location"),
        identifier: None,
        display: Some(Cow::Owned(names)),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parts_split_as_str_split_does() {
        let long = "a^".repeat(20);
        for v in [
            "",
            "^",
            "a",
            "a^b",
            "^^x^",
            "é^ü^",
            &long,
            &long[..31],
            &long[..32],
            &long[..33],
        ] {
            for sep in ['^', 'é'] {
                let std: Vec<&str> = v.split(sep).collect();
                let p = super::parts(v, sep);
                for (i, want) in std.iter().enumerate() {
                    assert_eq!(p.get(i), *want, "{v:?} {i}");
                }
                assert_eq!(p.get(std.len()), "", "{v:?}");
                assert_eq!(p.get(std.len() + 20), "", "{v:?}");
                assert_eq!(super::first_part(v, sep), std[0], "{v:?}");
            }
        }
    }

    use super::*;
    use serde_json::{json, Value};

    fn js<T: serde::Serialize>(v: Option<T>) -> Option<Value> {
        v.map(|v| serde_json::to_value(v).unwrap())
    }

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
        assert_eq!(decimal("182").map(Value::Number), Some(json!(182)));
        assert_eq!(decimal("0.50"), Some(serde_json::from_str("0.50").unwrap()));
        assert_eq!(decimal(".5"), Some(serde_json::from_str("0.5").unwrap()));
        assert_eq!(decimal("-3").map(Value::Number), Some(json!(-3)));
        assert_eq!(decimal("POS"), None);
        assert_eq!(decimal("1-2"), None);
    }

    #[test]
    fn a_utc_offset_is_range_checked() {
        let tz = "+00:00";
        assert_eq!(datetime("20261101123015+9999", tz), None, "+99:99");
        assert_eq!(datetime("20261101123015+1500", tz), None, "hours > 14");
        assert_eq!(datetime("20261101123015+1430", tz), None, "past +14:00");
        assert_eq!(datetime("20261101123015-0560", tz), None, "minutes >= 60");
        assert_eq!(datetime("20261101123015+05", tz), None, "not HHMM");
        assert_eq!(datetime("20261101+9999", tz), None, "on a date too");
        assert_eq!(
            datetime("20261101123015+1400", tz).as_deref(),
            Some("2026-11-01T12:30:15+14:00")
        );
        assert_eq!(
            datetime("20261101123015-0930", tz).as_deref(),
            Some("2026-11-01T12:30:15-09:30")
        );
    }

    #[test]
    fn date_and_time_components_are_range_checked() {
        let tz = "+00:00";
        for bad in [
            "0000",           // FHIR years start at 0001
            "202600",         // month 0
            "202613",         // month 13
            "20261100",       // day 0
            "20261132",       // day 32
            "20260431",       // 31 April
            "20250229",       // 29 February in a common year
            "19000229",       // 1900 is not a leap year
            "2026110124",     // hour 24
            "202611011260",   // minute 60
            "20261101123060", // second 60
            "202611011230.5", // a fraction without seconds
            "20261101123015.12345",
        ] {
            assert_eq!(datetime(bad, tz), None, "{bad}");
        }
        assert_eq!(datetime("20240229", tz).as_deref(), Some("2024-02-29"));
        assert_eq!(datetime("20000229", tz).as_deref(), Some("2000-02-29"));
        assert_eq!(
            datetime("20261231235959.9999", tz).as_deref(),
            Some("2026-12-31T23:59:59.9999+00:00")
        );
    }

    #[test]
    fn a_tm_fraction_belongs_to_seconds_only() {
        assert_eq!(time("12.5"), None, "HH.S would invent minutes and seconds");
        assert_eq!(time("1230.5"), None, "HHMM.S would invent seconds");
        assert_eq!(time("123045.5").as_deref(), Some("12:30:45.5"));
        assert_eq!(time("123045.1234").as_deref(), Some("12:30:45.1234"));
        assert_eq!(time("123045.12345"), None, "v2 allows four digits");
        assert_eq!(time("123045."), None);
        assert_eq!(time("12").as_deref(), Some("12:00:00"));
        assert_eq!(time("1230").as_deref(), Some("12:30:00"));
        assert_eq!(
            time("1230+0100").as_deref(),
            Some("12:30:00"),
            "FHIR time has no offset"
        );
        assert_eq!(time("1230+9999"), None, "a malformed offset is not a TM");
        for bad in ["24", "1260", "123060", "1", "123", "ab", ""] {
            assert_eq!(time(bad), None, "{bad}");
        }
    }

    #[test]
    fn text_with_nothing_left_after_unescaping_and_trimming_is_no_string() {
        let d = Delimiters::default();
        assert_eq!(string(r"\H\\N\", &d), None, "only formatting escapes");
        assert_eq!(string("   ", &d), None);
        assert_eq!(string(r"\.br\ \.br\", &d), None, "only line breaks");
        assert_eq!(string(r#""""#, &d), None, "the v2 null");
        assert_eq!(string(r" a\.br\b ", &d).as_deref(), Some("a\nb"));
        assert_eq!(
            string("a\u{a0}b\u{2028}c\u{0}d\u{feff}e\\X07\\", &d).as_deref(),
            Some("a b cde"),
            "other whitespace is a space, control characters go"
        );
    }

    #[test]
    fn a_code_has_no_leading_trailing_or_repeated_whitespace() {
        let d = Delimiters::default();
        assert_eq!(code(" ", &d), None, "a single space is no code");
        assert_eq!(code(r"\H\", &d), None);
        assert_eq!(code("  A \t  B ", &d).as_deref(), Some("A B"));
    }

    #[test]
    fn a_coding_with_nothing_left_is_dropped_and_an_empty_concept_is_none() {
        let (d, t) = (Delimiters::default(), Tables::builtin());
        assert!(codeable_concept(" ", &d, &t, None).is_none());
        assert!(codeable_concept(r"\H\^\N\^LN", &d, &t, None).is_none());
        assert_eq!(
            js(codeable_concept(" ^Detected^SCT", &d, &t, None)),
            Some(json!({"coding": [{"system": "http://snomed.info/sct", "display": "Detected"}]})),
            "the code is omitted, the display kept"
        );
        assert_eq!(
            js(codeable_concept(r"A^ ^^ ^\H\^L^^^ ", &d, &t, None)),
            Some(json!({"coding": [{"code": "A"}]})),
            "an empty second coding and blank text are dropped"
        );
        let mut q = Quantity {
            value: Number::from(1),
            unit: None,
            system: None,
            code: None,
            comparator: None,
        };
        quantity_units(" ^ ^UCUM", &d, &t, &mut q);
        assert!(
            q.unit.is_none() && q.system.is_none() && q.code.is_none(),
            "{q:?}"
        );
    }

    #[test]
    fn identifiers_need_a_value_and_systems_are_uris() {
        let (d, t) = (Delimiters::default(), Tables::builtin());
        assert!(identifier(r"\H\^^^GENHOSP^MR", &d, &t).is_none());
        assert!(identifier(" ^^^GENHOSP^MR", &d, &t).is_none());
        assert_eq!(
            js(identifier("1^^^ ^ ", &d, &t)),
            Some(json!({"value": "1"})),
            "blank authority and type are omitted"
        );
        assert_eq!(
            identifier("1^^^&1.2.840.1&ISO", &d, &t)
                .unwrap()
                .system
                .unwrap(),
            "urn:oid:1.2.840.1"
        );
        assert_eq!(
            identifier("1^^^&not an oid&ISO", &d, &t)
                .unwrap()
                .system
                .unwrap(),
            "urn:hl7v2:authority:not%20an%20oid",
            "ISO that is not an OID is a name"
        );
        assert_eq!(
            identifier("1^^^&http://x.org/a b", &d, &t)
                .unwrap()
                .system
                .unwrap(),
            "urn:hl7v2:authority:http%3A%2F%2Fx.org%2Fa%20b",
            "a URI with whitespace is a name"
        );
        assert!(practitioner_ref(r"\H\^ ^\N\", &d, &t).is_none());
        assert_eq!(
            js(practitioner_ref("^DOE&VAN^JO", &d, &t)),
            Some(json!({"type": "Practitioner", "display": "JO DOE"})),
            "FN-1 is the surname"
        );
        assert!(location_ref(r"\N\^ ^&", &d).is_none());
    }

    #[test]
    fn escapes_are_decoded() {
        let d = Delimiters::default();
        assert_eq!(unescape("a\\F\\b\\S\\c\\.br\\d\\E\\", &d), "a|b^c\nd\\");
        assert_eq!(unescape("\\H\\bold\\N\\", &d), "bold");
        assert_eq!(unescape("\\X41\\", &d), "A");
    }
}
