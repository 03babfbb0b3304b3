//! The direct encoder: FHIR JSON to Avro binary in one walk, no
//! `apache_avro::types::Value` tree in between.
//!
//! A schema is compiled once into a [`Plan`]: named types resolved, records
//! numbered (so recursive types are plain indices), `["null", T]` unions
//! reduced to their two branch indices and `fhirType: decimal` strings marked.
//! Encoding a resource is then a walk over the JSON that appends bytes:
//! zig-zag varint longs, length-prefixed strings, the union index before the
//! value, arrays as one block (count, items, 0), records as their fields in
//! schema order, null as nothing. The bytes are exactly those of
//! `GenericDatumWriter` over [`super::to_avro`]'s value (tests/avro_roundtrip.rs
//! checks every fixture resource).
//!
//! The walk accepts exactly what [`super::to_avro`] accepts. It tracks no
//! JSON path, so it only says *that* a resource does not fit: the caller then
//! runs the value-building walk, which names the path (never the value).

use std::collections::HashMap;

use apache_avro::schema::{NamesRef, RecordField, Schema};
use serde_json::{Map, Value as Json};

use super::convert::is_decimal;

/// A compiled schema: what the encoder needs of it, nothing else.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    records: Vec<RecordPlan>,
    /// The top-level record's name (`Observation`) when it has a
    /// `resourceType` field: a resource of another type is refused.
    resource_type: Option<Box<str>>,
}

#[derive(Debug, Clone)]
struct RecordPlan {
    fields: Vec<FieldPlan>,
}

#[derive(Debug, Clone)]
struct FieldPlan {
    name: Box<str>,
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    String,
    /// A string holding the exact JSON number text (`fhirType: decimal`).
    Decimal,
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

type Fit = Result<(), Mismatch>;

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
            (Node::Decimal, Json::Number(n)) => {
                write_bytes(n.as_str().as_bytes(), out);
                Ok(())
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

    /// The encoding of an absent element: null or `[]` if it is optional.
    fn absent(node: &Node, out: &mut Vec<u8>) -> Fit {
        match node {
            Node::Union { null: Some(i), .. } => write_long(i64::from(*i), out),
            Node::Array(_) => out.push(0),
            Node::Null => {}
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
                    if Self::absent(&f.node, out).is_err() {
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
                None => Self::absent(&f.node, out)?,
            }
        }
        Ok(())
    }
}

/// Encoding straight from a `serde::Serialize` value (the mapper's typed
/// resources): the same walk as [`Plan::encode_into`] over the JSON that
/// value serializes to, without building that JSON. It accepts a subset:
/// members must come in schema order, decimals as `serde_json::Number`.
/// Anything else is a [`Mismatch`], and the caller falls back to the JSON
/// walk, which settles it exactly as before.
impl Plan {
    pub(super) fn encode_serialize<T: serde::Serialize + ?Sized>(
        &self,
        resource_type: &str,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Fit {
        if self
            .resource_type
            .as_deref()
            .is_some_and(|rt| rt != resource_type)
        {
            return Err(Mismatch);
        }
        value.serialize(Ser {
            plan: self,
            node: &Node::Record(0),
            out,
        })
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("value does not fit the Avro schema")
    }
}

impl std::error::Error for Mismatch {}

impl serde::ser::Error for Mismatch {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Mismatch
    }
}

/// Serializes one value as `node`.
struct Ser<'p, 'o> {
    plan: &'p Plan,
    node: &'p Node,
    out: &'o mut Vec<u8>,
}

impl<'p, 'o> Ser<'p, 'o> {
    /// A present value: a union's branch index first (as [`Plan::value`]).
    fn present(mut self) -> Result<Self, Mismatch> {
        while let Node::Union { present, .. } = self.node {
            let (i, inner) = present.as_ref().ok_or(Mismatch)?;
            write_long(i64::from(*i), self.out);
            self.node = inner;
        }
        Ok(self)
    }

    /// An integer (`multipleBirthInteger`, `rank`) into an int or a long.
    fn integer(self, v: i64) -> Fit {
        let s = self.present()?;
        match s.node {
            Node::Int => write_long(i64::from(i32::try_from(v).map_err(|_| Mismatch)?), s.out),
            Node::Long => write_long(v, s.out),
            _ => return Err(Mismatch),
        }
        Ok(())
    }
}

type Impossible = serde::ser::Impossible<(), Mismatch>;

impl<'p, 'o> serde::Serializer for Ser<'p, 'o> {
    type Ok = ();
    type Error = Mismatch;
    type SerializeSeq = SeqSer<'p, 'o>;
    type SerializeTuple = Impossible;
    type SerializeTupleStruct = Impossible;
    type SerializeTupleVariant = Impossible;
    type SerializeMap = Impossible;
    type SerializeStruct = StructSer<'p, 'o>;
    type SerializeStructVariant = Impossible;

    fn serialize_str(self, v: &str) -> Fit {
        let s = self.present()?;
        match s.node {
            Node::String => {
                write_bytes(v.as_bytes(), s.out);
                Ok(())
            }
            _ => Err(Mismatch),
        }
    }

    fn serialize_bool(self, v: bool) -> Fit {
        let s = self.present()?;
        match s.node {
            Node::Boolean => {
                s.out.push(u8::from(v));
                Ok(())
            }
            _ => Err(Mismatch),
        }
    }

    fn serialize_some<T: serde::Serialize + ?Sized>(self, value: &T) -> Fit {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Fit {
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer<'p, 'o>, Mismatch> {
        let s = self.present()?;
        // FHIR JSON has no empty arrays: present means at least one item.
        let (Node::Array(items), Some(len)) = (s.node, len.filter(|&n| n > 0)) else {
            return Err(Mismatch);
        };
        write_long(i64::try_from(len).map_err(|_| Mismatch)?, s.out);
        Ok(SeqSer {
            plan: s.plan,
            items,
            left: len,
            out: s.out,
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<StructSer<'p, 'o>, Mismatch> {
        let s = self.present()?;
        let kind = match s.node {
            Node::Record(r) => Kind::Record {
                fields: &s.plan.records[*r].fields,
                next: 0,
                any: false,
            },
            // serde_json's Number (arbitrary_precision) is a one-field struct
            // holding its exact text: what a decimal string carries.
            Node::Decimal => Kind::Number { done: false },
            _ => return Err(Mismatch),
        };
        Ok(StructSer {
            plan: s.plan,
            kind,
            out: s.out,
        })
    }

    fn serialize_none(self) -> Fit {
        Err(Mismatch) // JSON null: never valid (see `Plan::value`)
    }
    fn serialize_unit(self) -> Fit {
        Err(Mismatch)
    }
    fn serialize_i8(self, _: i8) -> Fit {
        Err(Mismatch)
    }
    fn serialize_i16(self, _: i16) -> Fit {
        Err(Mismatch)
    }
    fn serialize_i32(self, v: i32) -> Fit {
        self.integer(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Fit {
        self.integer(v)
    }
    fn serialize_u8(self, _: u8) -> Fit {
        Err(Mismatch)
    }
    fn serialize_u16(self, _: u16) -> Fit {
        Err(Mismatch)
    }
    fn serialize_u32(self, v: u32) -> Fit {
        self.integer(i64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Fit {
        self.integer(i64::try_from(v).map_err(|_| Mismatch)?)
    }
    fn serialize_f32(self, _: f32) -> Fit {
        Err(Mismatch)
    }
    fn serialize_f64(self, _: f64) -> Fit {
        Err(Mismatch)
    }
    fn serialize_char(self, _: char) -> Fit {
        Err(Mismatch)
    }
    fn serialize_bytes(self, _: &[u8]) -> Fit {
        Err(Mismatch)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Fit {
        Err(Mismatch)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Fit {
        Err(Mismatch)
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Fit {
        Err(Mismatch)
    }
    fn serialize_tuple(self, _: usize) -> Result<Impossible, Mismatch> {
        Err(Mismatch)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Impossible, Mismatch> {
        Err(Mismatch)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Impossible, Mismatch> {
        Err(Mismatch)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Impossible, Mismatch> {
        Err(Mismatch)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Impossible, Mismatch> {
        Err(Mismatch)
    }
}

/// An array's items: one block (count, items, 0).
struct SeqSer<'p, 'o> {
    plan: &'p Plan,
    items: &'p Node,
    left: usize,
    out: &'o mut Vec<u8>,
}

impl serde::ser::SerializeSeq for SeqSer<'_, '_> {
    type Ok = ();
    type Error = Mismatch;

    fn serialize_element<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Fit {
        self.left = self.left.checked_sub(1).ok_or(Mismatch)?;
        value.serialize(Ser {
            plan: self.plan,
            node: self.items,
            out: &mut *self.out,
        })
    }

    fn end(self) -> Fit {
        if self.left != 0 {
            return Err(Mismatch);
        }
        self.out.push(0);
        Ok(())
    }
}

enum Kind<'p> {
    /// Fields in schema order; `next` is the first not yet written.
    Record {
        fields: &'p [FieldPlan],
        next: usize,
        any: bool,
    },
    Number {
        done: bool,
    },
}

struct StructSer<'p, 'o> {
    plan: &'p Plan,
    kind: Kind<'p>,
    out: &'o mut Vec<u8>,
}

impl serde::ser::SerializeStruct for StructSer<'_, '_> {
    type Ok = ();
    type Error = Mismatch;

    fn serialize_field<T: serde::Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Fit {
        match &mut self.kind {
            Kind::Record { fields, next, any } => {
                // Fields skipped over are absent (null or []), as in `Plan::record`.
                loop {
                    let f = fields.get(*next).ok_or(Mismatch)?;
                    *next += 1;
                    if &*f.name == key {
                        *any = true;
                        return value.serialize(Ser {
                            plan: self.plan,
                            node: &f.node,
                            out: &mut *self.out,
                        });
                    }
                    Plan::absent(&f.node, self.out)?;
                }
            }
            Kind::Number { done } => {
                if std::mem::replace(done, true) {
                    return Err(Mismatch);
                }
                value.serialize(Ser {
                    plan: self.plan,
                    node: &Node::String,
                    out: &mut *self.out,
                })
            }
        }
    }

    fn end(self) -> Fit {
        match self.kind {
            Kind::Record { fields, next, any } => {
                // FHIR JSON has no empty objects.
                if !any {
                    return Err(Mismatch);
                }
                for f in fields.get(next..).unwrap_or(&[]) {
                    Plan::absent(&f.node, self.out)?;
                }
                Ok(())
            }
            Kind::Number { done } => done.then_some(()).ok_or(Mismatch),
        }
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
            Schema::String if decimal => Node::Decimal,
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
                let fields = r
                    .fields
                    .iter()
                    .map(|f: &RecordField| FieldPlan {
                        name: f.name.as_str().into(),
                        node: self.node(&f.schema, is_decimal(f)),
                    })
                    .collect();
                self.records[i].fields = fields;
                Node::Record(i)
            }
            _ => Node::Unsupported,
        }
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
fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

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
