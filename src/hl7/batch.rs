//! The HL7 v2 batch protocol (chapter 2): `[FHS] BHS {MSH...} BTS [FTS]`.
//!
//! A batch is split into its messages as byte slices of the frame, so each
//! one is stored exactly as it was sent, as if it had arrived alone.

use bytes::Bytes;

use super::ack::{escape, hl7_now, ControlIds};
use super::message::{trim_start, Delimiters};

/// FHS or BHS fields the reply needs. Values are raw, as sent.
#[derive(Debug, Clone, Default)]
pub struct EnvelopeHeader {
    pub delimiters: Delimiters,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub control_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub file_header: Option<EnvelopeHeader>,
    pub batch_header: Option<EnvelopeHeader>,
    /// Each message's exact bytes, from its MSH up to the next MSH or trailer.
    pub messages: Vec<Bytes>,
    /// Lines outside any message that are not envelope segments (counted, not stored twice:
    /// the whole frame is what was received, and each message slice is stored).
    pub stray_lines: usize,
}

/// True when a frame starts with FHS or BHS (after an optional BOM).
pub fn is_batch(frame: &[u8]) -> bool {
    let f = trim_start(frame);
    f.starts_with(b"FHS") || f.starts_with(b"BHS")
}

/// Splits a batch frame. Never fails: what it cannot place is counted in `stray_lines`.
pub fn split(frame: &Bytes) -> Batch {
    let base = frame.len() - trim_start(frame).len();
    let mut batch = Batch::default();
    let mut current: Option<usize> = None;
    let mut pos = base;
    while pos < frame.len() {
        let rest = &frame[pos..];
        let line_len = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let mut next = pos + line_len;
        while next < frame.len() && (frame[next] == b'\r' || frame[next] == b'\n') {
            next += 1;
        }
        let line = &rest[..line_len];
        let tag = line.get(..3).unwrap_or(line);
        match tag {
            b"MSH" | b"BTS" | b"FTS" | b"FHS" | b"BHS" => {
                if let Some(start) = current.take() {
                    batch.messages.push(frame.slice(start..pos));
                }
                match tag {
                    b"MSH" => current = Some(pos),
                    b"FHS" => batch.file_header = envelope(line),
                    b"BHS" => batch.batch_header = envelope(line),
                    _ => {}
                }
            }
            _ if current.is_none() && !line.iter().all(u8::is_ascii_whitespace) => {
                batch.stray_lines += 1
            }
            _ => {}
        }
        pos = next;
    }
    if let Some(start) = current {
        batch.messages.push(frame.slice(start..));
    }
    batch
}

fn envelope(line: &[u8]) -> Option<EnvelopeHeader> {
    let text = String::from_utf8_lossy(line);
    let mut chars = text.chars().skip(3);
    let field = chars.next()?;
    let fields: Vec<&str> = text.split(field).collect();
    let enc = fields.get(1).copied().unwrap_or("^~\\&");
    let e: Vec<char> = enc.chars().collect();
    let get = |n: usize| fields.get(n - 1).copied().unwrap_or("").to_owned();
    Some(EnvelopeHeader {
        delimiters: Delimiters {
            field,
            component: e.first().copied().unwrap_or('^'),
            repetition: e.get(1).copied().unwrap_or('~'),
            escape: e.get(2).copied().unwrap_or('\\'),
            subcomponent: e.get(3).copied().unwrap_or('&'),
            encoding_characters: enc.to_owned(),
        },
        sending_application: get(3),
        sending_facility: get(4),
        receiving_application: get(5),
        receiving_facility: get(6),
        control_id: get(11),
    })
}

/// Wraps ACK messages (each ending in CR) in a reply batch: FHS/BHS with
/// sender and receiver swapped and FHS-12/BHS-12 quoting the inbound control
/// IDs, then BTS/FTS with the counts.
pub fn reply_text(batch: &Batch, acks: &[String], ids: &ControlIds) -> String {
    let now = hl7_now();
    let mut s = String::new();
    let header = |seg: &str, h: &EnvelopeHeader, s: &mut String| {
        let d = &h.delimiters;
        let f = d.field;
        s.push_str(&format!(
            "{seg}{f}{enc}{f}{ra}{f}{rf}{f}{sa}{f}{sf}{f}{now}{f}{f}{f}{f}{id}{f}{orig}\r",
            enc = d.encoding_characters,
            ra = h.receiving_application,
            rf = h.receiving_facility,
            sa = h.sending_application,
            sf = h.sending_facility,
            id = ids.next(),
            orig = escape(&h.control_id, d),
        ));
    };
    if let Some(fhs) = &batch.file_header {
        header("FHS", fhs, &mut s);
    }
    let bhs = batch
        .batch_header
        .clone()
        .or_else(|| batch.file_header.clone())
        .unwrap_or_default();
    header("BHS", &bhs, &mut s);
    for a in acks {
        s.push_str(a);
    }
    let f = bhs.delimiters.field;
    s.push_str(&format!("BTS{f}{}\r", acks.len()));
    if let Some(fhs) = &batch.file_header {
        s.push_str(&format!("FTS{}1\r", fhs.delimiters.field));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: &[u8] = b"FHS|^~\\&|FAPP|FFAC|RAPP|RFAC|20261101||||FILE1\rBHS|^~\\&|BAPP|BFAC|RAPP|RFAC|20261101||||BATCH1\rMSH|^~\\&|A|B|C|D|2026||ADT^A01|M1|P|2.5\rPID|||1\rMSH|^~\\&|A|B|C|D|2026||ADT^A08|M2|P|2.5\rPID|||2\rBTS|2\rFTS|1\r";

    #[test]
    fn messages_are_exact_slices_of_the_frame() {
        let frame = Bytes::from_static(BATCH);
        let b = split(&frame);
        assert_eq!(b.messages.len(), 2);
        assert_eq!(
            &b.messages[0][..],
            b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|M1|P|2.5\rPID|||1\r"
        );
        assert_eq!(
            &b.messages[1][..],
            b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|M2|P|2.5\rPID|||2\r"
        );
        assert_eq!(b.file_header.unwrap().control_id, "FILE1");
        assert_eq!(b.batch_header.unwrap().control_id, "BATCH1");
        assert_eq!(b.stray_lines, 0);
    }

    #[test]
    fn reply_swaps_envelope_parties_and_counts_acks() {
        let frame = Bytes::from_static(BATCH);
        let b = split(&frame);
        let acks = vec![
            "MSH|x\rMSA|AA|M1\r".to_owned(),
            "MSH|x\rMSA|AA|M2\r".to_owned(),
        ];
        let r = reply_text(&b, &acks, &ControlIds::default());
        let lines: Vec<&str> = r.trim_end().split('\r').collect();
        assert!(
            lines[0].starts_with("FHS|^~\\&|RAPP|RFAC|FAPP|FFAC|"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("|FILE1"));
        assert!(lines[1].starts_with("BHS|^~\\&|RAPP|RFAC|BAPP|BFAC|"));
        assert!(lines[1].ends_with("|BATCH1"));
        assert_eq!(lines[lines.len() - 2], "BTS|2");
        assert_eq!(lines[lines.len() - 1], "FTS|1");
    }

    #[test]
    fn is_batch_sees_past_a_bom() {
        assert!(is_batch(b"\xEF\xBB\xBFBHS|^~\\&"));
        assert!(!is_batch(b"MSH|^~\\&"));
    }
}
