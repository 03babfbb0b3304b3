//! DTM, DT and TM to FHIR dateTime, date and time; v2 offsets.

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
