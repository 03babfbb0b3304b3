//! Character sets named by MSH-18 (HL7 table 0211).
//!
//! Only the parse copy is decoded: the stored value is always the exact bytes
//! received. ISO 8859-1 is decoded by hand because encoding_rs (following
//! WHATWG) treats the label as windows-1252, which differs in 0x80..=0x9F.

use std::borrow::Cow;

use encoding_rs::{EncoderResult, Encoding};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// MSH-18 empty or `ASCII`: read as UTF-8 (a superset), else the fallback.
    Ascii,
    Utf8,
    Latin1,
    /// Any other single- or multi-byte set encoding_rs knows (8859/2.., GB 18030, BIG-5, ...).
    Other(&'static Encoding),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharsetError {
    #[error("unsupported character set in MSH-18")]
    Unsupported,
    #[error("bytes are not valid in the declared character set")]
    Invalid,
    #[error("bytes are not ASCII or UTF-8 and no fallback character set is configured")]
    NoFallback,
}

impl Charset {
    /// Maps an MSH-18 value (first repetition) to a charset.
    pub fn from_msh18(value: &str) -> Result<Self, CharsetError> {
        let v = value.trim();
        let label = match v.to_ascii_uppercase().as_str() {
            "" | "ASCII" => return Ok(Charset::Ascii),
            "UNICODE UTF-8" | "UTF-8" | "UNICODE" => return Ok(Charset::Utf8),
            "8859/1" => return Ok(Charset::Latin1),
            "8859/2" => "iso-8859-2",
            "8859/3" => "iso-8859-3",
            "8859/4" => "iso-8859-4",
            "8859/5" => "iso-8859-5",
            "8859/6" => "iso-8859-6",
            "8859/7" => "iso-8859-7",
            "8859/8" => "iso-8859-8",
            "8859/9" => "iso-8859-9",
            "8859/15" => "iso-8859-15",
            "GB 18030-2000" => "gb18030",
            "BIG-5" => "big5",
            "KS X 1001" => "euc-kr",
            "WINDOWS-1252" | "CP1252" => "windows-1252",
            _ => return Err(CharsetError::Unsupported),
        };
        Encoding::for_label(label.as_bytes())
            .map(Charset::Other)
            .ok_or(CharsetError::Unsupported)
    }

    /// Parses a configured fallback name (`windows-1252`, `8859/1`, `none`).
    pub fn fallback_from_config(name: &str) -> Result<Option<Self>, CharsetError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(None),
            "latin1" | "iso-8859-1" | "8859/1" => Ok(Some(Charset::Latin1)),
            other => Encoding::for_label(other.as_bytes())
                .map(|e| Some(Charset::Other(e)))
                .ok_or(CharsetError::Unsupported),
        }
    }

    /// The name recorded in the `hl7.charset` header: what the bytes were read as.
    pub fn label(&self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Utf8 => "UTF-8",
            Charset::Latin1 => "ISO-8859-1",
            Charset::Other(e) => e.name(),
        }
    }

    /// Decodes `bytes`; returns the text and the charset actually used.
    pub fn decode<'a>(
        self,
        bytes: &'a [u8],
        fallback: Option<Charset>,
    ) -> Result<(Cow<'a, str>, Charset), CharsetError> {
        match self {
            Charset::Ascii => match std::str::from_utf8(bytes) {
                Ok(s) if s.is_ascii() => Ok((Cow::Borrowed(s), Charset::Ascii)),
                Ok(s) => Ok((Cow::Borrowed(s), Charset::Utf8)),
                Err(_) => match fallback {
                    Some(fb) if fb != Charset::Ascii => fb.decode(bytes, None),
                    _ => Err(CharsetError::NoFallback),
                },
            },
            Charset::Utf8 => std::str::from_utf8(bytes)
                .map(|s| (Cow::Borrowed(s), Charset::Utf8))
                .map_err(|_| CharsetError::Invalid),
            Charset::Latin1 => Ok((decode_latin1(bytes), Charset::Latin1)),
            Charset::Other(enc) => enc
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|s| (s, self))
                .ok_or(CharsetError::Invalid),
        }
    }

    /// Encodes text (an ACK) into this charset. Characters the set cannot hold
    /// become `?`; ACK content is MSH fields the sender itself encoded, so in
    /// practice everything round-trips.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Ascii | Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            // Not `Encoding::encode`: it writes unmappable characters as
            // HTML references (`&#854;`), putting `&` and `#` (HL7
            // delimiters) into an ACK; this is reachable in a batch whose
            // messages declare different charsets.
            Charset::Other(enc) => {
                let mut encoder = enc.new_encoder();
                let mut out = Vec::new();
                let mut rest = text;
                loop {
                    out.reserve(
                        encoder
                            .max_buffer_length_from_utf8_without_replacement(rest.len())
                            .unwrap_or(rest.len().saturating_mul(4).saturating_add(16)),
                    );
                    let (result, read) =
                        encoder.encode_from_utf8_to_vec_without_replacement(rest, &mut out, true);
                    rest = &rest[read..];
                    match result {
                        EncoderResult::InputEmpty => break out,
                        EncoderResult::Unmappable(_) => out.push(b'?'),
                        EncoderResult::OutputFull => {}
                    }
                }
            }
        }
    }
}

fn decode_latin1(bytes: &[u8]) -> Cow<'_, str> {
    if bytes.is_ascii() {
        // ASCII is valid UTF-8, so this never fails.
        return String::from_utf8_lossy(bytes);
    }
    Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msh18_names_from_table_0211() {
        assert_eq!(Charset::from_msh18(""), Ok(Charset::Ascii));
        assert_eq!(Charset::from_msh18("ASCII"), Ok(Charset::Ascii));
        assert_eq!(Charset::from_msh18("UNICODE UTF-8"), Ok(Charset::Utf8));
        assert_eq!(Charset::from_msh18("8859/1"), Ok(Charset::Latin1));
        assert!(matches!(
            Charset::from_msh18("8859/2"),
            Ok(Charset::Other(_))
        ));
        assert_eq!(
            Charset::from_msh18("UNICODE UTF-16"),
            Err(CharsetError::Unsupported)
        );
    }

    #[test]
    fn unmappable_characters_encode_as_question_marks_not_html_references() {
        let cp1252 = Charset::from_msh18("WINDOWS-1252").unwrap();
        // U+0356 has no windows-1252 byte; encoding_rs would write "&#854;".
        assert_eq!(cp1252.encode("FX\u{356}sh|\u{e9}"), b"FX?sh|\xe9");
        let gb = Charset::from_msh18("GB 18030-2000").unwrap();
        let text = "MSA|AA|\u{4e2d}\u{6587}";
        assert_eq!(gb.decode(&gb.encode(text), None).unwrap().0, text);
    }

    #[test]
    fn latin1_is_decoded_byte_for_byte_including_c1_range() {
        let (s, used) = Charset::Latin1.decode(b"Z\xe9\x85", None).unwrap();
        assert_eq!(s, "Z\u{e9}\u{85}");
        assert_eq!(used, Charset::Latin1);
        assert_eq!(Charset::Latin1.encode(&s), b"Z\xe9\x85");
    }

    #[test]
    fn undeclared_non_utf8_uses_the_fallback() {
        let fb = Charset::fallback_from_config("windows-1252").unwrap();
        let (s, used) = Charset::Ascii.decode(b"caf\xe9 \x80", fb).unwrap();
        assert_eq!(s, "caf\u{e9} \u{20ac}");
        assert_eq!(used.label(), "windows-1252");
        assert_eq!(
            Charset::Ascii.decode(b"caf\xe9", None).unwrap_err(),
            CharsetError::NoFallback
        );
    }

    #[test]
    fn declared_utf8_must_be_valid() {
        assert_eq!(
            Charset::Utf8.decode(b"\xff", None).unwrap_err(),
            CharsetError::Invalid
        );
    }
}
