//! The tree as text: a heading per message, its problems, then each segment
//! with its fields by id and name, repetitions as `[n]`, components as `.n`.
//! Everything that comes from the file goes through [`clean`].

use std::io::{self, Write};

use crate::hl7::message::Delimiters;

use super::tree::{Repetition, Row};
use super::value::{clean, leaf};
use super::{Inspected, Position, MAX_SHOWN_PROBLEMS};

impl Inspected {
    pub fn write_text(&self, out: &mut impl Write, at: &Position<'_>) -> io::Result<()> {
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
        let more = self.problems.len().saturating_sub(MAX_SHOWN_PROBLEMS);
        if more > 0 {
            writeln!(
                out,
                "! ... and {more} more problem(s) (all of them are in --json)"
            )?;
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
            for f in &seg.fields {
                let label = match f.name {
                    Some(name) => format!("  {:<6} {name}", clean(&f.id)),
                    None => format!("  {}", clean(&f.id)),
                };
                let indent = label.chars().count() + 2;
                if f.literal {
                    writeln!(out, "{label}: {}", clean(&f.raw))?;
                    continue;
                }
                match f.reps.as_slice() {
                    [] => {}
                    [r] if r.n == 1 => {
                        if r.comps.is_empty() {
                            writeln!(out, "{label}: {}", leaf(&r.raw, &f.ty, d, indent))?;
                        } else {
                            writeln!(out, "{label}: {}", clean(&r.raw))?;
                            write_components(out, r, d)?;
                        }
                    }
                    reps => {
                        writeln!(out, "{label}")?;
                        for r in reps {
                            let head = format!("    [{}] ", r.n);
                            if r.comps.is_empty() {
                                let indent = head.chars().count();
                                writeln!(out, "{head}{}", leaf(&r.raw, &f.ty, d, indent))?;
                            } else {
                                writeln!(out, "{head}{}", clean(&r.raw))?;
                                write_components(out, r, d)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn write_components(out: &mut impl Write, r: &Repetition, d: &Delimiters) -> io::Result<()> {
    for c in &r.comps {
        let label = match c.name {
            Some(name) => format!("        .{} {name}", c.n),
            None => format!("        .{}", c.n),
        };
        if c.subs.is_empty() {
            let indent = label.chars().count() + 2;
            writeln!(out, "{label}: {}", leaf(&c.raw, c.ty, d, indent))?;
            continue;
        }
        writeln!(out, "{label}: {}", clean(&c.raw))?;
        for s in &c.subs {
            let label = match s.name {
                Some(name) => format!("           .{}.{} {name}", c.n, s.n),
                None => format!("           .{}.{}", c.n, s.n),
            };
            let indent = label.chars().count() + 2;
            writeln!(out, "{label}: {}", leaf(&s.raw, s.ty, d, indent))?;
        }
    }
    Ok(())
}
