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

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::hl7::batch;
use crate::mllp::{MllpCodec, START};

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

/// Files under `paths`: directories recursively, each level in sorted order.
pub fn files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        collect(p, &mut out)?;
    }
    Ok(out)
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            // Hidden files (editor swap files, .DS_Store) are not messages.
            if e.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            collect(&e, out)?;
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Splits one file's bytes into messages.
pub fn split(content: &[u8]) -> Vec<Bytes> {
    if content.contains(&START) {
        let mut codec = MllpCodec::new(usize::MAX / 2);
        let mut buf = BytesMut::from(content);
        let mut frames = Vec::new();
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            frames.extend(split_unframed(&f));
        }
        return frames;
    }
    split_unframed(content)
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
}
