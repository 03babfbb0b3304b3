//! The schema-driven walk between FHIR JSON and Avro values.
//!
//! One walker for every resource type: the schema says which members exist,
//! which are required, and which fields are FHIR decimals. Supported Avro
//! types are records, arrays, `["null", T]` unions, string, boolean, int and
//! long, and double for decimals; anything else in a schema is reported
//! rather than guessed at.
//!
//! A decimal is a `double` (schema version 3 on) followed by its companion
//! `_<name>`, which the walk writes from the decimal's text and reads back
//! into it ([`super::decimal`]); FHIR JSON given to [`to_avro`] never has the
//! companion itself. Before version 3 a decimal was a string holding the
//! exact text, and records written so still decode.

use std::fmt::Write as _;

use apache_avro::schema::{NamesRef, RecordField, RecordSchema, Schema, UnionSchema};
use apache_avro::types::Value as Avro;
use serde_json::{Map, Value as Json};

use super::decimal::{self, Companion};
use super::{resolve, schema_name, AvroError};

/// Field attribute naming the FHIR type of an Avro field. `"decimal"` marks a
/// double (with its companion) or, in older schemas, a string holding the
/// exact JSON number text: either way a JSON number in FHIR.
const FHIR_TYPE: &str = "fhirType";

/// A FHIR resource (JSON) as an Avro value of `schema`.
///
/// Strict, so that `to_fhir(to_avro(r)) == r` for everything it accepts: a
/// member the schema has no field for, a wrong JSON type, a missing required
/// element, or a null / empty array / empty object (which FHIR JSON forbids
/// and which would come back absent) is an error. Missing optional elements
/// become null or an empty array.
pub fn to_avro(schema: &Schema, resource: &Json) -> Result<Avro, AvroError> {
    let resolved = resolve(schema)?;
    to_avro_resolved(schema, resolved.get_names(), resource)
}

/// An Avro value of `schema` as FHIR JSON: nulls and empty arrays are
/// omitted, members come in schema order, decimal strings become JSON numbers
/// with identical text.
pub fn to_fhir(schema: &Schema, value: &Avro) -> Result<Json, AvroError> {
    let resolved = resolve(schema)?;
    to_fhir_resolved(schema, resolved.get_names(), value)
}

pub(super) fn to_avro_resolved<'s>(
    schema: &'s Schema,
    names: &NamesRef<'s>,
    resource: &Json,
) -> Result<Avro, AvroError> {
    let root = root_record(schema)?;
    // A resource of another type would mostly fail on its members anyway;
    // saying so up front gives the useful message.
    if root.lookup.contains_key("resourceType") {
        if let Some(Json::String(rt)) = resource.get("resourceType") {
            if rt != root.name.name() {
                return Err(AvroError::ResourceType {
                    schema: schema_name(schema),
                });
            }
        }
    }
    Walk::new(names, root).json(schema, resource, false)
}

pub(super) fn to_fhir_resolved<'s>(
    schema: &'s Schema,
    names: &NamesRef<'s>,
    value: &Avro,
) -> Result<Json, AvroError> {
    let root = root_record(schema)?;
    Ok(Walk::new(names, root)
        .avro(schema, value, false)?
        .unwrap_or_else(|| Json::Object(Map::new())))
}

fn root_record(schema: &Schema) -> Result<&RecordSchema, AvroError> {
    match schema {
        Schema::Record(r) => Ok(r),
        _ => Err(AvroError::Schema(format!(
            "{}: top level is not a record",
            schema_name(schema)
        ))),
    }
}

/// The walk's state: the named types, and the JSON path of the element
/// being converted (the root is the record's name, e.g. `Observation`).
struct Walk<'a, 's> {
    names: &'a NamesRef<'s>,
    path: String,
    /// The companion of the decimal being read (Avro to FHIR JSON).
    companion: Option<Companion>,
}

impl<'a, 's> Walk<'a, 's> {
    fn new(names: &'a NamesRef<'s>, root: &RecordSchema) -> Self {
        Self {
            names,
            path: root.name.name().to_owned(),
            companion: None,
        }
    }

    /// Named types after their first definition are `Schema::Ref`s.
    fn deref(&self, schema: &'s Schema) -> Result<&'s Schema, AvroError> {
        match schema {
            Schema::Ref { name } => self.names.get(name).copied().ok_or_else(|| {
                AvroError::Schema(format!(
                    "{}: type {} is not defined",
                    self.path,
                    name.fullname(None)
                ))
            }),
            s => Ok(s),
        }
    }

    fn enter(&mut self, member: &str) -> usize {
        let len = self.path.len();
        self.path.push('.');
        self.path.push_str(member);
        len
    }

    fn enter_index(&mut self, i: usize) -> usize {
        let len = self.path.len();
        let _ = write!(self.path, "[{i}]");
        len
    }

    fn here(&self) -> String {
        self.path.clone()
    }

    fn wrong(&self, expected: &'static str, found: &'static str) -> AvroError {
        AvroError::WrongType {
            path: self.here(),
            expected,
            found,
        }
    }

    /// The value of an absent element: null or `[]` if it is optional.
    fn absent(&self, schema: &'s Schema) -> Result<Avro, AvroError> {
        match self.deref(schema)? {
            Schema::Union(u) => match null_index(u) {
                Some(i) => Ok(Avro::Union(i, Box::new(Avro::Null))),
                None => Err(AvroError::Missing { path: self.here() }),
            },
            Schema::Array(_) => Ok(Avro::Array(Vec::new())),
            Schema::Null => Ok(Avro::Null),
            _ => Err(AvroError::Missing { path: self.here() }),
        }
    }

    // ---- FHIR JSON to Avro ----

    fn json(&mut self, schema: &'s Schema, json: &Json, decimal: bool) -> Result<Avro, AvroError> {
        if json.is_null() {
            return Err(AvroError::Empty { path: self.here() });
        }
        match self.deref(schema)? {
            Schema::Union(u) => {
                let (i, branch) = self.present_branch(u)?;
                Ok(Avro::Union(i, Box::new(self.json(branch, json, decimal)?)))
            }
            Schema::Record(r) => self.json_record(r, json),
            Schema::Array(a) => {
                let Json::Array(items) = json else {
                    return Err(self.wrong("array", json_kind(json)));
                };
                if items.is_empty() {
                    return Err(AvroError::Empty { path: self.here() });
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = self.enter_index(i);
                    out.push(self.json(&a.items, item, decimal)?);
                    self.path.truncate(len);
                }
                Ok(Avro::Array(out))
            }
            Schema::Double if decimal => match json {
                Json::Number(n) => decimal::split(n.as_str())
                    .map(|(d, _)| Avro::Double(d))
                    .map_err(|_| AvroError::Decimal { path: self.here() }),
                _ => Err(self.wrong("number (FHIR decimal)", json_kind(json))),
            },
            Schema::String if decimal => match json {
                // arbitrary_precision: the number's text is exactly what was parsed.
                Json::Number(n) => Ok(Avro::String(n.to_string())),
                _ => Err(self.wrong("number (FHIR decimal)", json_kind(json))),
            },
            Schema::String => match json {
                Json::String(s) => Ok(Avro::String(s.clone())),
                _ => Err(self.wrong("string", json_kind(json))),
            },
            Schema::Boolean => match json {
                Json::Bool(b) => Ok(Avro::Boolean(*b)),
                _ => Err(self.wrong("boolean", json_kind(json))),
            },
            Schema::Int => json
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Avro::Int)
                .ok_or_else(|| self.wrong("32-bit integer", json_kind(json))),
            Schema::Long => json
                .as_i64()
                .map(Avro::Long)
                .ok_or_else(|| self.wrong("64-bit integer", json_kind(json))),
            other => Err(self.unsupported(other)),
        }
    }

    fn json_record(&mut self, r: &'s RecordSchema, json: &Json) -> Result<Avro, AvroError> {
        let Json::Object(obj) = json else {
            return Err(self.wrong("object", json_kind(json)));
        };
        if obj.is_empty() {
            return Err(AvroError::Empty { path: self.here() });
        }
        if let Some(unknown) = obj.keys().find(|k| !r.lookup.contains_key(k.as_str())) {
            self.enter(unknown);
            return Err(AvroError::UnknownMember { path: self.here() });
        }
        let mut fields = Vec::with_capacity(r.fields.len());
        // The companion the decimal just written needs, for the next field.
        let mut companion: Option<Companion> = None;
        for (i, f) in r.fields.iter().enumerate() {
            let len = self.enter(&f.name);
            let v = if is_companion(r, i) {
                // Derived from the decimal: FHIR JSON handed in may not set it.
                if obj.contains_key(&f.name) {
                    return Err(AvroError::UnknownMember { path: self.here() });
                }
                match companion.take() {
                    Some(c) => self.json(&f.schema, &c.to_json(), false)?,
                    None => self.absent(&f.schema)?,
                }
            } else {
                match obj.get(&f.name) {
                    Some(member) => {
                        if is_decimal(f) && self.is_double(&f.schema)? {
                            companion = self.decimal_companion(r, i, member)?;
                        }
                        self.json(&f.schema, member, is_decimal(f))?
                    }
                    None => self.absent(&f.schema)?,
                }
            };
            self.path.truncate(len);
            fields.push((f.name.clone(), v));
        }
        Ok(Avro::Record(fields))
    }

    /// Whether a field holds doubles: a double, optional or in an array.
    fn is_double(&self, schema: &'s Schema) -> Result<bool, AvroError> {
        match self.deref(schema)? {
            Schema::Double => Ok(true),
            Schema::Union(u) => self.is_double(self.present_branch(u)?.1),
            Schema::Array(a) => self.is_double(&a.items),
            _ => Ok(false),
        }
    }

    /// The companion a decimal's text needs; an error if it needs one and
    /// field `i` has no companion field to hold it.
    fn decimal_companion(
        &self,
        r: &RecordSchema,
        i: usize,
        member: &Json,
    ) -> Result<Option<Companion>, AvroError> {
        let n = match member {
            Json::Number(n) => n,
            // An array of decimals has no companion to hold their texts.
            Json::Array(items) => {
                let needs = |x: &Json| {
                    x.as_number()
                        .is_some_and(|n| !matches!(decimal::split(n.as_str()), Ok((_, None))))
                };
                if items.iter().any(needs) {
                    return Err(AvroError::Decimal { path: self.here() });
                }
                return Ok(None);
            }
            _ => return Ok(None), // the type error is reported by `json`
        };
        match decimal::split(n.as_str()) {
            Ok((_, None)) => Ok(None),
            Ok((_, Some(c))) if is_companion(r, i + 1) => Ok(Some(c)),
            _ => Err(AvroError::Decimal { path: self.here() }),
        }
    }

    /// The branch a present value takes: the one non-null branch.
    fn present_branch(&self, u: &'s UnionSchema) -> Result<(u32, &'s Schema), AvroError> {
        let mut branches = u
            .variants()
            .iter()
            .enumerate()
            .filter(|(_, s)| !matches!(s, Schema::Null));
        match (branches.next(), branches.next()) {
            (Some((i, s)), None) => Ok((index(i)?, s)),
            _ => Err(AvroError::Schema(format!(
                "{}: only [\"null\", T] unions are supported",
                self.path
            ))),
        }
    }

    fn unsupported(&self, schema: &Schema) -> AvroError {
        AvroError::Schema(format!(
            "{}: Avro type {} is not supported by the FHIR converter",
            self.path,
            schema_kind(schema)
        ))
    }

    // ---- Avro to FHIR JSON ----

    /// `None` means "omit": null, an empty array or an empty object.
    fn avro(
        &mut self,
        schema: &'s Schema,
        value: &Avro,
        decimal: bool,
    ) -> Result<Option<Json>, AvroError> {
        let schema = self.deref(schema)?;
        match (schema, value) {
            (Schema::Union(u), Avro::Union(i, inner)) => {
                let branch = usize::try_from(*i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| self.wrong("a branch of the union", "an out-of-range branch"))?;
                self.avro(branch, inner, decimal)
            }
            (Schema::Null, Avro::Null) => Ok(None),
            (Schema::Record(r), Avro::Record(fields)) => self.avro_record(r, fields),
            (Schema::Array(a), Avro::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = self.enter_index(i);
                    out.extend(self.avro(&a.items, item, decimal)?);
                    self.path.truncate(len);
                }
                Ok((!out.is_empty()).then_some(Json::Array(out)))
            }
            (Schema::Double, Avro::Double(d)) if decimal => {
                decimal::join(*d, self.companion.take().as_ref())
                    .map(|n| Some(Json::Number(n)))
                    .map_err(|_| AvroError::Decimal { path: self.here() })
            }
            (Schema::String, Avro::String(s)) if decimal => {
                // Only exact JSON number text: `1.50` stays `1.50`; ` 1.5`, `+1`, `.5` are refused.
                match serde_json::from_str::<Json>(s) {
                    Ok(Json::Number(n)) if n.to_string() == *s => Ok(Some(Json::Number(n))),
                    _ => Err(AvroError::Decimal { path: self.here() }),
                }
            }
            (Schema::String, Avro::String(s)) => Ok(Some(Json::String(s.clone()))),
            (Schema::Boolean, Avro::Boolean(b)) => Ok(Some(Json::Bool(*b))),
            (Schema::Int, Avro::Int(n)) => Ok(Some(Json::from(*n))),
            (Schema::Long, Avro::Long(n)) => Ok(Some(Json::from(*n))),
            (
                Schema::Union(_)
                | Schema::Null
                | Schema::Record(_)
                | Schema::Array(_)
                | Schema::String
                | Schema::Boolean
                | Schema::Int
                | Schema::Long
                | Schema::Double,
                _,
            ) => Err(self.wrong(schema_kind(schema), value_kind(value))),
            (other, _) => Err(self.unsupported(other)),
        }
    }

    fn avro_record(
        &mut self,
        r: &'s RecordSchema,
        fields: &[(String, Avro)],
    ) -> Result<Option<Json>, AvroError> {
        if let Some((unknown, _)) = fields.iter().find(|(k, _)| !r.lookup.contains_key(k)) {
            self.enter(unknown);
            return Err(AvroError::UnknownMember { path: self.here() });
        }
        let mut out = Map::new();
        // Decoded records are in schema order; search only for hand-built ones.
        let value_of = |pos: usize, f: &RecordField| match fields.get(pos) {
            Some((k, v)) if *k == f.name => Some(v),
            _ => fields.iter().find(|(k, _)| *k == f.name).map(|(_, v)| v),
        };
        for (pos, f) in r.fields.iter().enumerate() {
            let value = value_of(pos, f);
            if value.is_some() && is_decimal(f) && is_companion(r, pos + 1) {
                let c = &r.fields[pos + 1];
                self.companion = self.read_companion(c, value_of(pos + 1, c))?;
            }
            let len = self.enter(&f.name);
            if is_companion(r, pos) {
                // Read with its decimal, just before; absent or null is fine.
                if let Some(v) = value {
                    self.avro(&f.schema, v, false)?;
                }
                self.path.truncate(len);
                continue;
            }
            match value {
                Some(v) => {
                    let j = self.avro(&f.schema, v, is_decimal(f))?;
                    if self.companion.take().is_some() {
                        // A companion without its decimal: not written by the bridge.
                        return Err(AvroError::Decimal { path: self.here() });
                    }
                    if let Some(j) = j {
                        out.insert(f.name.clone(), j);
                    }
                }
                // Absent is fine only where the schema allows null or [].
                None => {
                    self.absent(&f.schema)?;
                }
            }
            self.path.truncate(len);
        }
        Ok((!out.is_empty()).then_some(Json::Object(out)))
    }
}

impl<'s> Walk<'_, 's> {
    /// A decimal's companion field as [`Companion`]; `None` when null.
    fn read_companion(
        &mut self,
        f: &'s RecordField,
        value: Option<&Avro>,
    ) -> Result<Option<Companion>, AvroError> {
        let Some(v) = value else {
            return Ok(None);
        };
        let len = self.enter(&f.name);
        let element = self.avro(&f.schema, v, false)?;
        let companion = element
            .map(|e| Companion::from_json(&e))
            .transpose()
            .map_err(|_| AvroError::Decimal { path: self.here() });
        self.path.truncate(len);
        companion
    }
}

pub(super) fn is_decimal(f: &RecordField) -> bool {
    f.custom_attributes.get(FHIR_TYPE).and_then(Json::as_str) == Some("decimal")
}

/// Field `i` is the companion `_<name>` of the decimal field before it.
pub(super) fn is_companion(r: &RecordSchema, i: usize) -> bool {
    let (Some(prev), Some(f)) = (
        i.checked_sub(1).and_then(|p| r.fields.get(p)),
        r.fields.get(i),
    ) else {
        return false;
    };
    is_decimal(prev) && f.name.strip_prefix('_') == Some(prev.name.as_str())
}

fn null_index(u: &UnionSchema) -> Option<u32> {
    let i = u
        .variants()
        .iter()
        .position(|s| matches!(s, Schema::Null))?;
    u32::try_from(i).ok()
}

fn index(i: usize) -> Result<u32, AvroError> {
    u32::try_from(i).map_err(|_| AvroError::Schema("union has too many branches".to_owned()))
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn schema_kind(s: &Schema) -> &'static str {
    match s {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int => "int",
        Schema::Long => "long",
        Schema::Double => "double",
        Schema::String => "string",
        Schema::Array(_) => "array",
        Schema::Record(_) => "record",
        Schema::Union(_) => "union",
        Schema::Ref { .. } => "named reference",
        _ => "a logical, numeric, bytes, map, enum or fixed type",
    }
}

fn value_kind(v: &Avro) -> &'static str {
    match v {
        Avro::Null => "null",
        Avro::Boolean(_) => "boolean",
        Avro::Int(_) => "int",
        Avro::Long(_) => "long",
        Avro::Double(_) => "double",
        Avro::String(_) => "string",
        Avro::Array(_) => "array",
        Avro::Record(_) => "record",
        Avro::Union(..) => "union",
        _ => "another Avro type",
    }
}
