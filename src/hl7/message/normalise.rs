//! The normal form hl7-parser reads: CR separators, no blank lines, MSH-2
//! reduced to the four classic delimiters.

use super::*;

pub(super) struct Normalised {
    pub(super) text: Text,
    pub(super) delimiters: Delimiters,
}

/// The normalised text: a range of the input when that already is the normal
/// form, else a copy.
pub(super) enum Text {
    Span(std::ops::Range<usize>),
    Owned(String),
}

/// `text.split(['\r', '\n'])` with each line's byte offset, scanning bytes
/// rather than decoding chars (both are ASCII, so every split point is a
/// char boundary).
pub(super) fn split_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = Some((0, text));
    std::iter::from_fn(move || {
        let (at, r) = rest?;
        match find_eol(r.as_bytes()) {
            Some(i) => {
                rest = r.get(i + 1..).map(|t| (at + i + 1, t));
                r.get(..i).map(|l| (at, l))
            }
            None => rest.take(),
        }
    })
}

/// The first CR or LF in `b`. Segments are tens to hundreds of bytes, so
/// this tests 8 bytes per step (a byte equals `c` when `x ^ c` has a zero
/// byte), rather than one: it is the scan over every byte of every message.
pub(super) fn find_eol(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        if has_zero(x ^ (ONES * u64::from(b'\r'))) || has_zero(x ^ (ONES * u64::from(b'\n'))) {
            break;
        }
        at += 8;
    }
    b.get(at..)?
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .map(|i| at + i)
}

/// Normalises the parse copy; see the module doc for why. Every line is
/// checked; with `Keep::HeaderAndPatient` only MSH and the first PID are kept.
pub(super) fn normalise(text: &str, keep: Keep) -> Result<Normalised, Reject> {
    let mut lines = split_lines(text).filter(|(_, l)| !l.trim().is_empty());
    let (msh_at, msh) = lines.next().ok_or_else(|| {
        Reject::new(
            ErrorCode::SegmentSequence,
            "message does not start with an MSH segment",
        )
    })?;
    let (delimiters, msh_line) = normalise_msh(msh)?;
    // While every kept line is the input's next line verbatim, after a
    // single CR, the output is `text[msh_at..end]`: nothing is copied until
    // a line differs (then everything so far is copied once).
    let mut out: Option<String> = None;
    let mut end = msh_at + msh.len();
    if let Cow::Owned(m) = msh_line {
        out = Some(with_capacity_for(text, keep, m));
    }
    let mut have_pid = false;
    for (i, (at, raw_line)) in lines.enumerate() {
        let line = raw_line.trim_end_matches([' ', '\t']);
        let name_ok = line.len() >= 3
            && line.as_bytes()[..3]
                .iter()
                .all(|b| b.is_ascii_alphanumeric())
            && (line.len() == 3 || line[3..].starts_with(delimiters.field));
        if !name_ok {
            return Err(
                Reject::new(ErrorCode::SegmentSequence, "a line is not a valid segment")
                    .at_segment(i + 2),
            );
        }
        if keep == Keep::HeaderAndPatient {
            if have_pid || !line.starts_with("PID") {
                continue;
            }
            have_pid = true;
        }
        let verbatim = out.is_none()
            && at == end + 1
            && text.as_bytes().get(end) == Some(&b'\r')
            && line.len() == raw_line.len()
            && line.len() != 3;
        if verbatim {
            end = at + line.len();
            continue;
        }
        let out = out.get_or_insert_with(|| {
            with_capacity_for(
                text,
                keep,
                text.get(msh_at..end).unwrap_or_default().to_owned(),
            )
        });
        out.push('\r');
        out.push_str(line);
        if line.len() == 3 {
            // hl7-parser needs a field separator after the segment name.
            out.push(delimiters.field);
        }
    }
    Ok(Normalised {
        text: match out {
            Some(o) => Text::Owned(o),
            None => Text::Span(msh_at..end),
        },
        delimiters,
    })
}

/// `start` with room for the rest of the normalised copy.
pub(super) fn with_capacity_for(text: &str, keep: Keep, mut start: String) -> String {
    let want = if keep == Keep::All {
        text.len() + 8
    } else {
        512
    };
    start.reserve(want.saturating_sub(start.len()));
    start
}

/// Validates MSH-1/MSH-2 and returns the delimiters plus an MSH line with a
/// 4-character MSH-2 (the v2.7+ truncation character is dropped for parsing).
pub(super) fn normalise_msh(line: &str) -> Result<(Delimiters, Cow<'_, str>), Reject> {
    let bad = || {
        Reject::new(
            ErrorCode::DataType,
            "MSH-1/MSH-2 encoding characters are invalid",
        )
        .at_field("MSH", 2)
    };
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(after_name) = line.strip_prefix("MSH") else {
        return Err(Reject::new(
            ErrorCode::SegmentSequence,
            "message does not start with an MSH segment",
        ));
    };
    let mut chars = after_name.chars();
    let field = chars.next().ok_or_else(bad)?;
    let enc_len: usize = chars.take_while(|&c| c != field).map(char::len_utf8).sum();
    let enc = after_name
        .get(field.len_utf8()..field.len_utf8() + enc_len)
        .ok_or_else(bad)?;
    let usable = |c: char| {
        c.is_ascii() && !c.is_ascii_alphanumeric() && !c.is_ascii_whitespace() && c != field
    };
    let n = enc.chars().count();
    if !(4..=5).contains(&n)
        || !field.is_ascii()
        || field.is_ascii_alphanumeric()
        || !enc.chars().all(usable)
    {
        return Err(bad());
    }
    // ASCII (checked above), 4 or 5 of them: compare as bytes, no allocation.
    let e = enc.as_bytes();
    if (1..e.len()).any(|i| e[..i].contains(&e[i])) {
        return Err(bad());
    }
    let c = |i: usize| char::from(e[i]);
    let delimiters = Delimiters {
        field,
        component: c(0),
        repetition: c(1),
        escape: c(2),
        subcomponent: c(3),
        encoding_characters: enc.to_owned(),
    };
    if e.len() == 4 {
        return Ok((delimiters, Cow::Borrowed(line)));
    }
    let rest = &line[4 + enc.len()..];
    let mut msh = String::with_capacity(line.len());
    msh.push_str("MSH");
    msh.push(field);
    msh.push_str(&enc[..4]);
    msh.push_str(rest);
    Ok((delimiters, Cow::Owned(msh)))
}
