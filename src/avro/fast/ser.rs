//! Encoding straight from the mapper's typed resources through serde.

use super::*;

/// Encoding straight from a `serde::Serialize` value (the mapper's typed
/// resources): the same walk as [`Plan::encode_into`] over the JSON that
/// value serializes to, without building that JSON. It accepts a subset:
/// members must come in schema order, decimals as `serde_json::Number`.
/// Anything else is a [`Mismatch`], and the caller falls back to the JSON
/// walk, which settles it exactly as before.
impl Plan {
    pub(in crate::avro) fn encode_serialize<T: serde::Serialize + ?Sized>(
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
            // holding its exact text: what a decimal is written from.
            Node::DecimalText | Node::DecimalDouble { .. } => Kind::Number {
                decimal: s.node,
                done: false,
            },
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
        decimal: &'p Node,
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
                let tag = name_tag(key);
                loop {
                    let f = fields.get(*next).ok_or(Mismatch)?;
                    *next += 1;
                    if f.is(key, tag) {
                        *any = true;
                        return value.serialize(Ser {
                            plan: self.plan,
                            node: &f.node,
                            out: &mut *self.out,
                        });
                    }
                    f.write_absent(self.out)?;
                }
            }
            Kind::Number { decimal, done } => {
                if std::mem::replace(done, true) {
                    return Err(Mismatch);
                }
                match decimal {
                    Node::DecimalDouble { companion } => {
                        // The text is needed whole, to split it (no JSON tree).
                        let serde_json::Value::String(text) = value
                            .serialize(serde_json::value::Serializer)
                            .map_err(|_| Mismatch)?
                        else {
                            return Err(Mismatch);
                        };
                        self.plan
                            .decimal_double(&text, companion.as_deref(), self.out)
                    }
                    _ => value.serialize(Ser {
                        plan: self.plan,
                        node: &Node::String,
                        out: &mut *self.out,
                    }),
                }
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
                    f.write_absent(self.out)?;
                }
                Ok(())
            }
            Kind::Number { done, .. } => done.then_some(()).ok_or(Mismatch),
        }
    }
}
