//! Splitting a prepared message into segments and fields without copying.

use super::*;

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
    pub(super) fn new(text: &'a str, d: &Delimiters) -> Self {
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
