//! How a value is shown: escape sequences decoded, date/times spelled out,
//! control characters made visible.
//!
//! hl7-parser reads timestamps ([`TimeStamp`]) and is used for that. Its
//! escape decoder (`Separators::decode`) is not used: it drops the
//! formatting escapes an analyst needs to see (`\H\` becomes `H`), decodes
//! hex only for `\X0A\` and `\X0D\`, turns `\.br\` into a bare CR, drops
//! an unclosed sequence, and slices the value at character counts taken as
//! byte offsets (wrong text, or a panic, after non-ASCII characters). So
//! [`unescape`] below is our own.

use std::fmt::Write;

use hl7_parser::datetime::TimeStamp;

use crate::hl7::message::Delimiters;

/// Control characters shown as `{0x0D}`, so field contents cannot drive the terminal.
pub(super) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "{{0x{:02X}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A decoded value for the tree: line breaks continue under the first line.
fn shown(decoded: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (i, line) in decoded.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
            }
        }
        out.push_str(&clean(line));
    }
    out
}

/// A leaf of the tree (a value of type `ty`) as the text view shows it:
/// decoded, with a spelled-out date/time if the type is one. `indent` is
/// where continuation lines start.
pub(super) fn leaf(raw: &str, ty: &str, d: &Delimiters, indent: usize) -> String {
    let mut v = shown(&unescape(raw, d), indent);
    if is_time(ty) {
        if let Some(t) = readable_time(raw).filter(|t| t != raw.trim()) {
            let _ = write!(v, " ({t})");
        }
    }
    v
}

/// True for the date/time types whose values [`readable_time`] can spell out.
fn is_time(data_type: &str) -> bool {
    matches!(data_type, "TS" | "DTM" | "DT")
}

/// A DTM/DT value (`YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`) spelled out as
/// `YYYY-MM-DD HH:MM:SS.S +ZZZZ`, or None if it is not one.
///
/// hl7-parser reads the parts. Its grammar is looser than the standard's, so
/// what it accepts and the standard does not is refused here: an offset
/// without its sign (it reads digits after the seconds or after a
/// four-digit fraction as one) or without its minutes, a fraction without
/// seconds, a number out of its range. The fraction and the offset are shown
/// as sent: hl7-parser keeps the fraction as microseconds (`.5` and `.50`
/// become the same) and prints an offset of `-0030` as `+0030`.
fn readable_time(v: &str) -> Option<String> {
    let v = v.trim();
    let t: TimeStamp = v.parse().ok()?;
    let zone = v.find(['+', '-']).map(|i| &v[i..]);
    let digits = v.find(['.', '+', '-']).unwrap_or(v.len());
    let parts = [t.month, t.day, t.hour, t.minute, t.second];
    let fraction = v
        .split_once('.')
        .and_then(|(_, f)| f.split(['+', '-']).next());
    let unsigned_offset =
        digits != 4 + 2 * parts.iter().flatten().count() || fraction.is_some_and(|f| f.len() > 4);
    if unsigned_offset
        || zone.is_some() != t.offset.is_some()
        || (fraction.is_some() && t.second.is_none())
    {
        return None;
    }
    let within = |n: Option<u8>, lo: u8, hi: u8| n.is_none_or(|n| (lo..=hi).contains(&n));
    let ranges = [
        (t.month, 1, 12),
        (t.day, 1, 31),
        (t.hour, 0, 23),
        (t.minute, 0, 59),
        (t.second, 0, 59),
    ];
    if !ranges.into_iter().all(|(n, lo, hi)| within(n, lo, hi)) {
        return None;
    }
    let mut out = format!("{:04}", t.year);
    for part in [t.month, t.day].into_iter().flatten() {
        let _ = write!(out, "-{part:02}");
    }
    if let Some(hour) = t.hour {
        let _ = write!(out, " {hour:02}:{:02}", t.minute.unwrap_or(0));
        if let Some(second) = t.second {
            let _ = write!(out, ":{second:02}");
        }
        if let Some(f) = fraction {
            let _ = write!(out, ".{f}");
        }
    }
    if let Some(z) = zone {
        let _ = write!(out, " {z}");
    }
    Some(out)
}

/// Decodes escape sequences for display.
///
/// Delimiter escapes (`\F\ \S\ \T\ \R\ \E\`) and hex data (`\Xhh..\`, read as
/// UTF-8, else Latin-1) become the characters they stand for. Formatting
/// escapes stay visible: `\.br\` (and `\.sp n\`, `\.ce\`) become line
/// breaks, the others a marker in braces (`\H\` `{highlight}`, `\N\`
/// `{/highlight}`, `\.in +4\` `{indent +4}`, ...). A sequence that is not
/// understood, or not closed, is kept as sent.
pub(super) fn unescape(v: &str, d: &Delimiters) -> String {
    let esc = d.escape;
    if !v.contains(esc) {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let seq = &after[..end];
        match decode_one(seq, d) {
            Some(text) => out.push_str(&text),
            None => {
                out.push(esc);
                out.push_str(seq);
                out.push(esc);
            }
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn decode_one(seq: &str, d: &Delimiters) -> Option<String> {
    let arg = |s: &str| s.trim().to_owned();
    let lines = |n: &str| {
        let n: usize = n.trim().trim_start_matches('+').parse().unwrap_or(1);
        "\n".repeat(n.clamp(1, 10))
    };
    Some(match seq {
        "F" => d.field.to_string(),
        "S" => d.component.to_string(),
        "T" => d.subcomponent.to_string(),
        "R" => d.repetition.to_string(),
        "E" => d.escape.to_string(),
        "H" => "{highlight}".to_owned(),
        "N" => "{/highlight}".to_owned(),
        ".br" => "\n".to_owned(),
        ".fi" => "{fill}".to_owned(),
        ".nf" => "{no-fill}".to_owned(),
        ".ce" => "\n{center}".to_owned(),
        s if s.starts_with(".sp") => lines(&s[3..]),
        s if s.starts_with(".in") => format!("{{indent {}}}", arg(&s[3..])),
        s if s.starts_with(".ti") => format!("{{temporary indent {}}}", arg(&s[3..])),
        s if s.starts_with(".sk") => format!("{{skip {}}}", arg(&s[3..])),
        s if s.starts_with('X') => hex(&s[1..])?,
        s if s.starts_with('C') || s.starts_with('M') => {
            let code = &s[1..];
            if code.is_empty() || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            format!("{{charset {code}}}")
        }
        s if s.starts_with('Z') => format!("{{local {}}}", &s[1..]),
        _ => return None,
    })
}

fn hex(h: &str) -> Option<String> {
    if h.is_empty() || h.len() % 2 != 0 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = (0..h.len() / 2)
        .map(|i| u8::from_str_radix(h.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().into_iter().map(char::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_readably() {
        let d = Delimiters::default();
        assert_eq!(
            unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\", &d),
            "a|b^c&d~e\\"
        );
        assert_eq!(unescape("\\X41C3A9\\", &d), "Aé");
        assert_eq!(unescape("\\XE9\\", &d), "é");
        assert_eq!(
            unescape("\\H\\bold\\N\\\\.br\\next", &d),
            "{highlight}bold{/highlight}\nnext"
        );
        assert_eq!(unescape("\\.in +4\\x\\.sp 2\\y", &d), "{indent +4}x\n\ny");
        assert_eq!(unescape("open \\X4", &d), "open \\X4");
        assert_eq!(unescape("\\Q\\ \\X4\\", &d), "\\Q\\ \\X4\\");
    }

    #[test]
    fn times_are_spelled_out_when_they_are_times() {
        assert_eq!(
            readable_time("20261115103000").as_deref(),
            Some("2026-11-15 10:30:00")
        );
        assert_eq!(
            readable_time("202611151030-0500").as_deref(),
            Some("2026-11-15 10:30 -0500")
        );
        assert_eq!(readable_time("19850612").as_deref(), Some("1985-06-12"));
        assert_eq!(readable_time("20261415").as_deref(), None);
        assert_eq!(readable_time("abc").as_deref(), None);
        assert_eq!(readable_time("2026111510300").as_deref(), None);
    }

    #[test]
    fn what_hl7_parser_reads_but_the_standard_refuses_is_not_a_time() {
        // A fraction needs seconds; an offset needs its sign and its minutes.
        assert_eq!(readable_time("202611151030.5"), None);
        assert_eq!(readable_time("202611151030000500"), None);
        assert_eq!(readable_time("2026111510300005"), None);
        assert_eq!(readable_time("20261115103000.123405"), None);
        assert_eq!(readable_time("2026111510+05"), None);
        assert_eq!(readable_time("2026-"), None);
        // Numbers out of range.
        assert_eq!(readable_time("2026111524"), None);
        assert_eq!(readable_time("202611151060"), None);
    }

    #[test]
    fn fractions_and_offsets_are_shown_as_sent() {
        assert_eq!(
            readable_time(" 20261115103000.50-0030 ").as_deref(),
            Some("2026-11-15 10:30:00.50 -0030")
        );
        assert_eq!(
            readable_time("2026111510").as_deref(),
            Some("2026-11-15 10:00")
        );
        assert_eq!(readable_time("2026+0100").as_deref(), Some("2026 +0100"));
    }

    #[test]
    fn a_leaf_is_decoded_continued_under_itself_and_timed_if_a_time() {
        let d = Delimiters::default();
        assert_eq!(leaf("a\\.br\\b\x07", "ST", &d, 4), "a\n    b{0x07}");
        assert_eq!(leaf("20261115", "DT", &d, 0), "20261115 (2026-11-15)");
        assert_eq!(leaf("20261115", "ST", &d, 0), "20261115");
        // Nothing to spell out: the value is not repeated.
        assert_eq!(leaf("2026", "DTM", &d, 0), "2026");
    }
}
