//! The tree as one JSON object per message: the same tree as the text, with
//! raw and decoded values side by side, and every problem (the text shows
//! the first few).

use serde_json::{json, Map, Value};

use crate::hl7::message::Delimiters;

use super::tree::{Component, Field, Row};
use super::value::unescape;
use super::{Inspected, Position};

impl Inspected {
    pub fn to_json(&self, at: &Position<'_>) -> Value {
        let d = &self.delimiters;
        let h = &self.header;
        let mut m = Map::new();
        m.insert("message".into(), json!(at.number));
        m.insert("file".into(), json!(at.file.display().to_string()));
        m.insert("index".into(), json!(at.index));
        m.insert("of".into(), json!(at.count));
        m.insert("type".into(), json!(h.message_type));
        m.insert("control_id".into(), json!(h.control_id));
        m.insert("version".into(), json!(h.version));
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
                    "fields": s.fields.iter().map(|f| field_json(f, d)).collect::<Vec<_>>(),
                }),
            })
            .collect();
        m.insert("segments".into(), Value::Array(rows));
        Value::Object(m)
    }
}

/// The head of a field, component or subcomponent object: its number
/// under `key`, the field's id, the name and data type when known, and the
/// raw text.
fn head(
    key: &str,
    n: usize,
    id: Option<&str>,
    name: Option<&str>,
    ty: &str,
    raw: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), json!(n));
    if let Some(id) = id {
        m.insert("id".into(), json!(id));
    }
    if let Some(name) = name {
        m.insert("name".into(), json!(name));
    }
    if !ty.is_empty() {
        m.insert("type".into(), json!(ty));
    }
    m.insert("raw".into(), json!(raw));
    m
}

fn field_json(f: &Field, d: &Delimiters) -> Value {
    let mut m = head("field", f.n, Some(&f.id), f.name, &f.ty, &f.raw);
    let value = |raw: &str| {
        if f.literal {
            raw.to_owned()
        } else {
            unescape(raw, d)
        }
    };
    if let [r] = f.reps.as_slice() {
        if r.n == 1 && r.comps.is_empty() {
            m.insert("value".into(), json!(value(&r.raw)));
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
                rm.insert("value".into(), json!(value(&r.raw)));
            } else {
                let comps = r.comps.iter().map(|c| component_json(c, d)).collect();
                rm.insert("components".into(), Value::Array(comps));
            }
            Value::Object(rm)
        })
        .collect();
    m.insert("repetitions".into(), Value::Array(reps));
    Value::Object(m)
}

fn component_json(c: &Component, d: &Delimiters) -> Value {
    let mut m = head("component", c.n, None, c.name, c.ty, &c.raw);
    if c.subs.is_empty() {
        m.insert("value".into(), json!(unescape(&c.raw, d)));
    } else {
        let subs = c
            .subs
            .iter()
            .map(|s| {
                let mut m = head("subcomponent", s.n, None, s.name, s.ty, &s.raw);
                m.insert("value".into(), json!(unescape(&s.raw, d)));
                Value::Object(m)
            })
            .collect();
        m.insert("subcomponents".into(), Value::Array(subs));
    }
    Value::Object(m)
}
