//! `hl7bridge inspect FILE|DIR...`: every message as a readable tree
//! (segments, named fields, repetitions, components, decoded escapes), with
//! structural problems flagged at their line and column. For analysts
//! looking at local files: printing field contents is the point.
//!
//! Files are split as `replay` splits them (CR/LF/CRLF, BOM, several messages
//! per file, FHS/BHS batches, MLLP captures). Line numbers are lines of the
//! file as an editor counts them (CR, LF or CRLF each end one line); columns
//! count characters, 1-based. Exit status: 0 if no message has a problem,
//! 1 if any has one, 2 if a file cannot be read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Map, Value};

use crate::hl7::charset::Charset;
use crate::hl7::fields;
use crate::hl7::message::{read_header_only, Delimiters, ReadOptions};
use crate::mllp::{END, START};
use crate::hl7::split;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Problems listed per message in the tree (a file that is not HL7 at all
/// would otherwise list every line).
const MAX_SHOWN_PROBLEMS: usize = 20;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Files or directories (read recursively, in sorted order).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print one JSON object per message (JSON Lines) instead of the tree.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut total, mut with_problems) = (0usize, 0usize);
    let exit = |with_problems: usize| {
        if with_problems == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    for file in split::files(&args.paths).context("reading input paths")? {
        let content =
            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let messages = inspect_file(&content);
        if messages.is_empty() {
            eprintln!("{}: no messages", file.display());
            continue;
        }
        let count = messages.len();
        for (i, m) in messages.iter().enumerate() {
            total += 1;
            if !m.problems.is_empty() {
                with_problems += 1;
            }
            let at = Position {
                number: total,
                file: &file,
                index: i + 1,
                count,
            };
            let written = if args.json {
                writeln!(out, "{}", m.to_json(&at))
            } else {
                if total > 1 {
                    let _ = writeln!(out);
                }
                m.write_text(&mut out, &at)
            };
            match written {
                Ok(()) => {}
                // `inspect ... | head`: stop quietly.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(exit(with_problems))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    if with_problems > 0 {
        eprintln!("inspect: {total} message(s), {with_problems} with problems");
    }
    Ok(exit(with_problems))
}

/// Where a message was found, for its heading.
struct Position<'a> {
    /// 1-based across all inputs.
    number: usize,
    file: &'a Path,
    /// 1-based within the file.
    index: usize,
    count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    line: usize,
    column: usize,
    text: String,
}

/// A segment: `fields[n - 1]` is field n (for MSH, field 1 is the field
/// separator itself), with its 1-based column.
#[derive(Debug)]
struct Segment {
    name: String,
    line: usize,
    fields: Vec<(usize, String)>,
}

#[derive(Debug)]
enum Row {
    Segment(Segment),
    /// A line that could not be read as a segment.
    Other {
        line: usize,
        text: String,
    },
}

#[derive(Debug)]
struct Inspected {
    delimiters: Delimiters,
    charset: Charset,
    has_msh: bool,
    rows: Vec<Row>,
    problems: Vec<Problem>,
    /// Line numbers count from the message's first line (the file lines
    /// could not be matched, which `split` makes unlikely).
    relative_lines: bool,
}

/// A line of the file with content: its number, the characters before the
/// content (MLLP start blocks), and the content.
struct FileLine<'a> {
    number: usize,
    lead: usize,
    core: &'a [u8],
}

fn file_lines(content: &[u8]) -> Vec<FileLine<'_>> {
    let content = content.strip_prefix(BOM).unwrap_or(content);
    let mut out = Vec::new();
    let (mut number, mut pos) = (0, 0);
    loop {
        let rest = &content[pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        number += 1;
        let line = &rest[..len];
        let lead = line.iter().take_while(|&&b| b == START).count();
        let mut core = &line[lead..];
        core = core.strip_prefix(BOM).unwrap_or(core);
        while let Some(c) = core.strip_suffix(&[END]) {
            core = c;
        }
        if !core.iter().all(u8::is_ascii_whitespace) {
            out.push(FileLine { number, lead, core });
        }
        pos += len;
        if pos >= content.len() {
            return out;
        }
        pos += if content[pos] == b'\r' && content.get(pos + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
    }
}

/// Splits a file into messages and inspects each one.
fn inspect_file(content: &[u8]) -> Vec<Inspected> {
    let file = file_lines(content);
    // Which message each file line went to.
    let mut owner: Vec<Option<usize>> = vec![None; file.len()];
    let mut cursor = Some(0);
    let mut messages = Vec::new();
    for (m, bytes) in split::split(content).iter().enumerate() {
        let lines: Vec<&[u8]> = bytes
            .split(|&b| b == b'\r')
            .filter(|l| !l.is_empty())
            .collect();
        // Each message line is found in the file, in order, after the last one.
        let found = cursor.and_then(|mut at| {
            let mut idx = Vec::with_capacity(lines.len());
            for l in &lines {
                let i = (at..file.len()).find(|&i| file[i].core == *l)?;
                idx.push(i);
                at = i + 1;
            }
            Some(idx)
        });
        let places: Vec<(usize, usize)> = match &found {
            Some(idx) => {
                for &i in idx {
                    owner[i] = Some(m);
                }
                cursor = idx.last().map(|i| i + 1).or(cursor);
                idx.iter()
                    .map(|&i| (file[i].number, file[i].lead))
                    .collect()
            }
            None => {
                cursor = None;
                (1..=lines.len()).map(|n| (n, 0)).collect()
            }
        };
        let mut inspected = inspect_message(bytes, &lines, &places);
        inspected.relative_lines = found.is_none();
        messages.push(inspected);
    }
    if cursor.is_some() && !messages.is_empty() {
        flag_stray_lines(&file, &owner, &mut messages);
    }
    messages
}

/// Lines no message took (text before the first MSH, junk between batch
/// trailers...) are reported on the message that follows them.
fn flag_stray_lines(file: &[FileLine<'_>], owner: &[Option<usize>], messages: &mut [Inspected]) {
    let envelope = |l: &FileLine<'_>| {
        [&b"FHS"[..], b"BHS", b"BTS", b"FTS"]
            .iter()
            .any(|t| l.core.starts_with(t))
    };
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
        let target = next.unwrap_or(messages.len() - 1);
        if let Some(m) = messages.get_mut(target) {
            m.problems.push(Problem {
                line: file[start].number,
                column: file[start].lead + 1,
                text,
            });
            m.problems.sort_by_key(|p| (p.line, p.column));
        }
    }
}

/// Reads one message (CR-separated lines, as `split` yields them); `places`
/// gives each line's number and leading offset in the file.
fn inspect_message(bytes: &[u8], lines: &[&[u8]], places: &[(usize, usize)]) -> Inspected {
    let mut problems = Vec::new();
    let place = |i: usize| places.get(i).copied().unwrap_or((i + 1, 0));

    // Character set: MSH-18 if readable, as the bridge decodes it.
    let opts = ReadOptions::default();
    let declared = read_header_only(bytes, opts)
        .map(|h| h.charset)
        .filter(|c| !c.trim().is_empty());
    let mut charset_problem = None;
    let charset = match declared.as_deref().map(Charset::from_msh18) {
        Some(Ok(c)) => c,
        Some(Err(_)) => {
            charset_problem = Some(format!(
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
            charset_problem.get_or_insert_with(|| format!("{e} (read as UTF-8)"));
            None
        }
    };
    let text: Vec<String> = lines
        .iter()
        .map(|l| match used.map(|c| c.decode(l, None)) {
            Some(Ok((s, _))) => s.into_owned(),
            _ => String::from_utf8_lossy(l).into_owned(),
        })
        .collect();

    let mut rows = Vec::new();
    let mut delimiters = Delimiters::default();
    let mut has_msh = false;
    for (i, line) in text.iter().enumerate() {
        let (number, mut lead) = place(i);
        let mut line = line.as_str();
        if i == 0 {
            let trimmed = line.trim_start();
            lead += line.chars().count() - trimmed.chars().count();
            line = trimmed;
            if line.starts_with("MSH") {
                has_msh = true;
                delimiters = msh_delimiters(line, &mut |column, text| {
                    problems.push(Problem {
                        line: number,
                        column: lead + column,
                        text,
                    })
                });
                let msh = tokenize("MSH", line, &delimiters, number, lead);
                check_msh(&msh, line, lead, &mut problems);
                if let Some(p) = charset_problem.take() {
                    let column = msh.fields.get(17).map_or(1, |f| f.0);
                    problems.push(Problem {
                        line: number,
                        column,
                        text: p,
                    });
                }
                rows.push(Row::Segment(msh));
                continue;
            }
            let found: String = line.chars().take(3).collect();
            problems.push(Problem {
                line: number,
                column: lead + 1,
                text: format!(
                    "message does not start with an MSH segment (it starts with {found:?})"
                ),
            });
        }
        rows.push(read_segment(line, &delimiters, number, lead, &mut problems));
    }
    if let Some(p) = charset_problem {
        let (line, _) = place(0);
        problems.push(Problem {
            line,
            column: 1,
            text: p,
        });
    }
    problems.sort_by_key(|p| (p.line, p.column));
    Inspected {
        delimiters,
        charset: used.unwrap_or(Charset::Utf8),
        has_msh,
        rows,
        problems,
        relative_lines: false,
    }
}

/// MSH-1 and MSH-2 checked; problems reported with their 1-based column in
/// `line`. Invalid delimiters fall back to the defaults (`|^~\&`).
fn msh_delimiters(line: &str, problem: &mut dyn FnMut(usize, String)) -> Delimiters {
    let chars: Vec<char> = line.chars().collect();
    let mut d = Delimiters::default();
    let Some(&field) = chars.get(3) else {
        problem(
            4,
            "MSH-1 field separator is missing: the line ends after \"MSH\"".to_owned(),
        );
        return d;
    };
    if !usable(field) {
        problem(
            4,
            format!("MSH-1 field separator {field:?} is not usable: it must be one character that is not a letter, digit or space"),
        );
        return d;
    }
    d.field = field;
    let enc: Vec<char> = chars[4..]
        .iter()
        .copied()
        .take_while(|&c| c != field)
        .collect();
    let shown: String = enc.iter().collect();
    if !(4..=5).contains(&enc.len()) {
        problem(
            5,
            format!(
                "MSH-2 encoding characters {shown:?} are {} character{}; expected 4 or 5 distinct ones (component, repetition, escape, subcomponent[, truncation])",
                enc.len(),
                if enc.len() == 1 { "" } else { "s" }
            ),
        );
        return d;
    }
    if let Some(i) = enc.iter().position(|&c| !usable(c)) {
        problem(
            5 + i,
            format!(
                "MSH-2 encoding character {:?} is not usable (a letter, digit or space)",
                enc[i]
            ),
        );
        return d;
    }
    if let Some(i) = (1..enc.len()).find(|&i| enc[..i].contains(&enc[i])) {
        problem(
            5 + i,
            format!(
                "MSH-2 encoding characters {shown:?} are not distinct: {:?} appears twice",
                enc[i]
            ),
        );
        return d;
    }
    Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
        encoding_characters: shown,
    }
}

fn usable(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_alphanumeric() && !c.is_ascii_whitespace() && !c.is_control()
}

/// MSH-9 and MSH-10 are what the bridge cannot route or acknowledge without.
fn check_msh(msh: &Segment, line: &str, lead: usize, problems: &mut Vec<Problem>) {
    let end = lead + line.chars().count() + 1;
    let last = msh.fields.len();
    for n in [9, 10] {
        let name = fields::field("MSH", n).map_or("", |f| f.0);
        let text = match msh.fields.get(n - 1) {
            Some((_, v)) if !v.trim().is_empty() => continue,
            Some((column, _)) => (*column, format!("MSH-{n} {name} is empty")),
            None => (
                end,
                format!("MSH-{n} {name} is missing: the MSH segment ends after MSH-{last}"),
            ),
        };
        problems.push(Problem {
            line: msh.line,
            column: text.0,
            text: text.1,
        });
    }
}

/// Splits a line into fields, with their columns.
fn tokenize(name: &str, line: &str, d: &Delimiters, number: usize, lead: usize) -> Segment {
    let mut fields = Vec::new();
    let mut column = lead + 1;
    let mut parts = line.split(d.field);
    let first = parts.next().unwrap_or("");
    column += first.chars().count() + 1;
    if name == "MSH" && line.chars().nth(3) == Some(d.field) {
        // MSH-1 is the separator itself.
        fields.push((column - 1, d.field.to_string()));
    }
    for part in parts {
        fields.push((column, part.to_owned()));
        column += part.chars().count() + 1;
    }
    Segment {
        name: name.to_owned(),
        line: number,
        fields,
    }
}

/// A line after the MSH: a segment if it starts with a 3-character name and
/// the field separator.
fn read_segment(
    line: &str,
    d: &Delimiters,
    number: usize,
    lead: usize,
    problems: &mut Vec<Problem>,
) -> Row {
    let name: String = line.chars().take_while(|&c| c != d.field).collect();
    let mut problem = |column: usize, text: String| {
        problems.push(Problem {
            line: number,
            column: lead + column,
            text,
        })
    };
    if name.chars().count() == 3 {
        if let Some(i) = name
            .chars()
            .position(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
        {
            problem(
                i + 1,
                format!("segment name {name:?} is not 3 uppercase letters or digits"),
            );
        }
        return Row::Segment(tokenize(&name, line, d, number, lead));
    }
    let head: String = line.chars().take(3).collect();
    let text = if head.chars().count() == 3
        && head
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        let next = line.chars().nth(3).unwrap_or(' ');
        problem(
            4,
            format!(
                "unparseable line: expected {:?} after segment name {head:?}, found {next:?}",
                d.field
            ),
        );
        line
    } else {
        problem(
            1,
            format!(
                "unparseable line: not a segment (a segment starts with a 3-character name and {:?})",
                d.field
            ),
        );
        line
    };
    Row::Other {
        line: number,
        text: text.to_owned(),
    }
}

// ---- the tree ----

struct FieldView<'a> {
    id: String,
    n: usize,
    name: Option<&'static str>,
    ty: String,
    raw: &'a str,
    /// MSH-1 and MSH-2: shown as sent, never split or decoded.
    literal: bool,
    reps: Vec<RepView<'a>>,
}

struct RepView<'a> {
    n: usize,
    raw: &'a str,
    /// Empty when the repetition is a single value.
    comps: Vec<CompView<'a>>,
}

struct CompView<'a> {
    n: usize,
    name: Option<&'static str>,
    ty: &'static str,
    raw: &'a str,
    /// (n, name, type, raw); empty when the component has no subcomponents.
    subs: Vec<(usize, Option<&'static str>, &'static str, &'a str)>,
}

impl Segment {
    fn views<'a>(&'a self, d: &Delimiters) -> Vec<FieldView<'a>> {
        let obx2 = (self.name == "OBX")
            .then(|| self.fields.get(1))
            .flatten()
            .map(|(_, v)| v.trim().to_ascii_uppercase());
        self.fields
            .iter()
            .enumerate()
            .filter(|(_, (_, raw))| !raw.is_empty())
            .map(|(i, (_, raw))| {
                let n = i + 1;
                let def = fields::field(&self.name, n);
                let ty = match (&obx2, def) {
                    (Some(t), Some((_, "varies"))) => t.clone(),
                    (_, Some((_, t))) => t.to_owned(),
                    _ => String::new(),
                };
                let literal = self.name == "MSH" && n <= 2;
                let reps = if literal {
                    vec![RepView {
                        n: 1,
                        raw,
                        comps: Vec::new(),
                    }]
                } else {
                    raw.split(d.repetition)
                        .enumerate()
                        .filter(|(_, r)| !r.is_empty())
                        .map(|(i, r)| rep_view(i + 1, r, &ty, d))
                        .collect()
                };
                FieldView {
                    id: format!("{}-{n}", self.name),
                    n,
                    name: def.map(|f| f.0),
                    ty,
                    raw,
                    literal,
                    reps,
                }
            })
            .collect()
    }
}

fn rep_view<'a>(n: usize, raw: &'a str, ty: &str, d: &Delimiters) -> RepView<'a> {
    let simple = !raw.contains(d.component) && !raw.contains(d.subcomponent);
    let comps = if simple {
        Vec::new()
    } else {
        raw.split(d.component)
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .map(|(i, c)| {
                let (name, cty) = match fields::component(ty, i + 1) {
                    Some((name, cty)) => (Some(name), cty),
                    None => (None, ""),
                };
                let subs = if c.contains(d.subcomponent) {
                    c.split(d.subcomponent)
                        .enumerate()
                        .filter(|(_, s)| !s.is_empty())
                        .map(|(j, s)| {
                            let sub = fields::component(cty, j + 1);
                            (j + 1, sub.map(|s| s.0), sub.map_or("", |s| s.1), s)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                CompView {
                    n: i + 1,
                    name,
                    ty: cty,
                    raw: c,
                    subs,
                }
            })
            .collect()
    };
    RepView { n, raw, comps }
}

/// Control characters shown as `{0x0D}`, so field contents cannot drive the terminal.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("{{0x{:02X}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A decoded value for the tree: line breaks continue under the first line.
fn shown(decoded: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (i, line) in decoded.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
            }
        }
        out.push_str(&clean(line));
    }
    out
}

/// The decoded value, with a spelled-out date/time if the type is one.
fn leaf(raw: &str, ty: &str, d: &Delimiters, indent: usize) -> String {
    let mut v = shown(&fields::unescape(raw, d), indent);
    if fields::is_time(ty) {
        if let Some(t) = fields::readable_time(raw).filter(|t| t != raw.trim()) {
            v.push_str(&format!(" ({t})"));
        }
    }
    v
}

impl Inspected {
    fn msh(&self) -> Option<&Segment> {
        match self.rows.first() {
            Some(Row::Segment(s)) if self.has_msh => Some(s),
            _ => None,
        }
    }

    /// MSH field n, component c, as sent (trimmed).
    fn msh_value(&self, n: usize, c: usize) -> Option<&str> {
        let raw = &self.msh()?.fields.get(n - 1)?.1;
        let rep = raw.split(self.delimiters.repetition).next()?;
        let v = rep.split(self.delimiters.component).nth(c - 1)?.trim();
        (!v.is_empty()).then_some(v)
    }

    fn message_type(&self) -> Option<String> {
        let parts: Vec<&str> = [1, 2]
            .iter()
            .filter_map(|&c| self.msh_value(9, c))
            .collect();
        (!parts.is_empty()).then(|| parts.join("^"))
    }

    fn segment_count(&self) -> (usize, usize) {
        let segments = self
            .rows
            .iter()
            .filter(|r| matches!(r, Row::Segment(_)))
            .count();
        (segments, self.rows.len() - segments)
    }

    fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.msh().is_none() {
            parts.push("no MSH".to_owned());
        } else {
            let ty = self.message_type();
            let id = self.msh_value(10, 1);
            parts.push(match (&ty, id) {
                (Some(t), Some(i)) => format!("{t} control ID {i}"),
                (Some(t), None) => format!("{t}, no control ID"),
                (None, Some(i)) => format!("no message type, control ID {i}"),
                (None, None) => "no message type, no control ID".to_owned(),
            });
            parts.push(match self.msh_value(12, 1) {
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
        clean(&parts.join(", "))
    }

    fn write_text(&self, out: &mut impl Write, at: &Position<'_>) -> std::io::Result<()> {
        let d = &self.delimiters;
        writeln!(
            out,
            "message {} ({}, {} of {}): {}",
            at.number,
            clean(&at.file.display().to_string()),
            at.index,
            at.count,
            self.summary()
        )?;
        for p in self.problems.iter().take(MAX_SHOWN_PROBLEMS) {
            writeln!(
                out,
                "! line {}, column {}: {}",
                p.line,
                p.column,
                clean(&p.text)
            )?;
        }
        if let Some(more) = self.problems.len().checked_sub(MAX_SHOWN_PROBLEMS) {
            if more > 0 {
                writeln!(
                    out,
                    "! ... and {more} more problem(s) (all of them are in --json)"
                )?;
            }
        }
        for row in &self.rows {
            let seg = match row {
                Row::Segment(s) => s,
                Row::Other { line, text } => {
                    writeln!(out, "(line {line}: not a segment) {}", clean(text))?;
                    continue;
                }
            };
            writeln!(out, "{} (line {})", clean(&seg.name), seg.line)?;
            for f in seg.views(d) {
                let label = match f.name {
                    Some(name) => format!("  {:<6} {name}", clean(&f.id)),
                    None => format!("  {}", clean(&f.id)),
                };
                let indent = label.chars().count() + 2;
                if f.literal {
                    writeln!(out, "{label}: {}", clean(f.raw))?;
                    continue;
                }
                match f.reps.as_slice() {
                    [] => {}
                    [r] if r.n == 1 => {
                        if r.comps.is_empty() {
                            writeln!(out, "{label}: {}", leaf(r.raw, &f.ty, d, indent))?;
                        } else {
                            writeln!(out, "{label}: {}", clean(r.raw))?;
                            write_components(out, r, d)?;
                        }
                    }
                    reps => {
                        writeln!(out, "{label}")?;
                        for r in reps {
                            let head = format!("    [{}] ", r.n);
                            if r.comps.is_empty() {
                                let indent = head.chars().count();
                                writeln!(out, "{head}{}", leaf(r.raw, &f.ty, d, indent))?;
                            } else {
                                writeln!(out, "{head}{}", clean(r.raw))?;
                                write_components(out, r, d)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn to_json(&self, at: &Position<'_>) -> Value {
        let d = &self.delimiters;
        let mut m = Map::new();
        m.insert("message".into(), json!(at.number));
        m.insert("file".into(), json!(at.file.display().to_string()));
        m.insert("index".into(), json!(at.index));
        m.insert("of".into(), json!(at.count));
        m.insert("type".into(), json!(self.message_type()));
        m.insert("control_id".into(), json!(self.msh_value(10, 1)));
        m.insert("version".into(), json!(self.msh_value(12, 1)));
        m.insert("charset".into(), json!(self.charset.label()));
        if self.relative_lines {
            m.insert("lines_relative_to_message".into(), json!(true));
        }
        m.insert(
            "problems".into(),
            Value::Array(
                self.problems
                    .iter()
                    .map(|p| json!({"line": p.line, "column": p.column, "problem": p.text}))
                    .collect(),
            ),
        );
        let rows = self
            .rows
            .iter()
            .map(|row| match row {
                Row::Other { line, text } => json!({"line": line, "not_a_segment": text}),
                Row::Segment(s) => json!({
                    "segment": s.name,
                    "line": s.line,
                    "fields": s.views(d).iter().map(|f| field_json(f, d)).collect::<Vec<_>>(),
                }),
            })
            .collect();
        m.insert("segments".into(), Value::Array(rows));
        Value::Object(m)
    }
}

fn write_components(out: &mut impl Write, r: &RepView<'_>, d: &Delimiters) -> std::io::Result<()> {
    for c in &r.comps {
        let label = match c.name {
            Some(name) => format!("        .{} {name}", c.n),
            None => format!("        .{}", c.n),
        };
        if c.subs.is_empty() {
            let indent = label.chars().count() + 2;
            writeln!(out, "{label}: {}", leaf(c.raw, c.ty, d, indent))?;
            continue;
        }
        writeln!(out, "{label}: {}", clean(c.raw))?;
        for &(s, name, ty, raw) in &c.subs {
            let label = match name {
                Some(name) => format!("           .{}.{s} {name}", c.n),
                None => format!("           .{}.{s}", c.n),
            };
            let indent = label.chars().count() + 2;
            writeln!(out, "{label}: {}", leaf(raw, ty, d, indent))?;
        }
    }
    Ok(())
}

fn named(mut m: Map<String, Value>, name: Option<&str>, ty: &str) -> Map<String, Value> {
    if let Some(name) = name {
        m.insert("name".into(), json!(name));
    }
    if !ty.is_empty() {
        m.insert("type".into(), json!(ty));
    }
    m
}

fn field_json(f: &FieldView<'_>, d: &Delimiters) -> Value {
    let mut m = Map::new();
    m.insert("field".into(), json!(f.n));
    m.insert("id".into(), json!(f.id));
    let mut m = named(m, f.name, &f.ty);
    m.insert("raw".into(), json!(f.raw));
    let value = |raw: &str| {
        if f.literal {
            raw.to_owned()
        } else {
            fields::unescape(raw, d)
        }
    };
    if let [r] = f.reps.as_slice() {
        if r.n == 1 && r.comps.is_empty() {
            m.insert("value".into(), json!(value(r.raw)));
        }
    }
    let reps = f
        .reps
        .iter()
        .map(|r| {
            let mut rm = Map::new();
            rm.insert("repetition".into(), json!(r.n));
            rm.insert("raw".into(), json!(r.raw));
            if r.comps.is_empty() {
                rm.insert("value".into(), json!(value(r.raw)));
            } else {
                let comps = r
                    .comps
                    .iter()
                    .map(|c| {
                        let mut cm = Map::new();
                        cm.insert("component".into(), json!(c.n));
                        let mut cm = named(cm, c.name, c.ty);
                        cm.insert("raw".into(), json!(c.raw));
                        if c.subs.is_empty() {
                            cm.insert("value".into(), json!(fields::unescape(c.raw, d)));
                        } else {
                            let subs = c
                                .subs
                                .iter()
                                .map(|&(s, name, ty, raw)| {
                                    let mut sm = Map::new();
                                    sm.insert("subcomponent".into(), json!(s));
                                    let mut sm = named(sm, name, ty);
                                    sm.insert("raw".into(), json!(raw));
                                    sm.insert("value".into(), json!(fields::unescape(raw, d)));
                                    Value::Object(sm)
                                })
                                .collect();
                            cm.insert("subcomponents".into(), Value::Array(subs));
                        }
                        Value::Object(cm)
                    })
                    .collect();
                rm.insert("components".into(), Value::Array(comps));
            }
            Value::Object(rm)
        })
        .collect();
    m.insert("repetitions".into(), Value::Array(reps));
    Value::Object(m)
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
        ] {
            for i in inspect_file(m) {
                let mut out = Vec::new();
                let at = Position {
                    number: 1,
                    file: Path::new("x"),
                    index: 1,
                    count: 1,
                };
                i.write_text(&mut out, &at).unwrap();
                let _ = i.to_json(&at);
            }
        }
    }
}
