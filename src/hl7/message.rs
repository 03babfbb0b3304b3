//! Reading one HL7 v2 message: charset, segment separators, MSH and PID-3.
//!
//! hl7-parser parses a `&str` and silently stops at the first line it cannot
//! read as a segment. So the parser is given a normalised copy (CR separators,
//! no blank lines, MSH-2 reduced to the four classic delimiters), and the
//! reader checks that every line was consumed. A message that does not parse
//! completely is rejected, never half-read. The stored record keeps the exact
//! bytes received; the copy exists only to be read, and is not made when the
//! bytes already are in that normal form (the usual case).
//! The bridge itself splits with [`MessageView`], which gives hl7-parser's
//! fields without its per-field allocations; hl7-parser remains the reference
//! the view is tested against.

use std::borrow::Cow;

use hl7_parser::Message;

use super::charset::{Charset, CharsetError};
use super::error::{ErrorCode, Reject};
use super::split::strip_bom;

/// The delimiters declared by MSH-1 and MSH-2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
    /// MSH-2 exactly as sent (4 characters, or 5 with the v2.7 truncation character).
    pub encoding_characters: String,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
            encoding_characters: "^~\\&".to_owned(),
        }
    }
}

/// MSH fields the bridge routes, keys and acknowledges by. Values are raw
/// (as sent, escapes intact) so an ACK can echo them without re-encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageHeader {
    pub delimiters: Delimiters,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub datetime: String,
    pub message_type: String,
    pub trigger_event: String,
    pub message_structure: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
    pub accept_ack_type: String,
    pub application_ack_type: String,
    /// MSH-18 as sent (first repetition).
    pub charset: String,
}

impl MessageHeader {
    /// MSH-12.1 as (major, minor), e.g. "2.5.1" -> (2, 5). None if unreadable.
    pub fn version_number(&self) -> Option<(u32, u32)> {
        let v = self.version.split(self.delimiters.component).next()?;
        let mut parts = v.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().unwrap_or("0").parse().ok()?;
        Some((major, minor))
    }
}

/// One PID-3 repetition (CX), the parts the patient key needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientIdentifier {
    /// The whole CX repetition, as sent.
    pub raw: String,
    pub id: String,
    pub authority_namespace: String,
    pub authority_universal_id: String,
    pub type_code: String,
}

/// A message read far enough to route, key and acknowledge it.
#[derive(Debug, Clone)]
pub struct ParsedMessage {
    pub header: MessageHeader,
    pub charset: Charset,
    pub patient_identifiers: Vec<PatientIdentifier>,
}

/// What the reader needs from configuration.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Used when MSH-18 is empty and the bytes are not UTF-8.
    pub charset_fallback: Option<Charset>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            charset_fallback: Some(Charset::Other(encoding_rs::WINDOWS_1252)),
        }
    }
}

/// Strips a UTF-8 byte order mark and any whitespace before the first
/// segment (some senders put a newline inside the frame before MSH). Only
/// the parse copy is trimmed; the stored value keeps every byte.
pub fn trim_start(raw: &[u8]) -> &[u8] {
    let raw = strip_bom(raw);
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(raw.len());
    &raw[start..]
}

/// Reads the MSH alone, from raw bytes, so that even a message whose body is
/// broken gets an ACK that quotes its MSH-10 and echoes its delimiters.
pub fn read_header_only(raw: &[u8], opts: ReadOptions) -> Option<MessageHeader> {
    let raw = trim_start(raw);
    let end = raw
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(raw.len());
    let line = &raw[..end];
    let charset = msh18_from_raw(line)
        .and_then(|v| Charset::from_msh18(&v).ok())
        .unwrap_or(Charset::Ascii);
    let (text, _) = charset.decode(line, opts.charset_fallback).ok()?;
    let (delims, normalised) = normalise_msh(&text).ok()?;
    // The same split as hl7-parser's (see `the_view_splits_exactly_as_hl7_parser`)
    // without building its tree: this runs for every rejected message.
    let view = MessageView::new(&normalised, &delims);
    view.segment("MSH")
        .map(|msh| header_from(|n| msh.field(n), delims))
}

/// A message decoded and normalised for hl7-parser: every line has been
/// checked to be a segment. Parse it once with [`Prepared::parse`] or
/// [`Prepared::view`].
#[derive(Debug, Clone)]
pub struct Prepared<'a> {
    /// Borrows the received bytes when they already are in normal form
    /// (UTF-8/ASCII, CR-separated, no blank lines): the common case, so
    /// reading a message does not copy it.
    pub text: Cow<'a, str>,
    pub delimiters: Delimiters,
    pub charset: Charset,
}

/// Prepares a whole message (every segment kept), for stages that need all of
/// it (the FHIR transform). The caller parses it once with [`Prepared::parse`].
pub fn read_full(raw: &[u8], opts: ReadOptions) -> Result<Prepared<'_>, Reject> {
    prepare(raw, opts, Keep::All)
}

/// Reads a whole message: decode, normalise, split, extract MSH and PID-3.
///
/// Every line is checked to be a segment, but only MSH and PID are split
/// into fields: they are all routing and keying need, and a segment whose
/// line passes the check always parses (hl7-parser accepts any field content).
/// The split is [`MessageView`]'s, which gives exactly hl7-parser's fields
/// (`the_view_splits_exactly_as_hl7_parser`) without allocating its tree.
pub fn read(raw: &[u8], opts: ReadOptions) -> Result<ParsedMessage, Reject> {
    prepare(raw, opts, Keep::HeaderAndPatient)?
        .view()
        .map(|(_, m)| m)
}

/// Which checked lines go into the parse copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    All,
    HeaderAndPatient,
}

/// Decodes the charset and normalises separators and MSH-2.
fn prepare(raw: &[u8], opts: ReadOptions, keep: Keep) -> Result<Prepared<'_>, Reject> {
    let raw = trim_start(raw);
    if !raw.starts_with(b"MSH") {
        return Err(Reject::new(
            ErrorCode::SegmentSequence,
            "message does not start with an MSH segment",
        ));
    }
    let first_line_end = raw
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(raw.len());
    let declared = match msh18_from_raw(&raw[..first_line_end]) {
        Some(v) => Charset::from_msh18(&v).map_err(charset_reject)?,
        None => Charset::Ascii,
    };
    let (text, charset) = declared
        .decode(raw, opts.charset_fallback)
        .map_err(charset_reject)?;
    let normalised = normalise(&text, keep)?;
    let text = match (text, normalised.text) {
        (_, Text::Owned(o)) => Cow::Owned(o),
        (Cow::Borrowed(t), Text::Span(r)) => Cow::Borrowed(t.get(r).unwrap_or_default()),
        (Cow::Owned(mut t), Text::Span(r)) => {
            t.truncate(r.end);
            t.drain(..r.start);
            Cow::Owned(t)
        }
    };
    Ok(Prepared {
        text,
        delimiters: normalised.delimiters,
        charset,
    })
}

impl Prepared<'_> {
    /// Parses the prepared text: the tree, plus the MSH fields and PID-3
    /// identifiers routing and keying need.
    pub fn parse(&self) -> Result<(Message<'_>, ParsedMessage), Reject> {
        let msg = Message::parse(&self.text).map_err(|_| {
            Reject::new(
                ErrorCode::SegmentSequence,
                "message structure could not be parsed",
            )
        })?;
        let consumed = msg.raw_value().len();
        if consumed < self.text.len() {
            // Not reachable after `normalise` checked every line; kept as a guard.
            return Err(Reject::new(
                ErrorCode::SegmentSequence,
                "a segment could not be parsed",
            ));
        }
        let msh = msg.segment("MSH").ok_or_else(|| {
            Reject::new(
                ErrorCode::SegmentSequence,
                "message does not start with an MSH segment",
            )
        })?;
        let pid3 = msg
            .segment("PID")
            .and_then(|pid| pid.field(3))
            .map(|f| f.raw_value());
        let parsed = self.parsed(|n| msh.field(n).map(|f| f.raw_value()), pid3)?;
        Ok((msg, parsed))
    }

    /// [`Prepared::parse`] without hl7-parser's tree: the same splits, as
    /// spans into the text ([`MessageView`]), so reading a message costs two
    /// allocations rather than one per field, repetition and component.
    pub fn view(&self) -> Result<(MessageView<'_>, ParsedMessage), Reject> {
        let view = MessageView::new(&self.text, &self.delimiters);
        let msh = view.segment("MSH").ok_or_else(|| {
            Reject::new(
                ErrorCode::SegmentSequence,
                "message does not start with an MSH segment",
            )
        })?;
        let pid3 = view.segment("PID").and_then(|pid| pid.field(3));
        let parsed = self.parsed(|n| msh.field(n), pid3)?;
        Ok((view, parsed))
    }

    /// The header (MSH-9 and MSH-10 required) and the PID-3 identifiers.
    fn parsed<'a>(
        &self,
        msh_field: impl Fn(usize) -> Option<&'a str>,
        pid3: Option<&str>,
    ) -> Result<ParsedMessage, Reject> {
        let header = header_from(msh_field, self.delimiters.clone());
        if header.message_type.is_empty() {
            return Err(Reject::new(
                ErrorCode::RequiredFieldMissing,
                "MSH-9 message type is empty",
            )
            .at_field("MSH", 9));
        }
        if header.control_id.is_empty() {
            return Err(Reject::new(
                ErrorCode::RequiredFieldMissing,
                "MSH-10 message control ID is empty",
            )
            .at_field("MSH", 10));
        }
        let patient_identifiers = pid3
            .map(|f| patient_identifiers(f, &self.delimiters))
            .unwrap_or_default();
        Ok(ParsedMessage {
            header,
            charset: self.charset,
            patient_identifiers,
        })
    }
}

/// PID-3's repetitions with an ID (CX-1), as hl7-parser splits them.
pub fn patient_identifiers(pid3: &str, d: &Delimiters) -> Vec<PatientIdentifier> {
    pid3.split(d.repetition)
        .filter_map(|r| {
            // CX-1..CX-5 from one split (a missing component reads as "").
            let mut comp = [""; 5];
            for (slot, c) in comp.iter_mut().zip(r.split(d.component)) {
                *slot = c;
            }
            let [id, _, _, authority, type_code] = comp;
            // Repetitions without an ID are skipped before anything is copied.
            if id.is_empty() {
                return None;
            }
            let mut hd = authority.split(d.subcomponent);
            Some(PatientIdentifier {
                raw: r.to_owned(),
                id: id.to_owned(),
                authority_namespace: hd.next().unwrap_or("").to_owned(),
                authority_universal_id: hd.next().unwrap_or("").to_owned(),
                type_code: type_code.to_owned(),
            })
        })
        .collect()
}

/// A prepared message split into segments and fields, as byte spans into
/// its text. Splitting is hl7-parser's: plain delimiter splits (an escape
/// sequence never contains a delimiter), segments on CR, and in the first
/// segment (MSH) field 1 is the field separator and field 2 MSH-2.
/// Repetitions and components are split on demand by the reader.
#[derive(Debug)]
pub struct MessageView<'a> {
    text: &'a str,
    /// Per segment: its name and its fields' range in `spans`.
    segments: Vec<(&'a str, std::ops::Range<usize>)>,
    /// Every field of every segment: its byte range in `text`.
    spans: Vec<(usize, usize)>,
}

/// One segment of a [`MessageView`].
#[derive(Debug, Clone, Copy)]
pub struct SegmentView<'v> {
    pub name: &'v str,
    text: &'v str,
    spans: &'v [(usize, usize)],
}

impl<'v> SegmentView<'v> {
    /// Field `n` (1-based) exactly as sent, repetitions included; `None`
    /// past the last field (as hl7-parser's `Segment::field`).
    pub fn field(&self, n: usize) -> Option<&'v str> {
        let &(start, end) = self.spans.get(n.checked_sub(1)?)?;
        self.text.get(start..end)
    }
}

impl<'a> MessageView<'a> {
    /// Splits `text`, which [`prepare`] normalised: CR-separated lines that
    /// each start with a 3-character name and the field separator (MSH first).
    fn new(text: &'a str, d: &Delimiters) -> Self {
        // Delimiters are ASCII (checked by `normalise_msh`): byte splits are char-safe.
        let fs = u8::try_from(d.field).unwrap_or(b'|');
        let mut segments = Vec::with_capacity(16);
        let mut spans = Vec::with_capacity(text.len() / 12);
        let mut at = 0;
        for (i, line) in text.split('\r').enumerate() {
            let first = spans.len();
            let name = line.get(..3).unwrap_or(line);
            // Where the fields after the name start, and MSH-1/MSH-2 first.
            let body = if i == 0 {
                spans.push((at + 3, at + 4));
                spans.push((at + 4, at + 8));
                match line.as_bytes().get(8) {
                    Some(&b) if b == fs => 9,
                    _ => 8,
                }
            } else {
                4
            };
            let mut start = at + body;
            for (j, &b) in line.as_bytes().iter().enumerate().skip(body) {
                if b == fs {
                    spans.push((start, at + j));
                    start = at + j + 1;
                }
            }
            spans.push((start, at + line.len().max(body)));
            segments.push((name, first..spans.len()));
            at += line.len() + 1;
        }
        Self {
            text,
            segments,
            spans,
        }
    }

    /// Every segment, in order.
    pub fn segments(&self) -> impl Iterator<Item = SegmentView<'_>> + '_ {
        self.segments.iter().map(|(name, r)| SegmentView {
            name,
            text: self.text,
            spans: self.spans.get(r.clone()).unwrap_or(&[]),
        })
    }

    /// The first segment named `name`.
    pub fn segment(&self, name: &str) -> Option<SegmentView<'_>> {
        self.segments().find(|s| s.name == name)
    }
}

fn charset_reject(e: CharsetError) -> Reject {
    Reject::new(
        ErrorCode::DataType,
        match e {
            CharsetError::Unsupported => "unsupported character set in MSH-18",
            CharsetError::Invalid => "bytes are not valid in the character set declared by MSH-18",
            CharsetError::NoFallback => {
                "bytes are not ASCII or UTF-8 and MSH-18 does not name a character set"
            }
        },
    )
    .at_field("MSH", 18)
}

/// MSH-18's first repetition, read from the raw MSH line. MSH fields up to 18
/// are ASCII in every charset HL7 allows here, so no decoding is needed.
fn msh18_from_raw(line: &[u8]) -> Option<String> {
    let fs = *line.get(3)?;
    let rep = *line.get(5)?;
    let field = line.split(|&b| b == fs).nth(17)?;
    let first = field.split(|&b| b == rep).next()?;
    let s = std::str::from_utf8(first).ok()?.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

struct Normalised {
    text: Text,
    delimiters: Delimiters,
}

/// The normalised text: a range of the input when that already is the normal
/// form, else a copy.
enum Text {
    Span(std::ops::Range<usize>),
    Owned(String),
}

/// `text.split(['\r', '\n'])` with each line's byte offset, scanning bytes
/// rather than decoding chars (both are ASCII, so every split point is a
/// char boundary).
fn split_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
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
fn find_eol(b: &[u8]) -> Option<usize> {
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
fn normalise(text: &str, keep: Keep) -> Result<Normalised, Reject> {
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
fn with_capacity_for(text: &str, keep: Keep, mut start: String) -> String {
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
fn normalise_msh(line: &str) -> Result<(Delimiters, Cow<'_, str>), Reject> {
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

/// The header from MSH field accessors (`msh_field(n)`: field `n` as sent),
/// with repetitions and components split as hl7-parser splits them.
fn header_from<'a>(
    msh_field: impl Fn(usize) -> Option<&'a str>,
    delimiters: Delimiters,
) -> MessageHeader {
    let field = |n: usize| msh_field(n).unwrap_or("").to_owned();
    let first_rep = |n: usize| msh_field(n).and_then(|f| f.split(delimiters.repetition).next());
    let first_rep_owned = |n: usize| first_rep(n).unwrap_or("").to_owned();
    let msh9 = |c: usize| {
        first_rep(9)
            .and_then(|r| r.split(delimiters.component).nth(c - 1))
            .map(|c| c.trim().to_owned())
            .unwrap_or_default()
    };
    MessageHeader {
        sending_application: field(3),
        sending_facility: field(4),
        receiving_application: field(5),
        receiving_facility: field(6),
        datetime: field(7),
        message_type: msh9(1),
        trigger_event: msh9(2),
        message_structure: msh9(3),
        control_id: field(10).trim().to_owned(),
        processing_id: field(11),
        version: field(12),
        accept_ack_type: field(15).trim().to_owned(),
        application_ack_type: field(16).trim().to_owned(),
        charset: first_rep_owned(18),
        delimiters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_as_str_split_does() {
        for t in [
            "",
            "\r",
            "a\rb",
            "a\r\nb\n",
            "\n\né\r",
            "x",
            "MSH|^~\\&|0123456789abcdef\rPID|é\n0123456789\r\n\r\n",
            "0123456\r01234567\n012345678",
        ] {
            let ours: Vec<_> = split_lines(t).map(|(_, l)| l).collect();
            for (at, l) in split_lines(t) {
                assert_eq!(t.get(at..at + l.len()), Some(l), "{t:?}");
            }
            let std: Vec<_> = t.split(['\r', '\n']).collect();
            assert_eq!(ours, std, "{t:?}");
        }
    }

    /// The mapper reads messages through [`MessageView`]; it must see exactly
    /// the segments, fields, header and PID-3 hl7-parser's tree gives.
    #[test]
    fn the_view_splits_exactly_as_hl7_parser() {
        let messages = [
            A01.to_owned(),
            "MSH|^~\\&\rPID|\rNTE\rZZ1|||\r".to_owned(),
            "MSH|^~\\&|\rOBX|1|ST|a^b&c~d^e||x\\F\\y| |\r".to_owned(),
            "MSH|^~\\&||||||||ORU^R01|C|P\rOBX|1|ST|a^b&c~d^e||x\\F\\y| |\rNTE\r".to_owned(),
            "MSH|^~\\&#|A|F|||2026||ORU^R01^ORU_R01~X^Y|C1 |P|2.7||||||8859/1~UNICODE UTF-8\nPID|||1^^^H&2.16&ISO^MR~~^^^X^PI~7^^^&u^SS||é\r\n\r\nPV1|1|I|||||||||||||||||V1~V2\t \r".to_owned(),
            "MSH#$%!@#A#F###2026##ADT$A01#C2#P#2.5\rPID###M1$$$H@x@ISO$MR%M2$$$H$PI\rOBX#1#NM#A$B##1!S!#\r".to_owned(),
            "MSH|^~\\&|||||||ORU^R01|C3|P|2.5.1\rOBR|1||F1^X|A^B^L\rOBX||ST|X^T^L||~one~||||||F|||20261115\rNTE|1|L|a~b\rNTE|2\r".to_owned(),
        ];
        for text in &messages {
            let p = prepare(text.as_bytes(), ReadOptions::default(), Keep::All).unwrap();
            let (msg, tree, view, spans) = match (p.parse(), p.view()) {
                (Ok((msg, tree)), Ok((view, spans))) => (msg, tree, view, spans),
                (Err(a), Err(b)) => {
                    assert_eq!(a.reason, b.reason, "{text:?}");
                    continue;
                }
                (a, b) => panic!("{text:?}: {:?} vs {:?}", a.err(), b.err()),
            };
            assert_eq!(tree.header, spans.header, "{text:?}");
            assert_eq!(
                tree.patient_identifiers, spans.patient_identifiers,
                "{text:?}"
            );
            let segments: Vec<_> = view.segments().collect();
            assert_eq!(msg.segments().count(), segments.len(), "{text:?}");
            for (s, v) in msg.segments().zip(&segments) {
                assert_eq!(s.name, v.name, "{text:?}");
                for n in 1..s.fields.len() + 3 {
                    assert_eq!(
                        s.field(n).map(|f| f.raw_value()),
                        v.field(n),
                        "{text:?} {} field {n}",
                        s.name
                    );
                }
            }
            assert_eq!(
                view.segment("PID").map(|s| s.name),
                msg.segment("PID").map(|s| s.name)
            );
        }
    }

    const A01: &str = "MSH|^~\\&|APP|FAC|RAPP|RFAC|20261101120000||ADT^A01^ADT_A01|CID1|P|2.5.1|||AL|NE||UNICODE UTF-8\rPID|||MRN1^^^HOSP^MR~99^^^SSA^SS||DOE^JANE\r";

    #[test]
    fn reads_msh_fields_the_bridge_needs() {
        let m = read(A01.as_bytes(), ReadOptions::default()).unwrap();
        let h = &m.header;
        assert_eq!(
            (h.sending_application.as_str(), h.sending_facility.as_str()),
            ("APP", "FAC")
        );
        assert_eq!(
            (
                h.message_type.as_str(),
                h.trigger_event.as_str(),
                h.message_structure.as_str()
            ),
            ("ADT", "A01", "ADT_A01")
        );
        assert_eq!(h.control_id, "CID1");
        assert_eq!(h.version_number(), Some((2, 5)));
        assert_eq!(
            (h.accept_ack_type.as_str(), h.application_ack_type.as_str()),
            ("AL", "NE")
        );
        assert_eq!(h.charset, "UNICODE UTF-8");
        assert_eq!(m.patient_identifiers.len(), 2);
        assert_eq!(m.patient_identifiers[0].type_code, "MR");
    }

    #[test]
    fn lf_crlf_bom_and_blank_lines_read_the_same() {
        let lf = A01.replace('\r', "\n");
        let crlf = A01.replace('\r', "\r\n");
        let bom = format!("\u{feff}{}", A01.replace('\r', "\r\r"));
        for v in [lf, crlf, bom] {
            let m = read(v.as_bytes(), ReadOptions::default()).unwrap();
            assert_eq!(m.header.control_id, "CID1");
            assert_eq!(m.patient_identifiers.len(), 2);
        }
    }

    #[test]
    fn whitespace_before_msh_inside_the_frame_is_tolerated() {
        let v = format!("\r\n  {A01}");
        assert_eq!(
            read(v.as_bytes(), ReadOptions::default())
                .unwrap()
                .header
                .control_id,
            "CID1"
        );
    }

    #[test]
    fn a_truncation_character_in_msh2_does_not_shift_fields() {
        let v28 = A01
            .replacen("^~\\&", "^~\\&#", 1)
            .replacen("2.5.1", "2.8", 1);
        let m = read(v28.as_bytes(), ReadOptions::default()).unwrap();
        assert_eq!(m.header.control_id, "CID1");
        assert_eq!(m.header.sending_application, "APP");
        assert_eq!(m.header.delimiters.encoding_characters, "^~\\&#");
    }

    #[test]
    fn a_line_that_is_not_a_segment_is_rejected_with_its_line_number() {
        let bad = A01.replace("PID|", "P!D|");
        let e = read(bad.as_bytes(), ReadOptions::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::SegmentSequence);
        assert_eq!(e.segment_line, Some(2));
    }

    #[test]
    fn bad_encoding_characters_are_rejected() {
        for msh in [
            "MSH|^~|A|B",
            "MSH|^^\\&|A",
            "MSH",
            "MSHX^~\\&X",
            "MSH|^~\\&abc|",
        ] {
            let e = read(msh.as_bytes(), ReadOptions::default()).unwrap_err();
            assert_eq!(e.code, ErrorCode::DataType, "{msh}");
        }
    }

    #[test]
    fn missing_control_id_is_a_required_field_error() {
        let e = read(
            b"MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\r",
            ReadOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::RequiredFieldMissing);
    }

    #[test]
    fn header_only_survives_a_broken_body() {
        let bad = A01.replace("PID|", "P!D|");
        let h = read_header_only(bad.as_bytes(), ReadOptions::default()).unwrap();
        assert_eq!(h.control_id, "CID1");
    }

    #[test]
    fn authority_from_cx4_universal_id() {
        let m = read(
            b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|X|P|2.5\rPID|||M3^^^&1.2.3&ISO^MR\r",
            ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(m.patient_identifiers[0].authority_namespace, "");
        assert_eq!(m.patient_identifiers[0].authority_universal_id, "1.2.3");
    }
}
