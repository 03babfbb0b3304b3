//! Where each message's lines are in the file.
//!
//! [`split`] hands out messages normalised (CR separators, no BOM, no MLLP
//! framing, no batch envelope), so each message line is looked for again
//! among the file's lines, in order, to report positions as an editor shows
//! them. Lines no message took are reported too. hl7-parser reads one
//! message from a string and knows nothing of files, so this is our own.

use crate::hl7::split;
use crate::mllp::{END, START};

use super::tree::Problem;

/// A line of the file with content: its number, the characters before the
/// content (MLLP start blocks), and the content.
struct FileLine<'a> {
    number: usize,
    lead: usize,
    core: &'a [u8],
}

/// Where a message line is: its file line number, and the characters before
/// it on that line (an MLLP start block). Columns are `lead` + 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Place {
    pub line: usize,
    pub lead: usize,
}

/// Finds messages' lines in a file, one message after the other.
pub(super) struct Locator<'a> {
    file: Vec<FileLine<'a>>,
    /// Which message each file line went to.
    owner: Vec<Option<usize>>,
    /// Where the next message's lines are looked for; None once a message
    /// could not be found (every later one counts lines from its own start).
    cursor: Option<usize>,
}

impl<'a> Locator<'a> {
    pub fn new(content: &'a [u8]) -> Self {
        let file: Vec<FileLine<'a>> = split::lines(content)
            .enumerate()
            .filter_map(|(i, line)| {
                let lead = line.iter().take_while(|&&b| b == START).count();
                let mut core = split::strip_bom(&line[lead..]);
                while let Some(c) = core.strip_suffix(&[END]) {
                    core = c;
                }
                (!core.iter().all(u8::is_ascii_whitespace)).then_some(FileLine {
                    number: i + 1,
                    lead,
                    core,
                })
            })
            .collect();
        let owner = vec![None; file.len()];
        Self {
            file,
            owner,
            cursor: Some(0),
        }
    }

    /// Places message number `m` (0-based), whose lines are `lines`: each
    /// line is found in the file, in order, after the previous message's.
    /// None when they cannot all be found; the caller then counts lines
    /// from the message's start.
    pub fn place(&mut self, m: usize, lines: &[&[u8]]) -> Option<Vec<Place>> {
        let found = self.cursor.and_then(|mut at| {
            let mut idx = Vec::with_capacity(lines.len());
            for l in lines {
                let i = (at..self.file.len()).find(|&i| self.file[i].core == *l)?;
                idx.push(i);
                at = i + 1;
            }
            Some(idx)
        });
        let Some(idx) = found else {
            self.cursor = None;
            return None;
        };
        for &i in &idx {
            self.owner[i] = Some(m);
        }
        self.cursor = idx.last().map(|i| i + 1).or(self.cursor);
        Some(
            idx.iter()
                .map(|&i| Place {
                    line: self.file[i].number,
                    lead: self.file[i].lead,
                })
                .collect(),
        )
    }

    /// Lines no message took (text before the first MSH, junk between batch
    /// trailers...), each run as a problem for the message that follows it
    /// (or the last one): (message index, problem). Nothing when some
    /// message could not be placed, as the file lines are then unknown.
    pub fn stray_lines(&self, messages: usize) -> Vec<(usize, Problem)> {
        if self.cursor.is_none() || messages == 0 {
            return Vec::new();
        }
        let envelope = |l: &FileLine<'_>| {
            [&b"FHS"[..], b"BHS", b"BTS", b"FTS"]
                .iter()
                .any(|t| l.core.starts_with(t))
        };
        let (file, owner) = (&self.file, &self.owner);
        let mut out = Vec::new();
        let mut i = 0;
        while i < file.len() {
            if owner[i].is_some() || envelope(&file[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < file.len() && owner[i].is_none() && !envelope(&file[i]) {
                i += 1;
            }
            let n = i - start;
            let next = owner[i..].iter().flatten().next().copied();
            let before_any = owner[..start].iter().all(Option::is_none);
            let text = if before_any {
                format!(
                    "the file does not start with MSH: {n} line(s) before the first MSH segment are not part of any message"
                )
            } else {
                format!("{n} line(s) outside any message are ignored")
            };
            let problem = Problem {
                line: file[start].number,
                column: file[start].lead + 1,
                text,
            };
            out.push((next.unwrap_or(messages - 1), problem));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lines_are_found_at_their_file_lines_after_a_bom_and_blank_lines() {
        let file = b"\xEF\xBB\xBFMSH|1\r\n\r\nPID|1\nMSH|2\r";
        let mut at = Locator::new(file);
        let first = at.place(0, &[b"MSH|1", b"PID|1"]).expect("placed");
        assert_eq!(
            first,
            [Place { line: 1, lead: 0 }, Place { line: 3, lead: 0 }]
        );
        let second = at.place(1, &[b"MSH|2"]).expect("placed");
        assert_eq!(second, [Place { line: 4, lead: 0 }]);
        assert!(at.stray_lines(2).is_empty());
    }

    #[test]
    fn an_mllp_start_block_is_a_lead_not_content() {
        let file = b"\x0bMSH|1\rPID|1\x1c\r";
        let mut at = Locator::new(file);
        let placed = at.place(0, &[b"MSH|1", b"PID|1"]).expect("placed");
        assert_eq!(placed[0], Place { line: 1, lead: 1 });
        assert_eq!(placed[1], Place { line: 2, lead: 0 });
    }

    #[test]
    fn a_message_not_in_the_file_stops_placing_and_stray_line_reports() {
        let mut at = Locator::new(b"junk\rMSH|1\r");
        assert_eq!(at.place(0, &[b"MSH|2"]), None);
        assert_eq!(at.place(1, &[b"MSH|1"]), None);
        assert!(at.stray_lines(2).is_empty());
    }

    #[test]
    fn stray_lines_go_to_the_next_message_or_the_last() {
        let mut at = Locator::new(b"junk\rMSH|1\rBTS|1\rmore\rjunk\r");
        at.place(0, &[b"MSH|1"]).expect("placed");
        let stray = at.stray_lines(1);
        assert_eq!(stray.len(), 2, "{stray:?}");
        assert_eq!((stray[0].0, stray[0].1.line, stray[0].1.column), (0, 1, 1));
        assert!(stray[0]
            .1
            .text
            .starts_with("the file does not start with MSH: 1 line(s)"));
        assert_eq!((stray[1].0, stray[1].1.line), (0, 4));
        assert_eq!(stray[1].1.text, "2 line(s) outside any message are ignored");
    }
}
