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

#[cfg(test)]
mod tests;
mod time;

pub use time::{datetime, offset, time};

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
    #[inline]
    pub fn get(&self, i: usize) -> &'a str {
        if i < self.n {
            self.first[i]
        } else if self.n < KEPT {
            ""
        } else {
            self.beyond_kept(i)
        }
    }

    /// A part past the ones kept (rare): out of line, so `get` stays small
    /// enough to inline at its many call sites.
    #[cold]
    #[inline(never)]
    fn beyond_kept(&self, i: usize) -> &'a str {
        self.v.split(self.sep).nth(i).unwrap_or("")
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
    if let Some(plain) = plain_text(raw, d) {
        return plain.text.map(Cow::Borrowed);
    }
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

/// What [`string`] and [`code`] make of a value that is all [`plain`] bytes
/// and has no escape character (nearly every value): found in one pass over
/// the bytes, where the general path unescapes, cleans and trims in several.
struct Plain<'a> {
    /// The value trimmed; `None` when nothing is left or it is the v2 null.
    text: Option<&'a str>,
    /// Whether the value has a tab, CR, LF or two spaces in a row anywhere
    /// (what a FHIR `code` may not carry inside it; [`code`] then takes the
    /// general path).
    loose: bool,
}

/// [`Plain`], or `None` when `raw` needs the general path (an escape
/// sequence, or a byte [`cleaned`] would change).
fn plain_text<'a>(raw: &'a str, d: &Delimiters) -> Option<Plain<'a>> {
    let escape = u8::try_from(d.escape).ok().filter(u8::is_ascii)?;
    let mut loose = false;
    let mut prev = 0u8;
    for &b in raw.as_bytes() {
        // One test for the usual byte (printable, not a space); the rest below.
        if b > b' ' && b <= b'~' && b != escape {
            prev = b;
            continue;
        }
        match b {
            _ if b == escape => return None,
            b' ' => loose |= prev == b' ',
            b'\t' | b'\r' | b'\n' => loose = true,
            _ => return None,
        }
        prev = b;
    }
    // Only ASCII whitespace can be at the ends: `str::trim` would remove the same.
    let t = raw.trim_ascii();
    Some(Plain {
        text: (!t.is_empty() && t != "\"\"").then_some(t),
        loose,
    })
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
    if let Some(Plain { text, loose: false }) = plain_text(raw, d) {
        return text.map(Cow::Borrowed);
    }
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

/// A FHIR decimal from a v2 NM, as a JSON number (None when not a number).
/// A number beyond a double's range (hundreds of digits) counts as not a
/// number: the Avro topics carry every decimal as a double, so what the
/// mapper emits always encodes.
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
    let n = serde_json::from_str::<Number>(&normalise_decimal(t)).ok()?;
    n.as_f64().is_some_and(f64::is_finite).then_some(n)
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
    let mut push = |t: &str| {
        if !out.is_empty() {
            out.push_str(sep);
        }
        out.push_str(t);
    };
    if let Some(Plain { text, .. }) = plain_text(raw, d) {
        return text.map(push).is_some();
    }
    if is_null(raw) {
        return false;
    }
    let u = unescape(raw, d);
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
    // The name is at most the field's length: one allocation, no regrowth.
    let mut name = String::with_capacity(v.len());
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
        extension: Vec::new(),
    })
}

/// PL to a Location reference with a readable display (point of care, room, bed, facility).
pub fn location_ref<'a>(v: &'a str, d: &Delimiters) -> Option<Reference<'a>> {
    let p = parts(v, d.component);
    let mut names = String::with_capacity(v.len());
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
        extension: Vec::new(),
    })
}
