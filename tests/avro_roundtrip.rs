//! FHIR JSON ⇄ Avro: every resource the transform produces from the fixtures
//! (and from a synthetic message reaching the value types the fixtures do
//! not) survives `decode(encode(r))` exactly, member order and decimal text
//! included; the converter is strict and names paths, never values; the
//! Confluent wire header; the schemas' shape and their evolution rules.

#[path = "common/synthetic.rs"]
mod synthetic;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use bytes::Bytes;
use hl7bridge::avro::{
    decode, encode, to_avro, to_fhir, wire_decode, wire_encode, AvroError, FhirSchemas,
    ENCOUNTER_AVSC, PRECISION_URL, RESOURCE_SCHEMAS, TEXT_URL,
};
use hl7bridge::hl7::batch;
use hl7bridge::transform::{Mapped, Mapper};
use serde_json::{json, Value};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The messages of one fixture file: a batch is split as the listener does.
fn messages(raw: Vec<u8>) -> Vec<Vec<u8>> {
    if batch::is_batch(&raw) {
        batch::split(&Bytes::from(raw))
            .messages
            .iter()
            .map(|m| m.to_vec())
            .collect()
    } else {
        vec![raw]
    }
}

/// Every resource the mapper produces from `fixtures/*.hl7`, with its source.
/// Fixtures meant to be rejected, or with no FHIR content, contribute none.
fn fixture_resources() -> Vec<(String, Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .collect();
    paths.sort();
    let mapper = Mapper::default();
    let mut out = Vec::new();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(&path).expect("read fixture");
        for (i, msg) in messages(raw).into_iter().enumerate() {
            if let Ok(Mapped::Resources(rs)) = mapper.map(&msg) {
                out.extend(rs.into_iter().map(|r| (format!("{name}#{i}"), r)));
            }
        }
    }
    out
}

fn synthetic_resources() -> Vec<Value> {
    std::iter::once(synthetic::oru_every_value_type())
        .chain(synthetic::orders_every_timing())
        .flat_map(|m| match Mapper::default().map(&m) {
            Ok(Mapped::Resources(rs)) => rs,
            other => panic!("synthetic message did not map: {other:?}"),
        })
        .collect()
}

fn schema_for<'a>(schemas: &'a FhirSchemas, r: &Value) -> &'a Schema {
    let rt = r["resourceType"].as_str().expect("resourceType");
    schemas
        .for_resource(rt)
        .unwrap_or_else(|| panic!("no schema for {rt}"))
}

/// `decode(encode(r)) == r`, as values and as serialized text (member order).
fn assert_round_trip(schemas: &FhirSchemas, source: &str, r: &Value) {
    let schema = schema_for(schemas, r);
    let bytes = encode(schema, r).unwrap_or_else(|e| panic!("{source}: encode: {e}"));
    let framed = wire_encode(42, &bytes);
    let (id, datum) = wire_decode(&framed).expect("wire_decode");
    assert_eq!((id, datum), (42, bytes.as_slice()));
    let back = decode(schema, datum).unwrap_or_else(|e| panic!("{source}: decode: {e}"));
    assert_eq!(&back, r, "{source}: value differs after the round trip");
    assert_eq!(
        serde_json::to_string(&back).unwrap(),
        serde_json::to_string(r).unwrap(),
        "{source}: text (member order or number text) differs after the round trip"
    );
}

#[test]
fn every_fixture_resource_round_trips_exactly() {
    let schemas = FhirSchemas::builtin();
    let resources = fixture_resources();
    let mut by_type = BTreeMap::<String, usize>::new();
    for (source, r) in &resources {
        assert_round_trip(&schemas, source, r);
        *by_type
            .entry(r["resourceType"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        resources.len() >= 20,
        "only {} resources round-tripped: the fixtures no longer map?",
        resources.len()
    );
    for &(rt, _) in RESOURCE_SCHEMAS {
        assert!(
            by_type.get(rt).is_some_and(|&n| n > 0),
            "no {rt}: {by_type:?}"
        );
    }
}

#[test]
fn synthetic_value_types_round_trip_exactly() {
    let schemas = FhirSchemas::builtin();
    let resources = synthetic_resources();
    for r in &resources {
        assert_round_trip(&schemas, "synthetic", r);
    }
    // Guard that the message still reaches what it was written for.
    let text = serde_json::to_string(&resources).unwrap();
    for needle in [
        "\"value\":1.50,",
        "\"value\":0.000120,",
        "\"valueTime\":\"08:30:00\"",
        "\"valueRange\"",
        "\"valueDateTime\":\"2026-11-15T08:15:30.25-05:00\"",
        "\"version\":\"2026-01\"",
        "\"text\":\"Original text\"",
        "\"preAdmissionIdentifier\"",
        "\"dischargeDisposition\"",
        "\"end\":\"2026-11-16T09:30:00+00:00\"",
        "\"denominator\":{\"value\":320.0",
    ] {
        assert!(text.contains(needle), "synthetic output lacks {needle}");
    }
}

/// apache-avro's bytes for `to_avro`'s value: what `encode` must write.
fn reference_bytes(schema: &Schema, r: &Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(to_avro(schema, r).unwrap())
        .unwrap()
}

/// The same resource with every object's members in reverse order.
fn reversed_members(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .rev()
                .map(|(k, x)| (k.clone(), reversed_members(x)))
                .collect(),
        ),
        Value::Array(xs) => Value::Array(xs.iter().map(reversed_members).collect()),
        other => other.clone(),
    }
}

/// `encode` writes Avro straight from the JSON (no `apache_avro` value, no
/// validation pass): its bytes are apache-avro's, byte for byte, for every
/// resource of the corpus, whatever the member order, and with the schema
/// compiled once ([`FhirSchemas::encoder`]) or per call.
#[test]
fn the_direct_encoder_writes_exactly_apache_avros_bytes() {
    let schemas = FhirSchemas::builtin();
    let mut corpus = fixture_resources();
    corpus.extend(
        synthetic_resources()
            .into_iter()
            .map(|r| ("synthetic".to_owned(), r)),
    );
    assert!(corpus.len() > 20);
    for (source, r) in &corpus {
        let schema = schema_for(&schemas, r);
        let expected = reference_bytes(schema, r);
        assert_eq!(encode(schema, r).unwrap(), expected, "{source}");
        let encoder = schemas
            .encoder(r["resourceType"].as_str().unwrap())
            .unwrap();
        assert_eq!(encoder.encode(r).unwrap(), expected, "{source}");
        // Out of schema order (not what the mapper emits), same datum.
        let reversed = reversed_members(r);
        assert_eq!(encoder.encode(&reversed).unwrap(), expected, "{source}");
        // Appended after a wire header: exactly `wire_encode`'s record.
        let mut framed = hl7bridge::avro::wire_header(7).to_vec();
        encoder.encode_into(r, &mut framed).unwrap();
        assert_eq!(framed, wire_encode(7, &expected), "{source}");
    }
}

/// Every JSON pointer in `v` (the root excluded).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, x)| (format!("{at}/{k}"), x)).collect(),
        Value::Array(xs) => xs
            .iter()
            .enumerate()
            .map(|(i, x)| (format!("{at}/{i}"), x))
            .collect(),
        _ => Vec::new(),
    };
    for (p, x) in children {
        out.push(p.clone());
        pointers(x, p, out);
    }
}

/// The direct encoder accepts exactly what `to_avro` accepts: every element
/// of a corpus of resources replaced by each JSON kind, removed, or given an
/// unknown member, is refused by both with the same message (naming the
/// path) or accepted by both with apache-avro's bytes.
#[test]
fn the_direct_encoder_accepts_and_refuses_exactly_what_to_avro_does() {
    let schemas = FhirSchemas::builtin();
    let mut corpus = synthetic_resources();
    corpus.extend(
        fixture_resources()
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| r["resourceType"] == "Encounter"),
    );
    let replacements = [
        Value::Null,
        json!([]),
        json!({}),
        json!(7),
        json!(-2.50),
        json!(3_000_000_000_i64),
        json!("SECRET"),
        json!(true),
        json!(["SECRET"]),
        json!({"text": "SECRET"}),
    ];
    let (mut accepted, mut refused) = (0, 0);
    let mut check = |schema: &Schema, r: &Value, what: &str| match to_avro(schema, r) {
        Ok(_) => {
            let expected = reference_bytes(schema, r);
            assert_eq!(encode(schema, r).expect(what), expected, "{what}");
            accepted += 1;
        }
        Err(e) => {
            let direct = encode(schema, r).expect_err(what);
            assert_eq!(direct.to_string(), e.to_string(), "{what}");
            refused += 1;
        }
    };
    for r in &corpus {
        let schema = schema_for(&schemas, r);
        let mut paths = Vec::new();
        pointers(r, String::new(), &mut paths);
        for p in &paths {
            for (i, x) in replacements.iter().enumerate() {
                let mut m = r.clone();
                *m.pointer_mut(p).unwrap() = x.clone();
                check(schema, &m, &format!("{p} = replacement {i}"));
            }
            let (parent, last) = p.rsplit_once('/').unwrap();
            let mut m = r.clone();
            match m.pointer_mut(parent).unwrap() {
                Value::Object(o) => {
                    o.shift_remove(last);
                }
                Value::Array(a) => {
                    a.remove(last.parse().unwrap());
                }
                _ => unreachable!(),
            }
            check(schema, &m, &format!("{p} removed"));
            let mut m = r.clone();
            if let Value::Object(o) = m.pointer_mut(p).unwrap() {
                o.insert("zzUnknown".into(), json!("SECRET"));
                check(schema, &m, &format!("{p} with an unknown member"));
            }
        }
    }
    assert!(accepted > 100 && refused > 1000, "{accepted} {refused}");
}

/// Every field of every record type is exercised by the round-trip corpus
/// (fixtures plus the synthetic message), so no part of either schema is
/// untested, and none describes something the mapper cannot emit.
#[test]
fn every_schema_field_is_exercised() {
    let schemas = FhirSchemas::builtin();
    let mut all = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut corpus: Vec<Value> = fixture_resources().into_iter().map(|(_, r)| r).collect();
    corpus.extend(synthetic_resources());
    for (rt, _) in RESOURCE_SCHEMAS {
        let schema = schemas.for_resource(rt).unwrap();
        let names = apache_avro::schema::ResolvedSchema::try_from(schema).unwrap();
        for s in names.get_names().values() {
            if let Schema::Record(rec) = s {
                for f in &rec.fields {
                    all.insert(format!("{}.{}", rec.name.fullname(None), f.name));
                }
            }
        }
    }
    for r in &corpus {
        let schema = schema_for(&schemas, r);
        collect_used(schema, &to_avro(schema, r).unwrap(), &mut seen);
    }
    let unused: Vec<_> = all.difference(&seen).collect();
    assert!(unused.is_empty(), "never emitted: {unused:?}");
}

/// Records `record.field` for every field holding a non-null, non-empty value.
fn collect_used(schema: &Schema, v: &Avro, seen: &mut BTreeSet<String>) {
    let names = apache_avro::schema::ResolvedSchema::try_from(schema).unwrap();
    fn walk(
        s: &Schema,
        v: &Avro,
        names: &apache_avro::schema::NamesRef<'_>,
        seen: &mut BTreeSet<String>,
    ) {
        let s = match s {
            Schema::Ref { name } => names[name],
            s => s,
        };
        match (s, v) {
            (Schema::Record(rec), Avro::Record(fields)) => {
                for (f, (_, fv)) in rec.fields.iter().zip(fields) {
                    let used = !matches!(fv, Avro::Union(_, b) if **b == Avro::Null)
                        && !matches!(fv, Avro::Array(a) if a.is_empty());
                    if used {
                        seen.insert(format!("{}.{}", rec.name.fullname(None), f.name));
                    }
                    walk(&f.schema, fv, names, seen);
                }
            }
            (Schema::Union(u), Avro::Union(i, b)) => {
                walk(&u.variants()[*i as usize], b, names, seen)
            }
            (Schema::Array(a), Avro::Array(items)) => {
                for item in items {
                    walk(&a.items, item, names, seen);
                }
            }
            _ => {}
        }
    }
    walk(schema, v, names.get_names(), seen);
}

fn observation() -> Value {
    synthetic_resources()
        .into_iter()
        .find(|r| r["resourceType"] == "Observation")
        .unwrap()
}

fn assert_rejected(schema: &Schema, r: &Value, path: &str, secret: &str) -> AvroError {
    let err = to_avro(schema, r).expect_err("must be rejected");
    let msg = err.to_string();
    assert!(msg.contains(path), "{msg:?} does not name {path}");
    assert!(!msg.contains(secret), "{msg:?} leaks the value");
    assert!(
        !format!("{err:?}").contains(secret),
        "{err:?} leaks the value"
    );
    // The direct encoder refuses it with the same content-free error.
    let direct = encode(schema, r).expect_err("the encoder must refuse it too");
    assert_eq!(direct.to_string(), msg);
    err
}

#[test]
fn unknown_members_and_wrong_types_are_rejected_by_path_without_values() {
    let schemas = FhirSchemas::builtin();
    let schema = &schemas.observation;
    let secret = "SECRET-PATIENT-VALUE";

    let mut r = observation();
    r["valueFoo"] = json!(secret);
    let e = assert_rejected(schema, &r, "Observation.valueFoo", secret);
    assert!(matches!(e, AvroError::UnknownMember { .. }), "{e:?}");

    let mut r = observation();
    r["meta"]["versionIdX"] = json!(secret);
    assert_rejected(schema, &r, "Observation.meta.versionIdX", secret);

    let mut r = observation();
    r["note"][0]["authorString"] = json!(secret);
    assert_rejected(schema, &r, "Observation.note[0].authorString", secret);

    let mut r = observation();
    r["code"]["coding"][0]["code"] = json!(12345);
    let e = assert_rejected(schema, &r, "Observation.code.coding[0].code", "12345");
    assert!(matches!(e, AvroError::WrongType { .. }), "{e:?}");

    // A decimal must be a JSON number, not a string.
    let mut r = observation();
    r["valueQuantity"]["value"] = json!(secret);
    assert_rejected(schema, &r, "Observation.valueQuantity.value", secret);

    // FHIR JSON has no nulls or empty arrays; they would not come back.
    let mut r = observation();
    r["valueString"] = Value::Null;
    let e = assert_rejected(schema, &r, "Observation.valueString", secret);
    assert!(matches!(e, AvroError::Empty { .. }), "{e:?}");
    let mut r = observation();
    r["interpretation"] = json!([]);
    assert_rejected(schema, &r, "Observation.interpretation", secret);

    let mut r = observation();
    r.as_object_mut().unwrap().remove("code");
    let e = assert_rejected(schema, &r, "Observation.code", secret);
    assert!(matches!(e, AvroError::Missing { .. }), "{e:?}");

    // An Encounter is not an Observation.
    let enc = synthetic_resources().remove(0);
    let e = to_avro(schema, &enc).unwrap_err();
    assert!(matches!(e, AvroError::ResourceType { .. }), "{e:?}");
}

#[test]
fn decimal_text_survives() {
    let schemas = FhirSchemas::builtin();
    let schema = &schemas.observation;
    let r: Value = serde_json::from_str(
        r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},
            "component":[
              {"code":{"text":"a"},"valueQuantity":{"value":1.50,"unit":"mg"}},
              {"code":{"text":"b"},"valueRange":{"low":{"value":0.000120},"high":{"value":-2.0}}},
              {"code":{"text":"c"},"valueRatio":{"numerator":{"value":100},"denominator":{"value":1e3}}}]}"#,
    )
    .unwrap();
    let back = decode(schema, &encode(schema, &r).unwrap()).unwrap();
    let text = serde_json::to_string(&back).unwrap();
    // (1e3 is checked by the text comparison below only: serde_json itself
    // keeps an exponent as `1e+3`, before any Avro is involved.)
    for n in ["1.50", "0.000120", "-2.0", "100"] {
        assert!(
            text.contains(&format!("\"value\":{n}}}")) || text.contains(&format!("\"value\":{n},")),
            "{n} lost: {text}"
        );
    }
    assert_eq!(text, serde_json::to_string(&r).unwrap());

    // In Avro the decimal is a double, so generic consumers get a number; the
    // text comes back from the companion `_value` (R4 quantity-precision).
    let avro = to_avro(schema, &r).unwrap();
    let shown = format!("{avro:?}");
    assert!(shown.contains("Double(1.5)"), "{shown}");
    assert!(shown.contains(PRECISION_URL), "{shown}");
    // A companion that does not rebuild this number is refused, never guessed.
    for (from, to) in [
        (PRECISION_URL, "urn:another:extension"),
        (PRECISION_URL, TEXT_URL),
    ] {
        let forged = replace_string(&avro, from, to);
        let e = to_fhir(schema, &forged).unwrap_err();
        assert!(matches!(e, AvroError::Decimal { .. }), "{to}: {e:?}");
        assert!(
            e.to_string()
                .contains("Observation.component[0].valueQuantity._value"),
            "{e}"
        );
    }
}

/// Before schema version 3 a decimal was a string holding its exact text:
/// records written so still decode with their writer schema, to the same
/// FHIR JSON as a version-3 record.
#[test]
fn records_written_with_text_decimals_still_decode() {
    let v2 = Schema::parse_str(include_str!("avro/fhir.Observation.v2.avsc")).unwrap();
    let schemas = FhirSchemas::builtin();
    let mut with_decimals = 0;
    for r in synthetic_resources()
        .into_iter()
        .filter(|r| r["resourceType"] == "Observation")
    {
        let old = encode(&v2, &r).unwrap();
        let new = encode(&schemas.observation, &r).unwrap();
        assert_eq!(decode(&v2, &old).unwrap(), r);
        assert_eq!(decode(&schemas.observation, &new).unwrap(), r);
        with_decimals += usize::from(old != new);
    }
    assert!(with_decimals >= 5, "{with_decimals}");
}

fn replace_string(v: &Avro, from: &str, to: &str) -> Avro {
    match v {
        Avro::String(s) if s == from => Avro::String(to.to_owned()),
        Avro::Record(fs) => Avro::Record(
            fs.iter()
                .map(|(k, x)| (k.clone(), replace_string(x, from, to)))
                .collect(),
        ),
        Avro::Array(xs) => Avro::Array(xs.iter().map(|x| replace_string(x, from, to)).collect()),
        Avro::Union(i, b) => Avro::Union(*i, Box::new(replace_string(b, from, to))),
        other => other.clone(),
    }
}

#[test]
fn wire_format_is_magic_zero_and_big_endian_id() {
    let framed = wire_encode(0x0102_0304, b"datum");
    assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
    assert_eq!(&framed[5..], b"datum");
    assert_eq!(wire_decode(&framed).unwrap(), (0x0102_0304, &b"datum"[..]));
    assert_eq!(wire_decode(&[0, 0, 0, 0, 7]).unwrap(), (7, &b""[..]));

    let mut bad = framed.clone();
    bad[0] = 1;
    assert!(matches!(wire_decode(&bad), Err(AvroError::WireMagic(1))));
    for short in [&[][..], &[0][..], &[0, 0, 0, 1][..]] {
        assert!(
            matches!(wire_decode(short), Err(AvroError::WireTooShort(n)) if n == short.len()),
            "{short:?}"
        );
    }
}

#[test]
fn decode_rejects_trailing_and_truncated_bytes() {
    let schemas = FhirSchemas::builtin();
    let schema = &schemas.observation;
    let mut bytes = encode(schema, &observation()).unwrap();
    bytes.push(0);
    assert!(matches!(
        decode(schema, &bytes),
        Err(AvroError::TrailingBytes(1))
    ));
    bytes.truncate(bytes.len() / 2);
    assert!(matches!(
        decode(schema, &bytes),
        Err(AvroError::Decode { .. })
    ));
}

/// Named type definitions (full names) in document order, and every name
/// used as a type, from the schema's JSON text.
fn named_types(text: &str) -> (Vec<String>, Vec<String>) {
    fn walk(v: &Value, defs: &mut Vec<String>, refs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let (Some("record" | "enum" | "fixed"), Some(Value::String(n))) =
                    (m.get("type").and_then(Value::as_str), m.get("name"))
                {
                    let ns = m.get("namespace").and_then(Value::as_str).unwrap_or("fhir");
                    defs.push(if n.contains('.') {
                        n.clone()
                    } else {
                        format!("{ns}.{n}")
                    });
                }
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("type" | "items", Value::String(t)) if t.contains('.') => {
                            refs.push(t.clone())
                        }
                        ("type", Value::Array(branches)) => {
                            for b in branches {
                                match b {
                                    Value::String(t) if t.contains('.') => refs.push(t.clone()),
                                    other => walk(other, defs, refs),
                                }
                            }
                        }
                        _ => walk(x, defs, refs),
                    }
                }
            }
            Value::Array(xs) => xs.iter().for_each(|x| walk(x, defs, refs)),
            _ => {}
        }
    }
    let (mut defs, mut refs) = (Vec::new(), Vec::new());
    walk(&serde_json::from_str(text).unwrap(), &mut defs, &mut refs);
    (defs, refs)
}

#[test]
fn schemas_parse_and_define_each_named_type_once() {
    let schemas = FhirSchemas::builtin();
    for (rt, text) in RESOURCE_SCHEMAS {
        let schema = schemas.for_resource(rt).unwrap();
        let root = format!("fhir.{rt}");
        let root = root.as_str();
        assert_eq!(schema.name().unwrap().fullname(None), root);
        Schema::parse_str(text).expect("parses on its own");
        let (defs, refs) = named_types(text);
        let unique: BTreeSet<_> = defs.iter().collect();
        assert_eq!(unique.len(), defs.len(), "{root}: defined twice: {defs:?}");
        assert!(defs.len() > 5, "{root}: shared datatypes are named records");
        for r in &refs {
            assert!(unique.contains(r), "{root}: {r} used but not defined");
        }
        assert!(
            serde_json::from_str::<Value>(text).unwrap()["doc"]
                .as_str()
                .is_some_and(|d| d.contains("decimal") && d.contains("dateTime")),
            "{root}: the doc explains decimals and dates"
        );
        assert_evolvable(&serde_json::from_str(text).unwrap(), root);
    }
    assert_eq!(
        schemas.for_resource("Encounter").unwrap().name(),
        schemas.encounter.name()
    );
    assert_eq!(
        schemas.for_resource("Observation").unwrap().name(),
        schemas.observation.name()
    );
    assert!(schemas.for_resource("Practitioner").is_none());
}

/// Optional elements are `["null", T]` with default null, arrays default to
/// `[]`; anything else is a required FHIR element (min 1).
fn assert_evolvable(v: &Value, at: &str) {
    const REQUIRED: &[&str] = &[
        "resourceType",
        "status",
        "class",
        "code",
        "location", // Encounter.location.location
        "text",     // Annotation.text
        "intent",   // ServiceRequest.intent
        "subject",  // ServiceRequest.subject
        "url",      // Extension.url
        "language", // Patient.communication.language
        "other",    // Patient.link.other
        "type",     // Patient.link.type
        "div",      // Narrative.div
    ];
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(fields)) = m.get("fields") {
                for f in fields {
                    let name = f["name"].as_str().unwrap();
                    match &f["type"] {
                        Value::Array(b) => {
                            assert_eq!(b[0], "null", "{at}.{name}: null first");
                            assert_eq!(f.get("default"), Some(&Value::Null), "{at}.{name}");
                        }
                        Value::Object(t) if t["type"] == "array" => {
                            assert_eq!(f.get("default"), Some(&json!([])), "{at}.{name}")
                        }
                        _ => assert!(REQUIRED.contains(&name), "{at}.{name} is not optional"),
                    }
                }
            }
            m.values().for_each(|x| assert_evolvable(x, at));
        }
        Value::Array(xs) => xs.iter().for_each(|x| assert_evolvable(x, at)),
        _ => {}
    }
}

fn encounter_with_extra_field(extra: Value) -> Schema {
    let mut v: Value = serde_json::from_str(ENCOUNTER_AVSC).unwrap();
    v["fields"].as_array_mut().unwrap().push(extra);
    Schema::parse_str(&v.to_string()).unwrap()
}

#[test]
fn an_added_optional_field_reads_data_written_with_the_builtin() {
    let schemas = FhirSchemas::builtin();
    let writer = &schemas.encounter;
    let reader = encounter_with_extra_field(
        json!({"name": "partOf", "type": ["null", "string"], "default": null}),
    );
    assert_eq!(
        SchemaCompatibility::can_read(writer, &reader).unwrap(),
        Compatibility::Full
    );

    // And it actually reads: the resource comes back unchanged.
    let enc = fixture_resources()
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r["resourceType"] == "Encounter")
        .unwrap();
    let bytes = encode(writer, &enc).unwrap();
    let value = GenericDatumReader::builder(writer)
        .reader_schema(&reader)
        .build()
        .unwrap()
        .read_value(&mut &bytes[..])
        .unwrap();
    assert_eq!(
        serde_json::to_string(&to_fhir(&reader, &value).unwrap()).unwrap(),
        serde_json::to_string(&enc).unwrap()
    );

    // Control: a field without a default is not backward compatible.
    let required = encounter_with_extra_field(json!({"name": "partOf", "type": "string"}));
    assert!(SchemaCompatibility::can_read(writer, &required).is_err());
}

/// The Observation schema before `specimen` was added (what a running
/// deployment has registered) reads nothing wrong from, and is read by, the
/// new one: the new field is optional with a null default.
#[test]
fn the_observation_schema_evolved_backward_compatibly() {
    let schemas = FhirSchemas::builtin();
    let mut previous: Value = serde_json::from_str(hl7bridge::avro::OBSERVATION_AVSC).unwrap();
    previous["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "specimen");
    let previous = Schema::parse_str(&previous.to_string()).unwrap();
    assert_eq!(
        SchemaCompatibility::can_read(&previous, &schemas.observation).unwrap(),
        Compatibility::Full,
        "the new schema reads data written with the previous one"
    );
}

/// A decimal double with no `_<name>` companion field to hold its text (in a
/// schema of another writer, or an array of decimals) takes only numbers
/// whose double prints back as sent: anything else is refused, never rounded.
#[test]
fn a_decimal_without_a_companion_field_is_never_rounded() {
    let schema = Schema::parse_str(
        r#"{"type": "record", "name": "Bare", "fields": [
            {"name": "one", "type": ["null", "double"], "default": null, "fhirType": "decimal"},
            {"name": "many", "type": {"type": "array", "items": "double"}, "default": [], "fhirType": "decimal"}]}"#,
    )
    .unwrap();
    let fits: Value = serde_json::from_str(r#"{"one": 4.41, "many": [1.5, 182]}"#).unwrap();
    assert_eq!(
        decode(&schema, &encode(&schema, &fits).unwrap()).unwrap(),
        fits
    );
    for bad in [r#"{"one": 4.410}"#, r#"{"many": [1.5, 1.50]}"#] {
        let r: Value = serde_json::from_str(bad).unwrap();
        let e = encode(&schema, &r).unwrap_err();
        assert!(matches!(e, AvroError::Decimal { .. }), "{bad}: {e:?}");
    }
}
