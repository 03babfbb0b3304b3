//! One message read into the tree, with its problems.
//!
//! Each line is read on its own, so that one broken line does not hide the
//! rest (hl7-parser's message reader stops at the first line it cannot
//! read). hl7-parser reads every field of a line (repetitions, components,
//! subcomponents); we only step over the field separators between fields,
//! because its segment reader refuses the lines an analyst most needs to
//! see (a misspelt segment name, an MSH whose MSH-1 is unusable).

use hl7_parser::message::Separators;
use hl7_parser::parser::parse_field_with_separators;

use crate::hl7::charset::Charset;
use crate::hl7::message::{read_header_only, Delimiters, ReadOptions};

use super::check::{self, LineProblem};
use super::locate::Place;
use super::tree::{Problem, ReadField, Row, Segment};
use super::Inspected;

/// Reads one message (CR-separated lines, as `split` yields them); `places`
/// gives each line's place in the file.
pub(super) fn read_message(bytes: &[u8], lines: &[&[u8]], places: &[Place]) -> Inspected {
    let mut problems = Vec::new();
    let place = |i: usize| {
        places.get(i).copied().unwrap_or(Place {
            line: i + 1,
            lead: 0,
        })
    };
    let (charset, text, mut charset_problem) = decode(bytes, lines);

    let mut rows = Vec::new();
    let mut delimiters = Delimiters::default();
    let mut header = Header::default();
    for (i, line) in text.iter().enumerate() {
        let Place {
            line: number,
            mut lead,
        } = place(i);
        let mut line = line.as_str();
        let mut found = Vec::new();
        if i == 0 {
            let trimmed = line.trim_start();
            lead += line.chars().count() - trimmed.chars().count();
            line = trimmed;
            if line.starts_with("MSH") {
                delimiters = check::delimiters(line, &mut found);
                let fields = read_fields(line, &delimiters, true);
                check::required_msh_fields(&fields, line.chars().count() + 1, &mut found);
                problems.extend(at_line(found, number, lead));
                if let Some(text) = charset_problem.take() {
                    // At MSH-18; at column 1 when the MSH stops before it.
                    let column = fields.get(17).map_or(1, |f| lead + f.column);
                    problems.push(Problem {
                        line: number,
                        column,
                        text,
                    });
                }
                header = Header::from_msh(&fields);
                rows.push(Row::Segment(Segment::new("MSH", number, &fields)));
                continue;
            }
            let start: String = line.chars().take(3).collect();
            found.push((
                1,
                format!("message does not start with an MSH segment (it starts with {start:?})"),
            ));
        }
        let row = match check::segment_name(line, &delimiters, &mut found) {
            Some(name) => {
                let fields = read_fields(line, &delimiters, false);
                Row::Segment(Segment::new(&name, number, &fields))
            }
            None => Row::Other {
                line: number,
                text: line.to_owned(),
            },
        };
        rows.push(row);
        problems.extend(at_line(found, number, lead));
    }
    if let Some(p) = charset_problem {
        problems.push(Problem {
            line: place(0).line,
            column: 1,
            text: p,
        });
    }
    problems.sort_by_key(|p| (p.line, p.column));
    Inspected {
        delimiters,
        charset,
        header,
        rows,
        problems,
        relative_lines: false,
    }
}

/// Problems found in one line, placed in the file.
fn at_line(found: Vec<LineProblem>, line: usize, lead: usize) -> impl Iterator<Item = Problem> {
    found.into_iter().map(move |(column, text)| Problem {
        line,
        column: lead + column,
        text,
    })
}

/// The character set (MSH-18 if readable, as the bridge decodes it), each
/// line's text, and a problem if the declared set is unsupported or the
/// bytes do not decode (then each line is read as UTF-8, lossily).
fn decode(bytes: &[u8], lines: &[&[u8]]) -> (Charset, Vec<String>, Option<String>) {
    let opts = ReadOptions::default();
    let declared = read_header_only(bytes, opts)
        .map(|h| h.charset)
        .filter(|c| !c.trim().is_empty());
    let mut problem = None;
    let charset = match declared.as_deref().map(Charset::from_msh18) {
        Some(Ok(c)) => c,
        Some(Err(_)) => {
            problem = Some(format!(
                "MSH-18 character set {:?} is not supported (read as UTF-8)",
                declared.as_deref().unwrap_or("")
            ));
            Charset::Ascii
        }
        None => Charset::Ascii,
    };
    let used = match charset.decode(bytes, opts.charset_fallback) {
        Ok((_, used)) => Some(used),
        Err(e) => {
            problem.get_or_insert_with(|| format!("{e} (read as UTF-8)"));
            None
        }
    };
    let text = lines
        .iter()
        .map(|l| match used.map(|c| c.decode(l, None)) {
            Some(Ok((s, _))) => s.into_owned(),
            _ => String::from_utf8_lossy(l).into_owned(),
        })
        .collect();
    (used.unwrap_or(Charset::Utf8), text, problem)
}

/// The fields of a segment line, each read by hl7-parser, with its 1-based
/// column in the line. Field n is `[n - 1]`; for
/// an MSH whose fourth character is the field separator, MSH-1 is that
/// separator. A line without a field separator has no fields.
fn read_fields<'a>(line: &'a str, d: &Delimiters, msh: bool) -> Vec<ReadField<'a>> {
    let seps = Separators {
        field: d.field,
        component: d.component,
        subcomponent: d.subcomponent,
        repetition: d.repetition,
        escape: d.escape,
        lenient_newlines: false,
    };
    let column = |at: usize| line[..at].chars().count() + 1;
    let mut out = Vec::new();
    let Some(first) = line.find(d.field) else {
        return out;
    };
    if msh && line.chars().nth(3) == Some(d.field) {
        out.push(ReadField {
            column: column(first),
            raw: &line[first..first + d.field.len_utf8()],
            parsed: None,
        });
    }
    let mut at = first + d.field.len_utf8();
    // hl7-parser reads a field up to the next separator (or CR: there is
    // none in a line), and never fails.
    while let Ok(field) = parse_field_with_separators(&line[at..], seps) {
        let end = at + field.raw_value().len();
        out.push(ReadField {
            column: column(at),
            raw: field.raw_value(),
            parsed: Some(field),
        });
        if !line[end..].starts_with(d.field) {
            break;
        }
        at = end + d.field.len_utf8();
    }
    out
}

/// The MSH values the heading shows, as sent (trimmed).
#[derive(Debug, Default)]
pub(super) struct Header {
    /// The message has an MSH (the values below come from it).
    pub msh: bool,
    /// MSH-9.1^MSH-9.2.
    pub message_type: Option<String>,
    /// MSH-10.1.
    pub control_id: Option<String>,
    /// MSH-12.1.
    pub version: Option<String>,
}

impl Header {
    fn from_msh(fields: &[ReadField<'_>]) -> Self {
        // Field n, first repetition, component c: hl7-parser's tree navigation.
        let value = |n: usize, c: usize| {
            let v = fields
                .get(n - 1)?
                .parsed
                .as_ref()?
                .repeat(1)?
                .component(c)?
                .raw_value()
                .trim();
            (!v.is_empty()).then(|| v.to_owned())
        };
        let type_parts: Vec<String> = [1, 2].iter().filter_map(|&c| value(9, c)).collect();
        Self {
            msh: true,
            message_type: (!type_parts.is_empty()).then(|| type_parts.join("^")),
            control_id: value(10, 1),
            version: value(12, 1),
        }
    }
}
