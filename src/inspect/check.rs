//! The structural checks, each problem at its column.
//!
//! hl7-parser reads structure but validates nothing, and stops (or fails) at
//! the first thing it cannot read: its MSH reader takes any five ASCII
//! characters as the delimiters (so a v2.7 truncation character, or a
//! repeated one, is misread), and its segment reader refuses a name that is
//! not three letters or digits. An analyst needs each of those named, at
//! its place, with the rest of the message still shown. So these checks are
//! our own; columns are 1-based characters within the line.

use crate::hl7::fields;
use crate::hl7::message::Delimiters;

use super::tree::ReadField;

/// A problem in one line: (1-based column, text).
pub(super) type LineProblem = (usize, String);

/// MSH-1 and MSH-2 of an MSH line, checked. Invalid delimiters fall back to
/// the defaults (`|^~\&`).
pub(super) fn delimiters(line: &str, problems: &mut Vec<LineProblem>) -> Delimiters {
    let chars: Vec<char> = line.chars().collect();
    let mut d = Delimiters::default();
    let Some(&field) = chars.get(3) else {
        problems.push((
            4,
            "MSH-1 field separator is missing: the line ends after \"MSH\"".to_owned(),
        ));
        return d;
    };
    if !usable(field) {
        problems.push((
            4,
            format!("MSH-1 field separator {field:?} is not usable: it must be one character that is not a letter, digit or space"),
        ));
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
        problems.push((
            5,
            format!(
                "MSH-2 encoding characters {shown:?} are {} character{}; expected 4 or 5 distinct ones (component, repetition, escape, subcomponent[, truncation])",
                enc.len(),
                if enc.len() == 1 { "" } else { "s" }
            ),
        ));
        return d;
    }
    if let Some(i) = enc.iter().position(|&c| !usable(c)) {
        problems.push((
            5 + i,
            format!(
                "MSH-2 encoding character {:?} is not usable (a letter, digit or space)",
                enc[i]
            ),
        ));
        return d;
    }
    if let Some(i) = (1..enc.len()).find(|&i| enc[..i].contains(&enc[i])) {
        problems.push((
            5 + i,
            format!(
                "MSH-2 encoding characters {shown:?} are not distinct: {:?} appears twice",
                enc[i]
            ),
        ));
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
/// `end` is the column just after the line, where a missing field would start.
pub(super) fn required_msh_fields(
    msh: &[ReadField<'_>],
    end: usize,
    problems: &mut Vec<LineProblem>,
) {
    let last = msh.len();
    for n in [9, 10] {
        let name = fields::field("MSH", n).map_or("", |f| f.0);
        match msh.get(n - 1) {
            Some(f) if !f.raw.trim().is_empty() => {}
            Some(f) => problems.push((f.column, format!("MSH-{n} {name} is empty"))),
            None => problems.push((
                end,
                format!("MSH-{n} {name} is missing: the MSH segment ends after MSH-{last}"),
            )),
        }
    }
}

/// A line after the MSH: a segment (its name) if it starts with a
/// 3-character name and the field separator. A name that is not 3
/// uppercase letters or digits is flagged but still read as one.
pub(super) fn segment_name(
    line: &str,
    d: &Delimiters,
    problems: &mut Vec<LineProblem>,
) -> Option<String> {
    let name: String = line.chars().take_while(|&c| c != d.field).collect();
    let name_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
    if name.chars().count() == 3 {
        if let Some(i) = name.chars().position(|c| !name_char(c)) {
            problems.push((
                i + 1,
                format!("segment name {name:?} is not 3 uppercase letters or digits"),
            ));
        }
        return Some(name);
    }
    let head: String = line.chars().take(3).collect();
    if head.chars().count() == 3 && head.chars().all(name_char) {
        let next = line.chars().nth(3).unwrap_or(' ');
        problems.push((
            4,
            format!(
                "unparseable line: expected {:?} after segment name {head:?}, found {next:?}",
                d.field
            ),
        ));
    } else {
        problems.push((
            1,
            format!(
                "unparseable line: not a segment (a segment starts with a 3-character name and {:?})",
                d.field
            ),
        ));
    }
    None
}
