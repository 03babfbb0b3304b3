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

mod normalise;
#[cfg(test)]
mod tests;
mod view;

use normalise::{normalise, normalise_msh, Text};
pub use view::{MessageView, SegmentView};

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
