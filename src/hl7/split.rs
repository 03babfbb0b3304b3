//! Splitting files into messages, for `replay`, `convert` and `inspect`:
//! whatever shape analysts and interface-engine captures come in.
//!
//! Accepted: one or many messages per file; CR, LF or CRLF segment
//! separators; a UTF-8 BOM; FHS/BHS batch files (their messages come out one
//! by one); MLLP-framed captures (`<VT>…<FS><CR>`). Messages come out with CR
//! separators, as MLLP senders send them.
//!
//! This is also the one place that knows what a byte order mark is
//! ([`strip_bom`]) and what a line of a file is ([`lines`]).

use bytes::Bytes;

use crate::hl7::batch;
use crate::mllp::{END, START, TRAILER};

/// The UTF-8 byte order mark some editors put at the start of a file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a leading UTF-8 byte order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// The lines of a file as an editor counts them: CR, LF and CRLF each end
/// one line, and the text after the last line end is one more line (empty
/// if the file ends with a line end). A BOM is not part of the first line.
pub fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(strip_bom(content));
    std::iter::from_fn(move || {
        let text = rest?;
        let Some(end) = text.iter().position(|&b| b == b'\r' || b == b'\n') else {
            rest = None;
            return Some(text);
        };
        let skip = if text[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = Some(&text[end + skip..]);
        Some(&text[..end])
    })
}

/// Bytes of a file that were not turned into a message: where they were and
/// what they were, never what they said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Byte offset in the file (after decompression, for `.gz`).
    pub offset: usize,
    pub len: usize,
    pub what: &'static str,
}

/// A file split into messages, with what was left out.
#[derive(Debug, Default)]
pub struct Split {
    pub messages: Vec<Bytes>,
    pub dropped: Vec<Dropped>,
}

/// Splits one file's bytes into messages.
pub fn split(content: &[u8]) -> Vec<Bytes> {
    split_checked(content).messages
}

/// Splits one file's bytes into messages and says what was dropped: a
/// binary file (NUL bytes: HL7 v2 is text), a truncated last MLLP frame,
/// bytes between frames, a stray start or end block in a plain file, text
/// before the first MSH. A file that is text but has no MSH at all is
/// still one message (the bridge rejects and dead-letters it; sending such
/// files on purpose is how its reject path is tested).
pub fn split_checked(content: &[u8]) -> Split {
    if let Some(at) = content.iter().position(|&b| b == 0) {
        return Split {
            messages: Vec::new(),
            dropped: vec![Dropped {
                offset: at,
                len: content.len(),
                what: "binary content (a NUL byte; HL7 v2 is text): the whole file",
            }],
        };
    }
    let bom = content.len() - strip_bom(content).len();
    let first = content[bom..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| bom + i);
    let mut out = Split::default();
    match first {
        Some(at) if content[at] == START => framed(content, at, &mut out),
        _ => unframed(content, 0, &mut out),
    }
    out
}

/// An MLLP capture: `<VT>payload<FS><CR>` frames, whitespace between them.
fn framed(content: &[u8], mut pos: usize, out: &mut Split) {
    while pos < content.len() {
        let b = content[pos];
        if b.is_ascii_whitespace() {
            pos += 1;
            continue;
        }
        if b != START {
            let next = find(content, pos, START).unwrap_or(content.len());
            out.dropped.push(Dropped {
                offset: pos,
                len: next - pos,
                what: "bytes outside any MLLP frame",
            });
            pos = next;
            continue;
        }
        let body = pos + 1;
        let end = find(content, body, END);
        let restart = find(content, body, START);
        match (end, restart) {
            (Some(e), r) if r.is_none_or(|r| e < r) => {
                unframed(&content[body..e], body, out);
                pos = e + 1;
                if content.get(pos) == Some(&TRAILER) {
                    pos += 1;
                }
            }
            (_, next) => {
                let stop = next.unwrap_or(content.len());
                out.dropped.push(Dropped {
                    offset: pos,
                    len: stop - pos,
                    what: "a truncated MLLP frame (no end block)",
                });
                pos = stop;
            }
        }
    }
}

fn find(content: &[u8], from: usize, byte: u8) -> Option<usize> {
    content[from..]
        .iter()
        .position(|&b| b == byte)
        .map(|i| from + i)
}

/// Plain text (or one frame's payload, found at `base` in the file).
fn unframed(content: &[u8], base: usize, out: &mut Split) {
    // Stray frame bytes are dropped, each run reported where it was.
    let mut clean = Vec::with_capacity(content.len());
    let mut i = 0;
    while i < content.len() {
        if matches!(content[i], START | END) {
            let run = content[i..]
                .iter()
                .take_while(|&&b| matches!(b, START | END))
                .count();
            out.dropped.push(Dropped {
                offset: base + i,
                len: run,
                what: "a stray MLLP start or end block",
            });
            i += run;
        } else {
            clean.push(content[i]);
            i += 1;
        }
    }
    if let Some(lead) = text_before_header(&clean) {
        out.dropped.push(Dropped {
            offset: base,
            len: lead,
            what: "text before the first MSH segment",
        });
    }
    out.messages.extend(split_unframed(&clean));
}

/// The length of non-blank text before the first MSH (or FHS/BHS) line,
/// when there is such a line: `split_unframed` starts at it.
fn text_before_header(content: &[u8]) -> Option<usize> {
    let body = strip_bom(content);
    let bom = content.len() - body.len();
    let header = (0..body.len())
        .filter(|&i| i == 0 || matches!(body[i - 1], b'\r' | b'\n'))
        .find(|&i| {
            [&b"MSH"[..], b"FHS", b"BHS"]
                .iter()
                .any(|h| body[i..].starts_with(h))
        })?;
    let lead = &body[..header];
    (!lead.iter().all(u8::is_ascii_whitespace)).then_some(bom + header)
}

fn split_unframed(content: &[u8]) -> Vec<Bytes> {
    let normalised = Bytes::from(to_cr(content));
    if batch::is_batch(&normalised) {
        return batch::split(&normalised).messages;
    }
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    for line in normalised.split(|&b| b == b'\r') {
        if line.starts_with(b"MSH") {
            if let Some(s) = start {
                out.push(normalised.slice(s..pos));
            }
            start = Some(pos);
        }
        pos += line.len() + 1;
    }
    match start {
        Some(s) => out.push(normalised.slice(s..normalised.len())),
        // No MSH at all: still a message as far as the bridge is concerned
        // (it will be rejected and dead-lettered), unless it is blank.
        None if !normalised.iter().all(u8::is_ascii_whitespace) => out.push(normalised),
        None => {}
    }
    out
}

/// BOM stripped, CRLF and LF turned into CR, blank lines dropped, one
/// trailing CR.
fn to_cr(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 1);
    for line in lines(content) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\r');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|||1\r";
    const B: &[u8] = b"MSH|^~\\&|A|B|C|D|1||ADT^A08|2|P|2.5\rPID|||2\r";

    #[test]
    fn several_messages_with_any_separator_and_a_bom() {
        let crlf = [&b"\xEF\xBB\xBF"[..], A, B]
            .concat()
            .iter()
            .flat_map(|&b| {
                if b == b'\r' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect::<Vec<_>>();
        let got = split(&crlf);
        assert_eq!(got, vec![Bytes::from_static(A), Bytes::from_static(B)]);
        let lf: Vec<u8> = [A, B]
            .concat()
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect();
        assert_eq!(split(&lf).len(), 2);
    }

    #[test]
    fn mllp_framed_capture() {
        let cap = [crate::mllp::frame(A), b"\n".to_vec(), crate::mllp::frame(B)].concat();
        assert_eq!(
            split(&cap),
            vec![Bytes::from_static(A), Bytes::from_static(B)]
        );
    }

    #[test]
    fn batch_file_yields_its_messages() {
        let b = [&b"FHS|^~\\&\rBHS|^~\\&\r"[..], A, B, b"BTS|2\rFTS|1\r"].concat();
        assert_eq!(
            split(&b),
            vec![Bytes::from_static(A), Bytes::from_static(B)]
        );
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line_and_a_bom_is_not_text() {
        let got: Vec<&[u8]> = lines(b"\xEF\xBB\xBFa\rb\nc\r\nd\n\re\n").collect();
        let want: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"", b"e", b""];
        assert_eq!(got, want);
        assert_eq!(lines(b"").collect::<Vec<_>>(), vec![&b""[..]]);
        assert_eq!(strip_bom(b"\xEF\xBB\xBFMSH"), b"MSH");
        assert_eq!(strip_bom(b"MSH\xEF\xBB\xBF"), b"MSH\xEF\xBB\xBF");
    }

    #[test]
    fn text_without_msh_is_still_a_message_and_blank_is_nothing() {
        assert_eq!(split(b"PID|||1\n").len(), 1);
        assert!(split(b"\n\r\n  ").is_empty());
    }

    #[test]
    fn a_stray_start_block_after_two_messages_is_dropped_and_said() {
        let content = [A, B, &[START][..]].concat();
        let got = split_checked(&content);
        assert_eq!(
            got.messages,
            vec![Bytes::from_static(A), Bytes::from_static(B)]
        );
        assert_eq!(
            got.dropped,
            vec![Dropped {
                offset: A.len() + B.len(),
                len: 1,
                what: "a stray MLLP start or end block"
            }]
        );
    }

    #[test]
    fn a_truncated_last_frame_and_junk_between_frames_are_dropped_and_said() {
        let whole = crate::mllp::frame(A);
        let cut = &crate::mllp::frame(B)[..10];
        let content = [&whole[..], b"junk", cut].concat();
        let got = split_checked(&content);
        assert_eq!(got.messages, vec![Bytes::from_static(A)]);
        let at = whole.len();
        assert_eq!(
            got.dropped,
            vec![
                Dropped {
                    offset: at,
                    len: 4,
                    what: "bytes outside any MLLP frame"
                },
                Dropped {
                    offset: at + 4,
                    len: 10,
                    what: "a truncated MLLP frame (no end block)"
                },
            ]
        );
    }

    #[test]
    fn a_binary_file_is_dropped_whole_and_text_before_the_first_msh_is_said() {
        let got = split_checked(b"\x7fELF\x02\x01\x00\x00MSH|");
        assert!(got.messages.is_empty());
        assert_eq!(got.dropped[0].offset, 6);
        assert_eq!(got.dropped[0].len, 12, "the whole file");

        let lead = [&b"Exported by X\n"[..], A].concat();
        let got = split_checked(&lead);
        assert_eq!(got.messages, vec![Bytes::from_static(A)]);
        assert_eq!(
            got.dropped,
            vec![Dropped {
                offset: 0,
                len: 14,
                what: "text before the first MSH segment"
            }]
        );
        assert!(
            split_checked(&[b"\n\n", A].concat()).dropped.is_empty(),
            "blank lines are not text"
        );
    }
}
