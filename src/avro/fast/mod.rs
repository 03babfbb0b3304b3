//! The direct encoder: FHIR JSON to Avro binary in one walk, no
//! `apache_avro::types::Value` tree in between.
//!
//! A schema is compiled once into a [`Plan`]: named types resolved, records
//! numbered (so recursive types are plain indices), `["null", T]` unions
//! reduced to their two branch indices and `fhirType: decimal` fields marked
//! (a double with its `_<name>` companion folded into it, or an older
//! schema's string).
//! Encoding a resource is then a walk over the JSON that appends bytes:
//! zig-zag varint longs, length-prefixed strings, the union index before the
//! value, arrays as one block (count, items, 0), records as their fields in
//! schema order, null as nothing, a double as 8 little-endian bytes. The bytes are exactly those of
//! `GenericDatumWriter` over [`super::to_avro`]'s value (tests/avro_roundtrip.rs
//! checks every fixture resource).
//!
//! The walk accepts exactly what [`super::to_avro`] accepts. It tracks no
//! JSON path, so it only says *that* a resource does not fit: the caller then
//! runs the value-building walk, which names the path (never the value).

use std::collections::HashMap;

use apache_avro::schema::{NamesRef, RecordField, Schema};
use serde_json::{Map, Value as Json};

use super::convert::{is_companion, is_decimal};
use super::decimal::{self, Companion};

mod ser;

/// A compiled schema: what the encoder needs of it, nothing else.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    records: Vec<RecordPlan>,
    /// The top-level record's name (`Observation`) when it has a
    /// `resourceType` field: a resource of another type is refused.
    resource_type: Option<Box<str>>,
}

#[derive(Debug, Clone)]
pub(super) struct RecordPlan {
    fields: Vec<FieldPlan>,
}

#[derive(Debug, Clone)]
pub(super) struct FieldPlan {
    name: Box<str>,
    /// The name's length and first 8 bytes, to tell most other names apart
    /// without a string comparison: the serde walk compares a member's name
    /// with every absent field it skips over.
    tag: (usize, u64),
    absent: Absent,
    node: Node,
}

impl FieldPlan {
    fn new(name: &str, node: Node) -> Self {
        Self {
            name: name.into(),
            tag: name_tag(name),
            // Set once the record's companions are folded in (see `Compiler::node`).
            absent: Absent::Required,
            node,
        }
    }

    /// Whether this is the field named `key`, whose [`name_tag`] is `tag`.
    #[inline]
    pub(super) fn is(&self, key: &str, tag: (usize, u64)) -> bool {
        // A name of up to 8 bytes is all in its tag.
        self.tag == tag && (tag.0 <= 8 || *self.name == *key)
    }

    /// Appends what this field is when the resource does not have it
    /// ([`Plan::absent`], worked out once when the schema was compiled).
    #[inline]
    pub(super) fn write_absent(&self, out: &mut Vec<u8>) -> Fit {
        match &self.absent {
            Absent::Nothing => {}
            Absent::Byte(b) => out.push(*b),
            Absent::Bytes(b) => out.extend_from_slice(b),
            Absent::Required => return Err(Mismatch),
        }
        Ok(())
    }
}

/// A field's encoding when the resource does not have it.
#[derive(Debug, Clone)]
enum Absent {
    /// Written as nothing (null, a derived companion).
    Nothing,
    /// One byte: a union's null branch, or an empty array.
    Byte(u8),
    /// More (a null decimal and its null companion).
    Bytes(Box<[u8]>),
    /// The field is required: its absence does not fit the schema.
    Required,
}

impl Absent {
    fn of(node: &Node) -> Self {
        let mut b = Vec::new();
        match Plan::absent(node, &mut b) {
            Err(Mismatch) => Absent::Required,
            Ok(()) => match b.as_slice() {
                [] => Absent::Nothing,
                [one] => Absent::Byte(*one),
                _ => Absent::Bytes(b.into()),
            },
        }
    }
}

#[inline]
pub(super) fn name_tag(name: &str) -> (usize, u64) {
    // The first 8 bytes, little-endian, zero-padded, read with two loads at
    // most (this runs for every member the serde walk writes). A shorter
    // name is read as its first and its last bytes, overlapping: the bytes
    // in both loads are the same, so OR-ing them in place gives each once.
    let b = name.as_bytes();
    let n = b.len();
    let p = match (
        b.first_chunk::<8>(),
        b.first_chunk::<4>(),
        b.first_chunk::<2>(),
    ) {
        (Some(first), ..) => u64::from_le_bytes(*first),
        (None, Some(first), _) => {
            let last = b.last_chunk::<4>().unwrap_or(first);
            u64::from(u32::from_le_bytes(*first))
                | u64::from(u32::from_le_bytes(*last)) << (8 * (n - 4))
        }
        (None, None, Some(first)) => {
            let last = b.last_chunk::<2>().unwrap_or(first);
            u64::from(u16::from_le_bytes(*first))
                | u64::from(u16::from_le_bytes(*last)) << (8 * (n - 2))
        }
        (None, None, None) => b.first().map_or(0, |&b| u64::from(b)),
    };
    (n, p)
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Null,
    Boolean,
    Int,
    Long,
    String,
    /// A string holding the exact JSON number text (`fhirType: decimal`
    /// before schema version 3).
    DecimalText,
    /// A double (`fhirType: decimal`), then the node of its companion field
    /// (`_<name>`), written from the decimal's text ([`decimal::split`]).
    /// Without a companion field only texts the double prints back fit.
    DecimalDouble {
        companion: Option<Box<Node>>,
    },
    /// A decimal's companion field: written with its decimal, never set by
    /// the resource itself.
    Derived,
    Record(usize),
    Array(Box<Node>),
    /// A union: the branch taken when the element is absent (null), and the
    /// one non-null branch a present value takes (`None`: not a
    /// `["null", T]` union, which the converter does not map).
    Union {
        null: Option<u32>,
        present: Option<(u32, Box<Node>)>,
    },
    /// A type the converter does not map, or an undefined name: any use fails.
    Unsupported,
}

/// The resource does not fit the schema; [`super::to_avro`] says where.
#[derive(Debug)]
pub(super) struct Mismatch;

pub(super) type Fit = Result<(), Mismatch>;

impl Plan {
    /// Compiles `root` (a record) with its resolved named types.
    pub(super) fn compile(root: &Schema, names: &NamesRef<'_>) -> Plan {
        let mut c = Compiler {
            names,
            records: Vec::new(),
            by_name: HashMap::new(),
        };
        let top = c.node(root, false);
        debug_assert!(matches!(top, Node::Record(0)));
        let resource_type = match root {
            Schema::Record(r) if r.lookup.contains_key("resourceType") => {
                Some(r.name.name().into())
            }
            _ => None,
        };
        Plan {
            records: c.records,
            resource_type,
        }
    }

    /// Appends the Avro binary datum of `resource` to `out`. On a mismatch
    /// `out` holds a partial datum: the caller truncates it.
    pub(super) fn encode_into(&self, resource: &Json, out: &mut Vec<u8>) -> Fit {
        if let Some(rt) = &self.resource_type {
            if let Some(Json::String(s)) = resource.get("resourceType") {
                if s.as_str() != &**rt {
                    return Err(Mismatch);
                }
            }
        }
        self.record(0, resource, out)
    }

    fn value(&self, node: &Node, json: &Json, out: &mut Vec<u8>) -> Fit {
        match (node, json) {
            (_, Json::Null) => Err(Mismatch),
            (
                Node::Union {
                    present: Some((i, inner)),
                    ..
                },
                _,
            ) => {
                write_long(i64::from(*i), out);
                self.value(inner, json, out)
            }
            (Node::Record(r), _) => self.record(*r, json, out),
            (Node::Array(items), Json::Array(a)) if !a.is_empty() => {
                write_long(a.len() as i64, out);
                for item in a {
                    self.value(items, item, out)?;
                }
                out.push(0);
                Ok(())
            }
            (Node::String, Json::String(s)) => {
                write_bytes(s.as_bytes(), out);
                Ok(())
            }
            // arbitrary_precision: the number's text is exactly what was parsed.
            (Node::DecimalText, Json::Number(n)) => {
                write_bytes(n.as_str().as_bytes(), out);
                Ok(())
            }
            (Node::DecimalDouble { companion }, Json::Number(n)) => {
                self.decimal_double(n.as_str(), companion.as_deref(), out)
            }
            (Node::Boolean, Json::Bool(b)) => {
                out.push(u8::from(*b));
                Ok(())
            }
            (Node::Int, _) => {
                let n = json
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or(Mismatch)?;
                write_long(i64::from(n), out);
                Ok(())
            }
            (Node::Long, _) => {
                write_long(json.as_i64().ok_or(Mismatch)?, out);
                Ok(())
            }
            _ => Err(Mismatch),
        }
    }

    /// A decimal's double, then its companion (null when the double prints
    /// back as `text`).
    fn decimal_double(&self, text: &str, companion: Option<&Node>, out: &mut Vec<u8>) -> Fit {
        let (d, c) = decimal::split(text).map_err(|decimal::NotADouble| Mismatch)?;
        out.extend_from_slice(&d.to_le_bytes());
        match (companion, c) {
            (Some(node), Some(c)) => self.value(node, &c.to_json(), out),
            (Some(node), None) => Self::absent(node, out),
            (None, None) => Ok(()),
            (None, Some(Companion::Precision(_) | Companion::Text(_))) => Err(Mismatch),
        }
    }

    /// The encoding of an absent element: null or `[]` if it is optional.
    fn absent(node: &Node, out: &mut Vec<u8>) -> Fit {
        match node {
            Node::Union {
                null: Some(i),
                present,
            } => {
                write_long(i64::from(*i), out);
                // An absent decimal has no companion either.
                if let Some((_, inner)) = present {
                    if let Node::DecimalDouble { companion: Some(c) } = &**inner {
                        Self::absent(c, out)?;
                    }
                }
            }
            Node::Array(_) => out.push(0),
            Node::Null | Node::Derived => {}
            _ => return Err(Mismatch),
        }
        Ok(())
    }

    fn record(&self, r: usize, json: &Json, out: &mut Vec<u8>) -> Fit {
        let Json::Object(obj) = json else {
            return Err(Mismatch);
        };
        if obj.is_empty() {
            return Err(Mismatch);
        }
        let fields = &self.records[r].fields;
        // Members in schema order (what the mapper emits): one merge pass,
        // no lookups. Anything else is settled by name below.
        let start = out.len();
        let mut members = obj.iter().peekable();
        let mut in_order = true;
        for f in fields {
            match members.peek() {
                Some((k, v)) if k.as_str() == &*f.name => {
                    self.value(&f.node, v, out)?;
                    members.next();
                }
                _ => {
                    if f.write_absent(out).is_err() {
                        in_order = false;
                        break;
                    }
                }
            }
        }
        if in_order && members.next().is_none() {
            return Ok(());
        }
        out.truncate(start);
        self.record_by_name(fields, obj, out)
    }

    fn record_by_name(
        &self,
        fields: &[FieldPlan],
        obj: &Map<String, Json>,
        out: &mut Vec<u8>,
    ) -> Fit {
        if obj
            .keys()
            .any(|k| !fields.iter().any(|f| k.as_str() == &*f.name))
        {
            return Err(Mismatch);
        }
        for f in fields {
            match obj.get(&*f.name) {
                Some(v) => self.value(&f.node, v, out)?,
                None => f.write_absent(out)?,
            }
        }
        Ok(())
    }
}

struct Compiler<'a, 's> {
    names: &'a NamesRef<'s>,
    records: Vec<RecordPlan>,
    by_name: HashMap<String, usize>,
}

impl Compiler<'_, '_> {
    fn node(&mut self, schema: &Schema, decimal: bool) -> Node {
        let schema = match schema {
            Schema::Ref { name } => match self.names.get(name) {
                Some(s) => *s,
                None => return Node::Unsupported,
            },
            s => s,
        };
        match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::String if decimal => Node::DecimalText,
            Schema::Double if decimal => Node::DecimalDouble { companion: None },
            Schema::String => Node::String,
            Schema::Array(a) => Node::Array(Box::new(self.node(&a.items, decimal))),
            Schema::Union(u) => {
                let variants = u.variants();
                let null = variants
                    .iter()
                    .position(|s| matches!(s, Schema::Null))
                    .and_then(|i| u32::try_from(i).ok());
                let mut others = variants
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !matches!(s, Schema::Null));
                let present = match (others.next(), others.next()) {
                    (Some((i, s)), None) => u32::try_from(i)
                        .ok()
                        .map(|i| (i, Box::new(self.node(s, decimal)))),
                    _ => None,
                };
                Node::Union { null, present }
            }
            Schema::Record(r) => {
                let full = r.name.fullname(None);
                if let Some(&i) = self.by_name.get(&full) {
                    return Node::Record(i);
                }
                let i = self.records.len();
                self.by_name.insert(full, i);
                self.records.push(RecordPlan { fields: Vec::new() });
                let mut fields: Vec<FieldPlan> = r
                    .fields
                    .iter()
                    .map(|f: &RecordField| {
                        FieldPlan::new(f.name.as_str(), self.node(&f.schema, is_decimal(f)))
                    })
                    .collect();
                // Fold each companion into its decimal, which writes it.
                for k in 1..fields.len() {
                    if is_companion(r, k) {
                        let c = std::mem::replace(&mut fields[k].node, Node::Derived);
                        if !attach_companion(&mut fields[k - 1].node, c) {
                            fields[k].node = Node::Unsupported;
                        }
                    }
                }
                for f in &mut fields {
                    f.absent = Absent::of(&f.node);
                }
                self.records[i].fields = fields;
                Node::Record(i)
            }
            _ => Node::Unsupported,
        }
    }
}

/// Puts `companion` into the optional double decimal `node`; false if
/// `node` is not one.
fn attach_companion(node: &mut Node, companion: Node) -> bool {
    let inner = match node {
        Node::Union {
            present: Some((_, inner)),
            ..
        } => &mut **inner,
        other => other,
    };
    match inner {
        Node::DecimalDouble { companion: c } => {
            *c = Some(Box::new(companion));
            true
        }
        _ => false,
    }
}

/// Avro `long`: zig-zag, then little-endian base-128 varint.
#[inline]
pub(super) fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7f {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Avro `bytes` / `string`: the length as a long, then the bytes.
#[inline]
pub(super) fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_told_apart_from_names_that_share_its_length_or_first_bytes() {
        let f = |name: &str| FieldPlan::new(name, Node::Null);
        let is = |f: &FieldPlan, key: &str| f.is(key, name_tag(key));
        let long = f("multipleBirthBoolean");
        assert!(is(&long, "multipleBirthBoolean"));
        assert!(
            !is(&long, "multipleBirthInteger"),
            "same length, same first 8 bytes"
        );
        assert!(!is(&long, "multipleBirth"));
        let short = f("code");
        assert!(is(&short, "code"));
        assert!(!is(&short, "coda"));
        assert!(!is(&short, "codes"));
        assert!(!is(&short, ""));
        assert!(is(&f(""), ""));
    }

    #[test]
    fn a_name_tag_is_the_length_and_the_first_8_bytes_zero_padded() {
        let name = "multipleBirthBoolean";
        for n in 0..=name.len() {
            let short = &name[..n];
            let mut first = [0u8; 8];
            for (d, s) in first.iter_mut().zip(short.bytes()) {
                *d = s;
            }
            assert_eq!(name_tag(short), (n, u64::from_le_bytes(first)), "{short:?}");
        }
    }

    #[test]
    fn longs_are_zigzag_varints() {
        let enc = |n: i64| {
            let mut v = Vec::new();
            write_long(n, &mut v);
            v
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(-64), [0x7f]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(enc(i64::MAX).len(), 10);
        for n in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut ours = Vec::new();
            write_long(n, &mut ours);
            let theirs = apache_avro::writer::datum::GenericDatumWriter::builder(&Schema::Long)
                .build()
                .unwrap()
                .write_value_to_vec(apache_avro::types::Value::Long(n))
                .unwrap();
            assert_eq!(ours, theirs, "{n}");
        }
    }
}
