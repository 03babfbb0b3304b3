//! The tree an analyst reads: hl7-parser's segment tree (fields,
//! repetitions, components, subcomponents) with the v2.5.1 names and data
//! types of [`fields`] attached. Empty parts are left out.

use hl7_parser::message::{Component as ParsedComponent, Field as ParsedField};

use crate::hl7::fields;

/// A structural problem, at its file line and 1-based character column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub text: String,
}

#[derive(Debug)]
pub(super) enum Row {
    Segment(Segment),
    /// A line that could not be read as a segment.
    Other {
        line: usize,
        text: String,
    },
}

#[derive(Debug)]
pub(super) struct Segment {
    pub name: String,
    pub line: usize,
    /// The fields that have a value.
    pub fields: Vec<Field>,
}

#[derive(Debug)]
pub(super) struct Field {
    /// e.g. `PID-5`.
    pub id: String,
    pub n: usize,
    pub name: Option<&'static str>,
    pub ty: String,
    pub raw: String,
    /// MSH-1 and MSH-2: shown as sent, never split or decoded.
    pub literal: bool,
    pub reps: Vec<Repetition>,
}

#[derive(Debug)]
pub(super) struct Repetition {
    pub n: usize,
    pub raw: String,
    /// Empty when the repetition is a single value.
    pub comps: Vec<Component>,
}

#[derive(Debug)]
pub(super) struct Component {
    pub n: usize,
    pub name: Option<&'static str>,
    pub ty: &'static str,
    pub raw: String,
    /// Empty when the component has no subcomponents.
    pub subs: Vec<Subcomponent>,
}

#[derive(Debug)]
pub(super) struct Subcomponent {
    pub n: usize,
    pub name: Option<&'static str>,
    pub ty: &'static str,
    pub raw: String,
}

/// A field as read from its line: its 1-based column in the line, its text, and
/// hl7-parser's tree of it. MSH-1 (the field separator itself) has no tree:
/// hl7-parser cannot read a separator as a field's content.
pub(super) struct ReadField<'a> {
    pub column: usize,
    pub raw: &'a str,
    pub parsed: Option<ParsedField<'a>>,
}

impl Segment {
    /// `fields[n - 1]` is field n.
    pub fn new(name: &str, line: usize, fields: &[ReadField<'_>]) -> Self {
        // OBX-5 is of the type OBX-2 names.
        let obx2 = (name == "OBX")
            .then(|| fields.get(1))
            .flatten()
            .map(|f| f.raw.trim().to_ascii_uppercase());
        let fields = fields
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.raw.is_empty())
            .map(|(i, f)| {
                let n = i + 1;
                let def = fields::field(name, n);
                let ty = match (&obx2, def) {
                    (Some(t), Some((_, "varies"))) => t.clone(),
                    (_, Some((_, t))) => t.to_owned(),
                    _ => String::new(),
                };
                let literal = name == "MSH" && n <= 2;
                let reps = match &f.parsed {
                    Some(parsed) if !literal => repetitions(parsed, &ty),
                    _ => vec![Repetition {
                        n: 1,
                        raw: f.raw.to_owned(),
                        comps: Vec::new(),
                    }],
                };
                Field {
                    id: format!("{name}-{n}"),
                    n,
                    name: def.map(|f| f.0),
                    ty,
                    raw: f.raw.to_owned(),
                    literal,
                    reps,
                }
            })
            .collect();
        Self {
            name: name.to_owned(),
            line,
            fields,
        }
    }
}

fn repetitions(field: &ParsedField<'_>, ty: &str) -> Vec<Repetition> {
    field
        .repeats
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.raw_value().is_empty())
        .map(|(i, r)| {
            // A single value has no component or subcomponent separator.
            let single = matches!(r.components.as_slice(), [c] if c.subcomponents.len() == 1);
            let comps = if single {
                Vec::new()
            } else {
                r.components
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.raw_value().is_empty())
                    .map(|(i, c)| component(i + 1, c, ty))
                    .collect()
            };
            Repetition {
                n: i + 1,
                raw: r.raw_value().to_owned(),
                comps,
            }
        })
        .collect()
}

/// Component `n` of a value of type `ty`.
fn component(n: usize, c: &ParsedComponent<'_>, ty: &str) -> Component {
    let (name, cty) = match fields::component(ty, n) {
        Some((name, cty)) => (Some(name), cty),
        None => (None, ""),
    };
    let subs = if c.subcomponents.len() > 1 {
        c.subcomponents
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.value.is_empty())
            .map(|(j, s)| {
                let sub = fields::component(cty, j + 1);
                Subcomponent {
                    n: j + 1,
                    name: sub.map(|s| s.0),
                    ty: sub.map_or("", |s| s.1),
                    raw: s.value.to_owned(),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Component {
        n,
        name,
        ty: cty,
        raw: c.raw_value().to_owned(),
        subs,
    }
}
