//! `hl7bridge inspect`: every message of some files as a readable tree
//! (segments, named fields, repetitions, components, decoded escapes), with
//! structural problems flagged at their line and column. For analysts
//! looking at local files: printing field contents is the point.
//!
//! Files are split by [`crate::hl7::split`] (CR/LF/CRLF, BOM, several
//! messages per file, FHS/BHS batches, MLLP captures). Line numbers are
//! lines of the file as an editor counts them (CR, LF or CRLF each end one
//! line); columns count characters, 1-based.
//!
//! The tree is hl7-parser's. What it does not do is ours, each part saying
//! why: placing lines in the file (`locate`), the structural checks
//! (`check`), reading a line field by field so broken lines are still shown
//! (`read`), and showing escapes and times (`value`). The two renderings are
//! `text` and `json`.

mod check;
mod json;
mod locate;
mod read;
mod text;
mod tree;
mod value;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::hl7::charset::Charset;
use crate::hl7::files::{self, Discovery, InputError};
use crate::hl7::message::Delimiters;
use crate::hl7::split;

use locate::Locator;
use read::Header;
pub use tree::Problem;
use tree::Row;

/// Problems listed per message in the tree (a file that is not HL7 at all
/// would otherwise list every line).
const MAX_SHOWN_PROBLEMS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The tree, for people.
    Text,
    /// One JSON object per message (JSON Lines).
    Json,
}

/// What was inspected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub messages: usize,
    pub with_problems: usize,
    /// Runs of bytes dropped by the splitter (each warned about).
    pub input_warnings: usize,
}

/// Errors name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Write(std::io::Error),
}

/// Inspects the files under `paths` (directories recursively, in sorted
/// order) and writes every message to `out`. Files without messages, and a
/// count when some message has problems, are noted on `notes`. A closed
/// `out` (`inspect ... | head`) stops quietly.
pub fn run(
    paths: &[PathBuf],
    discovery: &Discovery,
    verbose: bool,
    format: Format,
    out: &mut impl Write,
    notes: &mut impl Write,
) -> Result<Summary, InspectError> {
    let mut summary = Summary::default();
    let closed = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    let found = discovery.find(paths)?;
    files::note_skipped(&found, verbose, notes);
    for file in &found.files {
        let loaded = files::load(file, notes)?;
        summary.input_warnings += loaded.split.dropped.len();
        let messages = inspect_file(&loaded.content);
        // A note that cannot be written (stderr closed) is not worth
        // stopping for; the messages and the exit status still are.
        if messages.is_empty() {
            let _ = writeln!(notes, "{}: no messages", file.display());
            continue;
        }
        let count = messages.len();
        for (i, m) in messages.iter().enumerate() {
            summary.messages += 1;
            if !m.problems.is_empty() {
                summary.with_problems += 1;
            }
            let at = Position {
                number: summary.messages,
                file,
                index: i + 1,
                count,
            };
            let written = match format {
                Format::Json => writeln!(out, "{}", m.to_json(&at)),
                Format::Text if summary.messages > 1 => {
                    writeln!(out).and_then(|()| m.write_text(out, &at))
                }
                Format::Text => m.write_text(out, &at),
            };
            match written {
                Ok(()) => {}
                Err(e) if closed(&e) => return Ok(summary),
                Err(e) => return Err(InspectError::Write(e)),
            }
        }
    }
    match out.flush() {
        Err(e) if !closed(&e) => return Err(InspectError::Write(e)),
        _ => {}
    }
    if summary.messages == 0 {
        return Err(files::empty(paths, &found).into());
    }
    if summary.with_problems > 0 || summary.input_warnings > 0 {
        let _ = writeln!(
            notes,
            "inspect: {} message(s), {} with problems, {} input warning(s)",
            summary.messages, summary.with_problems, summary.input_warnings
        );
    }
    Ok(summary)
}

/// Where a message was found, for its heading.
pub struct Position<'a> {
    /// 1-based across all inputs.
    pub number: usize,
    pub file: &'a Path,
    /// 1-based within the file.
    pub index: usize,
    pub count: usize,
}

/// One message, read for an analyst.
#[derive(Debug)]
pub struct Inspected {
    delimiters: Delimiters,
    charset: Charset,
    header: Header,
    rows: Vec<Row>,
    problems: Vec<Problem>,
    /// Line numbers count from the message's first line (the file lines
    /// could not be matched, which `split` makes unlikely).
    relative_lines: bool,
}

/// Splits a file into messages and inspects each one.
pub fn inspect_file(content: &[u8]) -> Vec<Inspected> {
    let mut locator = Locator::new(content);
    let mut messages: Vec<Inspected> = split::split(content)
        .iter()
        .enumerate()
        .map(|(m, bytes)| {
            let lines: Vec<&[u8]> = bytes
                .split(|&b| b == b'\r')
                .filter(|l| !l.is_empty())
                .collect();
            let places = locator.place(m, &lines);
            let mut inspected = read::read_message(bytes, &lines, places.as_deref().unwrap_or(&[]));
            inspected.relative_lines = places.is_none();
            inspected
        })
        .collect();
    for (m, problem) in locator.stray_lines(messages.len()) {
        if let Some(m) = messages.get_mut(m) {
            m.problems.push(problem);
            m.problems.sort_by_key(|p| (p.line, p.column));
        }
    }
    messages
}

impl Inspected {
    /// Structural problems, in file order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// (segments, lines that are not segments).
    fn segment_count(&self) -> (usize, usize) {
        let segments = self
            .rows
            .iter()
            .filter(|r| matches!(r, Row::Segment(_)))
            .count();
        (segments, self.rows.len() - segments)
    }

    /// The heading's description of the message.
    fn summary(&self) -> String {
        let h = &self.header;
        let mut parts = Vec::new();
        if !h.msh {
            parts.push("no MSH".to_owned());
        } else {
            parts.push(match (&h.message_type, &h.control_id) {
                (Some(t), Some(i)) => format!("{t} control ID {i}"),
                (Some(t), None) => format!("{t}, no control ID"),
                (None, Some(i)) => format!("no message type, control ID {i}"),
                (None, None) => "no message type, no control ID".to_owned(),
            });
            parts.push(match &h.version {
                Some(v) => format!("v{v}"),
                None => "no version".to_owned(),
            });
        }
        if self.charset != Charset::Ascii {
            parts.push(self.charset.label().to_owned());
        }
        let (segments, other) = self.segment_count();
        parts.push(format!(
            "{segments} segment{}",
            if segments == 1 { "" } else { "s" }
        ));
        if other > 0 {
            parts.push(format!("{other} unparseable line(s)"));
        }
        if self.relative_lines {
            parts.push("lines counted from the message start".to_owned());
        }
        value::clean(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(content: &[u8]) -> Vec<(usize, usize, String)> {
        inspect_file(content)
            .into_iter()
            .flat_map(|m| m.problems)
            .map(|p| (p.line, p.column, p.text))
            .collect()
    }

    fn text(m: &Inspected) -> String {
        let at = Position {
            number: 1,
            file: Path::new("x"),
            index: 1,
            count: 1,
        };
        let mut out = Vec::new();
        m.write_text(&mut out, &at).expect("write to a Vec");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_good_message_has_no_problems() {
        let m = b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5.1\r\nPID|1||X^^^H^MR\r\n";
        assert!(problems(m).is_empty());
    }

    #[test]
    fn lines_are_file_lines_and_columns_count_characters() {
        let m = "\u{feff}MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5.1\n\nPID|1\nP!D|2\n";
        let p = problems(m.as_bytes());
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].0, p[0].1), (4, 2));
    }

    #[test]
    fn second_message_lines_count_from_the_file_start() {
        let m = b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1\rMSH|^~\\&|A|B|C|D|2026||ADT^A01|2|P|2.5\rpid|1\r";
        let all = inspect_file(m);
        assert_eq!(all.len(), 2);
        assert!(all[0].problems.is_empty());
        assert_eq!((all[1].problems[0].line, all[1].problems[0].column), (4, 1));
    }

    #[test]
    fn mllp_capture_columns_skip_the_start_block() {
        let m = [
            crate::mllp::frame(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1\r"),
            b"\n".to_vec(),
            crate::mllp::frame(b"MSH|^~|A\r"),
        ]
        .concat();
        let all = inspect_file(&m);
        assert_eq!(all.len(), 2);
        assert!(all[0].problems.is_empty());
        assert_eq!((all[1].problems[0].line, all[1].problems[0].column), (4, 6));
    }

    #[test]
    fn text_before_the_first_msh_is_flagged() {
        let m = b"hello\rMSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\r";
        let p = problems(m);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].0, p[0].1), (1, 1));
    }

    #[test]
    fn a_misspelt_segment_is_flagged_and_still_shown_field_by_field() {
        let all = inspect_file(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rP!D|1|X^Y\r");
        let shown = text(&all[0]);
        for line in [
            "P!D (line 2)",
            "  P!D-1: 1",
            "  P!D-2: X^Y",
            "        .1: X",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line:?} in\n{shown}");
        }
    }

    #[test]
    fn a_truncation_character_in_msh_2_is_accepted_and_shown_as_sent() {
        let all = inspect_file(b"MSH|^~\\&#|A|B|C|D|2026||ADT^A01|1|P|2.7\rPID|1||X^^^H\r");
        assert!(all[0].problems.is_empty(), "{:?}", all[0].problems);
        let shown = text(&all[0]);
        assert!(
            shown.contains("\n  MSH-2  Encoding Characters: ^~\\&#\n"),
            "{shown}"
        );
        assert!(
            shown.contains("\n        .4 Assigning Authority: H\n"),
            "{shown}"
        );
    }

    #[test]
    fn with_an_unusable_msh_1_the_defaults_read_the_rest() {
        let all = inspect_file(b"MSHX^~\\&X|A|B^C\r");
        let p = &all[0].problems;
        assert_eq!((p[0].line, p[0].column), (1, 4), "{p:?}");
        // No MSH-1: what follows the first `|` is numbered from 1.
        let shown = text(&all[0]);
        assert!(shown.contains("\n  MSH-1  Field Separator: A\n"), "{shown}");
        assert!(
            shown.contains("\n  MSH-2  Encoding Characters: B^C\n"),
            "{shown}"
        );
    }

    #[test]
    fn odd_input_never_panics() {
        for m in [
            &b"MSH"[..],
            b"MSH|",
            b"MSH||",
            b"MSH\xff\xfe",
            b"\x0b\x1c\r",
            b"MSH|^~\\&|\\X4\\|\\",
            b"MSH|^~\\&\rPI",
            b"\xef\xbb\xbf  \r\n",
            b"MSH|^~\\&|||||||||||||||||UNKNOWN SET\r",
            b"MSH|^~\\&|||||||||||||||||UNICODE UTF-8\r\xff\r",
            "MSH|^~\\&|ÄÖ\\F\\é|\u{2603}|\rPÏD|é^é&é~\\X\r".as_bytes(),
        ] {
            for i in inspect_file(m) {
                assert!(text(&i).starts_with("message 1 (x, 1 of 1): "));
                let at = Position {
                    number: 1,
                    file: Path::new("x"),
                    index: 1,
                    count: 1,
                };
                assert!(i.to_json(&at)["segments"].is_array());
            }
        }
    }
}
