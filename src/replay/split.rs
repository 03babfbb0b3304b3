//! Splitting files into messages, for replay: whatever shape analysts and
//! interface-engine captures come in.
//!
//! Accepted: one or many messages per file; CR, LF or CRLF segment
//! separators; a UTF-8 BOM; FHS/BHS batch files (their messages are sent one
//! by one); MLLP-framed captures (`<VT>…<FS><CR>`). Messages are sent with CR
//! separators, as MLLP senders do.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::hl7::batch;
use crate::mllp::{MllpCodec, START};

/// One message found in an input file.
#[derive(Debug, Clone)]
pub struct Found {
    pub file: PathBuf,
    /// 1-based position of the message within its file.
    pub index: usize,
    pub bytes: Bytes,
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
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    let mut out = Vec::with_capacity(content.len() + 1);
    for line in content.split(|&b| b == b'\n' || b == b'\r') {
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
    fn text_without_msh_is_still_a_message_and_blank_is_nothing() {
        assert_eq!(split(b"PID|||1\n").len(), 1);
        assert!(split(b"\n\r\n  ").is_empty());
    }
}
