//! Reading one HL7 v2 message: charset, segment separators, MSH and PID-3.
//!
//! hl7-parser parses a `&str` and silently stops at the first line it cannot
//! read as a segment. So the parser is given a normalised copy (CR separators,
//! no blank lines, MSH-2 reduced to the four classic delimiters), and the
//! reader checks that every line was consumed. A message that does not parse
//! completely is rejected, never half-read. The stored record keeps the exact
//! bytes received; the copy exists only to be read.

use hl7_parser::Message;

use super::charset::{Charset, CharsetError};
use super::error::{ErrorCode, Reject};

const BOM: &[u8] = b"\xEF\xBB\xBF";

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
pub fn strip_bom(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_prefix(BOM).unwrap_or(raw);
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(raw.len());
    &raw[start..]
}

/// Reads the MSH alone, from raw bytes, so that even a message whose body is
/// broken gets an ACK that quotes its MSH-10 and echoes its delimiters.
pub fn read_header_only(raw: &[u8], opts: ReadOptions) -> Option<MessageHeader> {
    let raw = strip_bom(raw);
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
    let msg = Message::parse(&normalised).ok()?;
    msg.segment("MSH").map(|msh| header_from(msh, delims))
}

/// A message decoded and normalised for hl7-parser: every line has been
/// checked to be a segment. Parse it once with [`Prepared::parse`].
#[derive(Debug, Clone)]
pub struct Prepared {
    pub text: String,
    pub delimiters: Delimiters,
    pub charset: Charset,
}

/// Prepares a whole message (every segment kept), for stages that need all of
/// it (the FHIR transform). The caller parses it once with [`Prepared::parse`].
pub fn read_full(raw: &[u8], opts: ReadOptions) -> Result<Prepared, Reject> {
    prepare(raw, opts, Keep::All)
}

/// Reads a whole message: decode, normalise, parse, extract MSH and PID-3.
///
/// Every line is checked to be a segment, but only MSH and PID are parsed
/// into fields: they are all routing and keying need, and a segment whose
/// line passes the check always parses (hl7-parser accepts any field content).
pub fn read(raw: &[u8], opts: ReadOptions) -> Result<ParsedMessage, Reject> {
    prepare(raw, opts, Keep::HeaderAndPatient)?
        .parse()
        .map(|(_, m)| m)
}

/// Which checked lines go into the parse copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    All,
    HeaderAndPatient,
}

/// Decodes the charset and normalises separators and MSH-2.
fn prepare(raw: &[u8], opts: ReadOptions, keep: Keep) -> Result<Prepared, Reject> {
    let raw = strip_bom(raw);
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
    Ok(Prepared {
        text: normalised.text,
        delimiters: normalised.delimiters,
        charset,
    })
}

impl Prepared {
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
        let header = header_from(msh, self.delimiters.clone());
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
        let patient_identifiers = msg
            .segment("PID")
            .and_then(|pid| pid.field(3))
            .map(|f| {
                f.repeats()
                    .map(|r| {
                        let comp = |n: usize| r.component(n).map(|c| c.raw_value()).unwrap_or("");
                        let sub = |n: usize, s: usize| {
                            r.component(n)
                                .and_then(|c| c.subcomponent(s))
                                .map(|c| c.raw_value())
                                .unwrap_or("")
                        };
                        PatientIdentifier {
                            raw: r.raw_value().to_owned(),
                            id: comp(1).to_owned(),
                            authority_namespace: sub(4, 1).to_owned(),
                            authority_universal_id: sub(4, 2).to_owned(),
                            type_code: comp(5).to_owned(),
                        }
                    })
                    .filter(|cx| !cx.id.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let parsed = ParsedMessage {
            header,
            charset: self.charset,
            patient_identifiers,
        };
        Ok((msg, parsed))
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
    text: String,
    delimiters: Delimiters,
}

/// Normalises the parse copy; see the module doc for why. Every line is
/// checked; with `Keep::HeaderAndPatient` only MSH and the first PID are kept.
fn normalise(text: &str, keep: Keep) -> Result<Normalised, Reject> {
    let mut lines = text.split(['\r', '\n']).filter(|l| !l.trim().is_empty());
    let msh = lines.next().ok_or_else(|| {
        Reject::new(
            ErrorCode::SegmentSequence,
            "message does not start with an MSH segment",
        )
    })?;
    let (delimiters, msh_line) = normalise_msh(msh)?;
    let mut out = String::with_capacity(if keep == Keep::All {
        text.len() + 8
    } else {
        512
    });
    out.push_str(&msh_line);
    let mut have_pid = false;
    for (i, line) in lines.enumerate() {
        let line = line.trim_end_matches([' ', '\t']);
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
        out.push('\r');
        out.push_str(line);
        if line.len() == 3 {
            // hl7-parser needs a field separator after the segment name.
            out.push(delimiters.field);
        }
    }
    Ok(Normalised {
        text: out,
        delimiters,
    })
}

/// Validates MSH-1/MSH-2 and returns the delimiters plus an MSH line with a
/// 4-character MSH-2 (the v2.7+ truncation character is dropped for parsing).
fn normalise_msh(line: &str) -> Result<(Delimiters, String), Reject> {
    let bad = || {
        Reject::new(
            ErrorCode::DataType,
            "MSH-1/MSH-2 encoding characters are invalid",
        )
        .at_field("MSH", 2)
    };
    let line = line.trim_end_matches(['\r', '\n']);
    let mut chars = line.chars();
    if chars.by_ref().take(3).collect::<String>() != "MSH" {
        return Err(Reject::new(
            ErrorCode::SegmentSequence,
            "message does not start with an MSH segment",
        ));
    }
    let field = chars.next().ok_or_else(bad)?;
    let enc: String = chars.by_ref().take_while(|&c| c != field).collect();
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
    let e: Vec<char> = enc.chars().collect();
    let mut distinct = e.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != e.len() {
        return Err(bad());
    }
    let delimiters = Delimiters {
        field,
        component: e[0],
        repetition: e[1],
        escape: e[2],
        subcomponent: e[3],
        encoding_characters: enc.clone(),
    };
    let rest = &line[4 + enc.len()..];
    let mut msh = String::with_capacity(line.len());
    msh.push_str("MSH");
    msh.push(field);
    msh.extend(&e[..4]);
    msh.push_str(rest);
    Ok((delimiters, msh))
}

fn header_from(msh: &hl7_parser::message::Segment<'_>, delimiters: Delimiters) -> MessageHeader {
    let field = |n: usize| msh.field(n).map(|f| f.raw_value()).unwrap_or("").to_owned();
    let first_rep = |n: usize| {
        msh.field(n)
            .and_then(|f| f.repeat(1))
            .map(|r| r.raw_value())
            .unwrap_or("")
            .to_owned()
    };
    let msh9 = |c: usize| {
        msh.field(9)
            .and_then(|f| f.component(c))
            .map(|c| c.raw_value().trim().to_owned())
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
        charset: first_rep(18),
        delimiters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
