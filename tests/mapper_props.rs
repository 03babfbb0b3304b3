//! The mapper on hostile input: arbitrary bytes, and the fixtures mutated
//! toward what real senders get wrong (stray delimiters, truncated and
//! duplicated segments, wrong OBX-2 types, garbage dates, escapes, odd
//! Unicode). Whatever comes in, the mapper does not panic; when it answers
//! with resources, every one is valid FHIR R4 (the official JSON Schema),
//! Avro-encodes with the registered schemas, and carries no empty string;
//! when it answers with an error, the reason quotes no message content.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hl7bridge::avro::{encode, FhirSchemas};
use hl7bridge::transform::{MapError, Mapped, Mapper};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// Cases per property; `PROPTEST_CASES` overrides it for a longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The FHIR R4 schema as `tests/fhir_mapping.rs` uses it (the whole schema,
/// whose root is a `oneOf` over resource types), and the same schema rooted
/// at one resource's definition, whose errors say which element is wrong.
struct Validators {
    root: jsonschema::Validator,
    /// One per resource type the mapper emits, rooted at its definition.
    by_type: Vec<(&'static str, jsonschema::Validator)>,
}

fn validators() -> &'static Validators {
    static V: OnceLock<Validators> = OnceLock::new();
    V.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir/fhir.r4.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let rooted_at = |rt: &str| {
            let mut s = schema.clone();
            let o = s.as_object_mut().unwrap();
            o.remove("oneOf");
            o.remove("discriminator");
            o.insert("$ref".into(), format!("#/definitions/{rt}").into());
            jsonschema::draft6::new(&s).expect("the FHIR schema compiles")
        };
        Validators {
            root: jsonschema::draft6::new(&schema).expect("the FHIR schema compiles"),
            by_type: hl7bridge::avro::RESOURCE_SCHEMAS
                .iter()
                .map(|&(rt, _)| (rt, rooted_at(rt)))
                .collect(),
        }
    })
}

fn avro() -> &'static FhirSchemas {
    static S: OnceLock<FhirSchemas> = OnceLock::new();
    S.get_or_init(FhirSchemas::builtin)
}

fn mapper() -> &'static Mapper {
    static M: OnceLock<Mapper> = OnceLock::new();
    M.get_or_init(Mapper::default)
}

/// Every message of every fixture (batches split as the listener does).
fn fixtures() -> &'static [Vec<u8>] {
    static F: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
            .collect();
        paths.sort();
        paths
            .iter()
            .flat_map(|p| hl7bridge::hl7::split::split(&std::fs::read(p).unwrap()))
            .map(|m| m.to_vec())
            .collect()
    })
}

/// Patient names and identifiers that appear in the fixtures: no error reason
/// may quote them, whatever was mutated around them.
const PHI: &[&str] = &[
    "TESTPATIENT",
    "Testpatient",
    "MRN",
    "PI50005",
    "ACCT",
    "900000001",
    "SYNTHETIC",
    "ALPHA",
    "HOTEL",
    "DOCTOR",
    "LABTECH",
    "TESTMERGE",
    "TESTORDER",
    "TESTRESULT",
    "juliet@example.org",
];

/// Finds empty strings, arrays and objects (FHIR JSON has none), by path.
fn empties(v: &Value, path: &mut String, out: &mut Vec<String>) {
    let len = path.len();
    match v {
        Value::String(s) if s.is_empty() => out.push(path.clone()),
        Value::Array(a) if a.is_empty() => out.push(path.clone()),
        Value::Object(o) if o.is_empty() => out.push(path.clone()),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                empties(x, path, out);
                path.truncate(len);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                path.push('.');
                path.push_str(k);
                empties(x, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Calls `f` with every literal reference (`Reference.reference`) in `v`.
fn literal_references(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) => f(s),
                    _ => literal_references(x, f),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| literal_references(x, f)),
        _ => {}
    }
}

/// The property: no panic (proptest reports one as a failure), valid FHIR R4
/// and Avro for every resource, a content-free reason for every error.
fn check(raw: &[u8], injected: &[String]) -> Result<(), TestCaseError> {
    // A partial outcome: its resources must pass like any, its skipped
    // segments carry content-free reasons like any error.
    let mapped = match mapper().map(raw) {
        Ok(Mapped::Partial { resources, skipped }) => {
            prop_assert!(!skipped.is_empty() && !resources.is_empty());
            for s in &skipped {
                content_free(&s.reason, injected)?;
            }
            Ok(Mapped::Resources(resources))
        }
        other => other,
    };
    match mapped {
        Ok(Mapped::NoContent) => {}
        Ok(Mapped::Resources(rs)) => {
            prop_assert!(!rs.is_empty(), "Resources(vec![]) instead of NoContent");
            // `Type/id` of everything the message emitted: what a literal
            // reference may name.
            let emitted: std::collections::HashSet<String> = rs
                .iter()
                .map(|r| {
                    format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap_or(""),
                        r["id"].as_str().unwrap_or("")
                    )
                })
                .collect();
            prop_assert!(
                emitted.len() == rs.len(),
                "two resources share a type and id"
            );
            for r in &rs {
                let v = validators();
                let rt = r["resourceType"].as_str();
                let Some((_, specific)) = v.by_type.iter().find(|(t, _)| Some(*t) == rt) else {
                    return Err(TestCaseError::fail(format!("unexpected {rt:?}")));
                };
                let mut errors: Vec<String> = specific
                    .iter_errors(r)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .take(5)
                    .collect();
                if errors.is_empty() && !v.root.is_valid(r) {
                    errors.push("invalid against the whole schema".into());
                }
                prop_assert!(
                    errors.is_empty(),
                    "not valid FHIR R4: {errors:#?}\nresource: {r:#}\ninput: {:?}",
                    String::from_utf8_lossy(raw)
                );
                let mut found = Vec::new();
                empties(r, &mut String::new(), &mut found);
                prop_assert!(
                    found.is_empty(),
                    "empty elements at {found:?}\nresource: {r:#}"
                );
                let mut dangling = Vec::new();
                literal_references(r, &mut |target| {
                    if !emitted.contains(target) {
                        dangling.push(target.to_owned());
                    }
                });
                prop_assert!(
                    dangling.is_empty(),
                    "references to nothing this message emitted: {dangling:?}\nresource: {r:#}"
                );
                let rt = r["resourceType"].as_str().unwrap_or_default();
                let schema = avro().for_resource(rt);
                prop_assert!(schema.is_some(), "no Avro schema for {rt}");
                let encoded = encode(schema.unwrap(), r);
                prop_assert!(
                    encoded.is_ok(),
                    "Avro encode failed: {}\nresource: {r:#}",
                    encoded.unwrap_err()
                );
            }
        }
        Err(MapError { reason }) => content_free(&reason, injected)?,
        Ok(Mapped::Partial { .. }) => unreachable!("handled above"),
    }
    Ok(())
}

/// A reason names segments and fields, never what they hold.
fn content_free(reason: &str, injected: &[String]) -> Result<(), TestCaseError> {
    prop_assert!(!reason.is_empty());
    for phi in PHI {
        prop_assert!(!reason.contains(phi), "reason quotes {phi:?}: {reason}");
    }
    for s in injected {
        let s = s.trim();
        if s.chars().count() >= 5 {
            prop_assert!(!reason.contains(s), "reason quotes {s:?}: {reason}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- generators

/// Characters real-world breakage is made of: delimiters, segment breaks,
/// digits, signs and dots (timestamps and numbers), whitespace.
fn biased_char() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "|", "^", "~", "\\", "&", "\r", "\n", "\r\n", " ", "+", "-", ".", "0", "1", "2",
            "5", "9", "\t",
        ])
        .prop_map(str::to_owned),
        2 => any::<char>().prop_map(String::from),
        1 => any::<u8>().prop_map(|b| char::from(b).to_string()),
    ]
}

/// A text token: escapes (valid, formatting, malformed), awkward whitespace,
/// control characters, delimiters, and any Unicode.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "\\H\\", "\\N\\", "\\F\\", "\\S\\", "\\T\\", "\\R\\", "\\E\\", "\\.br\\", "\\.sp\\",
            "\\X00\\", "\\X0D\\", "\\X0A0D\\", "\\XC3A9\\", "\\XFF\\", "\\Xzz\\", "\\X\\",
            "\\Z1\\", "\\C2842\\", "\\M2442\\", "\\", "\\\\", " ", "  ", "\t", "\u{a0}",
            "\u{2028}", "\u{feff}", "\u{b}", "\u{c}", "\u{85}", "\u{1c}", "\u{0}", "\u{7f}",
            "\u{3000}", "^", "&", "~", "|", "://", "urn:", "ISO", "x y",
        ])
        .prop_map(str::to_owned),
        3 => "[A-Za-z0-9]{1,6}",
        1 => any::<char>().prop_map(String::from),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..8).prop_map(|t| t.concat())
}

/// A two-digit part: mostly in `ok`, sometimes just outside it or absurd.
fn two_digits(ok: std::ops::RangeInclusive<u32>, near: &'static [u32]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => ok.prop_map(|n| format!("{n:02}")),
        1 => prop::sample::select(near).prop_map(|n| format!("{n:02}")),
    ]
    .boxed()
}

/// An offset: mostly valid, sometimes out of range or the wrong length.
fn offset() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (
            prop::sample::select(vec!["+", "-"]),
            two_digits(0..=14, &[15, 23, 24, 99]),
            prop::sample::select(vec!["00", "30", "45", "59", "60", "99"]),
        )
            .prop_map(|(s, h, m)| format!("{s}{h}{m}")),
        1 => "[+-][0-9]{0,6}",
    ]
}

/// A TM: `HH[MM[SS[.S{1,4}]]][+/-ZZZZ]`, each part sometimes out of range,
/// a fraction sometimes where v2 does not allow one.
fn tm() -> impl Strategy<Value = String> {
    (
        two_digits(0..=23, &[24, 25, 99]),
        two_digits(0..=59, &[60, 61, 99]),
        two_digits(0..=59, &[60, 61, 99]),
        0..3usize,
        prop::option::of("\\.[0-9]{0,5}"),
        prop::option::of(offset()),
    )
        .prop_map(|(h, m, s, cut, f, z)| {
            let body = [h, m, s][..=cut].concat();
            format!("{body}{}{}", f.unwrap_or_default(), z.unwrap_or_default())
        })
}

/// Near-miss and garbage timestamps: `YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`
/// with any part just out of range (year 0000, month 13, 31 June, 29
/// February in a common year, hour 24, offset +99:99, …), wrong lengths,
/// fractions where they do not belong, a TS precision component.
fn timestamp() -> impl Strategy<Value = String> {
    let parts = (
        prop::sample::select(vec!["0000", "0001", "1999", "2000", "2024", "2026", "9999"]),
        two_digits(1..=12, &[0, 13, 99]),
        two_digits(1..=31, &[0, 32, 99]),
        two_digits(0..=23, &[24, 99]),
        two_digits(0..=59, &[60, 99]),
        two_digits(0..=59, &[60, 99]),
        0..6usize,
        prop::option::of("\\.[0-9]{0,5}"),
        prop::option::of(offset()),
        prop::option::of("\\^[A-Z]{0,2}"),
    )
        .prop_map(|(y, mo, d, h, mi, s, cut, f, z, p)| {
            let body = [y.to_owned(), mo, d, h, mi, s][..=cut].concat();
            format!(
                "{body}{}{}{}",
                f.unwrap_or_default(),
                z.unwrap_or_default(),
                p.unwrap_or_default()
            )
        });
    prop_oneof![
        6 => parts,
        1 => "[0-9]{0,16}",
        1 => "[0-9+\\-. ^:TZ]{0,20}",
        1 => text(),
    ]
}

const OBX2: &[&str] = &[
    "NM", "ST", "TX", "FT", "CE", "CWE", "CNE", "SN", "DT", "DTM", "TS", "TM", "NR", "ED", "RP",
    "XYZ", "", "nm", " NM ",
];

/// Fields worth aiming at: the ones the mapper reads.
const TARGETS: &[(&str, usize)] = &[
    ("MSH", 7),
    ("MSH", 10),
    ("PID", 3),
    ("PID", 5),
    ("PID", 7),
    ("PID", 8),
    ("PID", 11),
    ("PID", 12),
    ("PID", 13),
    ("PID", 16),
    ("PID", 24),
    ("PID", 25),
    ("PID", 29),
    ("PID", 30),
    ("PD1", 3),
    ("MRG", 1),
    ("ORC", 1),
    ("ORC", 2),
    ("ORC", 5),
    ("ORC", 9),
    ("TQ1", 7),
    ("TQ1", 9),
    ("OBR", 2),
    ("OBR", 4),
    ("OBR", 8),
    ("OBR", 22),
    ("OBR", 25),
    ("OBR", 34),
    ("SPM", 2),
    ("SPM", 4),
    ("SPM", 17),
    ("SPM", 20),
    ("PV1", 2),
    ("PV1", 3),
    ("PV1", 4),
    ("PV1", 5),
    ("PV1", 7),
    ("PV1", 8),
    ("PV1", 10),
    ("PV1", 14),
    ("PV1", 17),
    ("PV1", 19),
    ("PV1", 36),
    ("PV1", 44),
    ("PV1", 45),
    ("OBR", 3),
    ("OBR", 7),
    ("OBX", 2),
    ("OBX", 3),
    ("OBX", 5),
    ("OBX", 6),
    ("OBX", 7),
    ("OBX", 8),
    ("OBX", 11),
    ("OBX", 14),
    ("OBX", 16),
    ("NTE", 3),
];

const DATE_FIELDS: &[(&str, usize)] = &[
    ("MSH", 7),
    ("PID", 7),
    ("PID", 29),
    ("ORC", 9),
    ("OBR", 8),
    ("OBR", 22),
    ("SPM", 17),
    ("PV1", 44),
    ("PV1", 45),
    ("OBR", 7),
    ("OBX", 14),
    ("OBX", 5),
];

#[derive(Debug, Clone)]
enum Edit {
    /// Replace the character at a position.
    Replace(Index, String),
    Insert(Index, String),
    Delete(Index, usize),
    /// Cut a segment short.
    Truncate(Index, Index),
    Duplicate(Index),
    /// Set OBX-2 of one OBX to a type (value left as it is).
    ObxType(Index, &'static str),
    /// Put a timestamp-ish string in a date field (or one of its components).
    Date(Index, Index, Option<Index>, String),
    /// Put text in a mapped field, a component of it, or a repetition.
    Text(Index, Index, Option<Index>, String),
    /// Give one OBX a type and a value of (nearly) that type.
    Value(Index, &'static str, String),
}

/// A typed OBX value: a timestamp for DT/DTM/TS, a time for TM, anything for the rest.
fn typed_value() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        2 => (prop::sample::select(vec!["DT", "DTM", "TS"]), timestamp()),
        1 => (Just("TM"), tm()),
        2 => (
            prop::sample::select(OBX2),
            prop_oneof![
                text(),
                "[<>=]{0,2}\\^?-?[0-9]{0,3}\\.?[0-9]{0,3}(\\^[-:/+]\\^-?[0-9.]{0,4})?",
                "-?[0-9]{0,3}\\.?[0-9]{0,3}\\^-?[0-9]{0,3}",
                "[+-]?0{0,3}[0-9]{0,40}\\.?[0-9]{0,40}0{0,3}",
            ],
        ),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let idx = any::<Index>;
    prop_oneof![
        3 => (idx(), biased_char()).prop_map(|(i, c)| Edit::Replace(i, c)),
        3 => (idx(), biased_char()).prop_map(|(i, c)| Edit::Insert(i, c)),
        1 => (idx(), 1..12usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => (idx(), idx()).prop_map(|(s, at)| Edit::Truncate(s, at)),
        1 => idx().prop_map(Edit::Duplicate),
        3 => (idx(), prop::sample::select(OBX2)).prop_map(|(i, t)| Edit::ObxType(i, t)),
        4 => (idx(), idx(), prop::option::of(idx()), timestamp())
            .prop_map(|(s, f, c, v)| Edit::Date(s, f, c, v)),
        4 => (idx(), idx(), prop::option::of(idx()), text())
            .prop_map(|(s, f, c, v)| Edit::Text(s, f, c, v)),
        4 => (idx(), typed_value()).prop_map(|(i, (t, v))| Edit::Value(i, t, v)),
    ]
}

/// A message as segments of fields (split on CR/LF and `|`; every fixture
/// that maps uses `|`).
struct Msg(Vec<Vec<String>>);

impl Msg {
    fn parse(raw: &[u8]) -> Msg {
        let text = String::from_utf8_lossy(raw);
        Msg(text
            .split(['\r', '\n'])
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect())
    }

    fn text(&self) -> String {
        let mut s: Vec<String> = self.0.iter().map(|f| f.join("|")).collect();
        s.push(String::new());
        s.join("\r")
    }

    /// Indexes of the segments with this name.
    fn named(&self, name: &str) -> Vec<usize> {
        (0..self.0.len())
            .filter(|&i| self.0[i][0] == name)
            .collect()
    }

    /// Sets field `n` (HL7 numbering; MSH counts MSH-1 as the separator) of
    /// segment `s`, or one component of it, extending the segment as needed.
    fn set(&mut self, s: usize, n: usize, component: Option<Index>, value: &str) {
        let seg = &mut self.0[s];
        let i = if seg[0] == "MSH" { n - 1 } else { n };
        if i == 0 {
            return;
        }
        while seg.len() <= i {
            seg.push(String::new());
        }
        match component {
            None => seg[i] = value.to_owned(),
            Some(c) => {
                let mut parts: Vec<String> = seg[i].split('^').map(str::to_owned).collect();
                let c = c.index(parts.len() + 2);
                while parts.len() <= c {
                    parts.push(String::new());
                }
                parts[c] = value.to_owned();
                seg[i] = parts.join("^");
            }
        }
    }

    /// Applies a field-level edit aimed at one of `targets`.
    fn aim(
        &mut self,
        targets: &[(&str, usize)],
        t: Index,
        which: Index,
        c: Option<Index>,
        v: &str,
    ) {
        let (name, n) = targets[t.index(targets.len())];
        let segs = self.named(name);
        if !segs.is_empty() {
            self.set(segs[which.index(segs.len())], n, c, v);
        }
    }
}

/// Applies edits to a fixture; returns the bytes and the strings injected
/// into fields (which no error reason may quote).
fn mutate(raw: &[u8], edits: &[Edit]) -> (Vec<u8>, Vec<String>) {
    let mut injected = Vec::new();
    // Field-level edits first, on the parsed form; then byte-level ones.
    let mut m = Msg::parse(raw);
    for e in edits {
        match e {
            Edit::ObxType(i, ty) => {
                let obx = m.named("OBX");
                if !obx.is_empty() {
                    m.set(obx[i.index(obx.len())], 2, None, ty);
                }
            }
            Edit::Value(i, ty, v) => {
                let obx = m.named("OBX");
                if !obx.is_empty() {
                    let o = obx[i.index(obx.len())];
                    m.set(o, 2, None, ty);
                    m.set(o, 5, None, v);
                    injected.push(v.clone());
                }
            }
            Edit::Date(t, which, c, v) => {
                m.aim(DATE_FIELDS, *t, *which, *c, v);
                injected.push(v.clone());
            }
            Edit::Text(t, which, c, v) => {
                m.aim(TARGETS, *t, *which, *c, v);
                injected.push(v.clone());
            }
            Edit::Truncate(s, at) if !m.0.is_empty() => {
                let s = s.index(m.0.len());
                let line = m.0[s].join("|");
                let cut: String = line
                    .chars()
                    .take(at.index(line.chars().count() + 1))
                    .collect();
                m.0[s] = cut.split('|').map(str::to_owned).collect();
            }
            Edit::Duplicate(s) if !m.0.is_empty() => {
                let s = s.index(m.0.len());
                let copy = m.0[s].clone();
                m.0.insert(s + 1, copy);
            }
            _ => {}
        }
    }
    let mut chars: Vec<char> = m.text().chars().collect();
    for e in edits {
        match e {
            Edit::Replace(i, c) if !chars.is_empty() => {
                let i = i.index(chars.len());
                chars.splice(i..=i, c.chars());
            }
            Edit::Insert(i, c) => {
                let i = i.index(chars.len() + 1);
                chars.splice(i..i, c.chars());
            }
            Edit::Delete(i, n) if !chars.is_empty() => {
                let i = i.index(chars.len());
                let end = (i + n).min(chars.len());
                chars.drain(i..end);
            }
            _ => {}
        }
    }
    (chars.into_iter().collect::<String>().into_bytes(), injected)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Failures are reported with their minimal input; keep them as unit tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_and_never_give_invalid_fhir(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        check(&bytes, &[])?;
    }

    #[test]
    fn arbitrary_segments_after_a_valid_msh_never_give_invalid_fhir(
        segs in prop::collection::vec(
            (
                prop::sample::select(vec!["PID", "PV1", "OBR", "OBX", "NTE", "ORC", "ZZZ"]),
                prop::collection::vec(
                    prop_oneof![text(), timestamp(), prop::sample::select(OBX2).prop_map(str::to_owned)],
                    0..20,
                ),
            ),
            0..8,
        ),
        trigger in prop::sample::select(vec!["ADT^A01", "ADT^A03", "ADT^A13", "ORU^R01", "ORM^O01"]),
    ) {
        let mut msg = format!("MSH|^~\\&|APP|FAC|RCV|RFAC|20260101||{trigger}|C1|P|2.5.1\r");
        let mut injected = Vec::new();
        for (name, fields) in &segs {
            msg.push_str(name);
            for f in fields {
                // A field may not carry a segment break: that would be another segment.
                let f = f.replace(['\r', '\n'], " ");
                msg.push('|');
                msg.push_str(&f);
                injected.push(f);
            }
            msg.push('\r');
        }
        check(msg.as_bytes(), &injected)?;
    }

    #[test]
    fn mutated_fixtures_never_panic_and_never_give_invalid_fhir(
        which in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let all = fixtures();
        let raw = &all[which.index(all.len())];
        let (mutated, injected) = mutate(raw, &edits);
        check(&mutated, &injected)?;
    }

    /// Only the field-level edits, so the message stays readable and the
    /// mapper's own paths (rather than the reader's rejections) are exercised.
    #[test]
    fn fixtures_with_mutated_fields_never_give_invalid_fhir(
        which in any::<Index>(),
        edits in prop::collection::vec(
            prop_oneof![
                (any::<Index>(), prop::sample::select(OBX2)).prop_map(|(i, t)| Edit::ObxType(i, t)),
                (any::<Index>(), any::<Index>(), prop::option::of(any::<Index>()), timestamp())
                    .prop_map(|(s, f, c, v)| Edit::Date(s, f, c, v)),
                (any::<Index>(), any::<Index>(), prop::option::of(any::<Index>()), text())
                    .prop_map(|(s, f, c, v)| Edit::Text(s, f, c, v)),
                (any::<Index>(), typed_value()).prop_map(|(i, (t, v))| Edit::Value(i, t, v)),
            ],
            1..8,
        ),
    ) {
        let all = fixtures();
        let raw = &all[which.index(all.len())];
        let (mutated, injected) = mutate(raw, &edits);
        check(&mutated, &injected)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every date field the mapper reads (PV1-44, PV1-45, OBR-7, OBX-14, and
    /// OBX-5 as DT/DTM/TS/TM) at once, in a message that maps: a timestamp
    /// becomes a valid FHIR dateTime/time, or is left out (kept as text for
    /// OBX-5), never an invalid one.
    #[test]
    fn timestamps_in_every_date_field_give_valid_fhir_or_are_left_out(
        stamps in prop::collection::vec(timestamp(), 4),
        obx5 in typed_value(),
        time in tm(),
    ) {
        let raw = fixtures()
            .iter()
            .find(|m| String::from_utf8_lossy(m).contains("FX-ORU-R01-251"))
            .expect("oru_r01_v251.hl7");
        let mut m = Msg::parse(raw);
        let (pv1, obr) = (m.named("PV1")[0], m.named("OBR")[0]);
        let obx = m.named("OBX");
        m.set(pv1, 44, None, &stamps[0]);
        m.set(pv1, 45, None, &stamps[1]);
        m.set(obr, 7, None, &stamps[2]);
        m.set(obx[0], 14, None, &stamps[3]);
        m.set(obx[1], 14, None, "");
        m.set(obx[2], 2, None, obx5.0);
        m.set(obx[2], 5, None, &obx5.1);
        m.set(obx[3], 2, None, "TM");
        m.set(obx[3], 5, None, &time);
        let mut injected = stamps.clone();
        injected.extend([obx5.1.clone(), time.clone()]);
        check(m.text().as_bytes(), &injected)?;
    }
}

/// The fixtures themselves pass the same property (and the mapper maps enough
/// of them that the mutations above start from real content).
#[test]
fn unmutated_fixtures_pass_the_property() {
    let (mut resources, mut references) = (0, 0);
    for raw in fixtures() {
        if let Ok(Mapped::Resources(rs)) = mapper().map(raw) {
            resources += rs.len();
            rs.iter()
                .for_each(|r| literal_references(r, &mut |_| references += 1));
        }
        check(raw, &[]).unwrap();
    }
    assert!(resources >= 60, "{resources}");
    // Every type links to another: the resolution check has work to do.
    assert!(references >= 150, "{references} literal references");
}

/// Removes what legitimately depends on the raw bytes: resource ids (hashes
/// of raw fields) and the literal references made of them.
fn without_ids(mut r: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.remove("reference");
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    if let Some(o) = r.as_object_mut() {
        o.remove("id");
    }
    strip(&mut r);
    r
}

/// The same message written with other delimiters (MSH-1 and MSH-2) maps to
/// the same FHIR: nothing assumes `|^~\&`.
#[test]
fn other_delimiters_give_the_same_fhir() {
    const SETS: &[[char; 5]] = &[
        ['#', '!', '*', '$', '%'],
        ['|', '&', '~', '\\', '^'], // component and subcomponent swapped
        ['!', '@', '#', '/', '*'],
    ];
    let mut compared = 0;
    for raw in fixtures() {
        let Ok(Mapped::Resources(want)) = mapper().map(raw) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            continue; // the Latin-1 fixture: its bytes are not UTF-8 text to rewrite
        };
        // `\T\` and the like name a delimiter by role: they rightly decode to
        // the message's own delimiter, which is what changes here.
        if ["F", "S", "T", "R", "E"]
            .iter()
            .any(|e| text.contains(&format!("\\{e}\\")))
        {
            continue;
        }
        for set in SETS {
            let from = ['|', '^', '~', '\\', '&'];
            let clash = set.iter().any(|c| !from.contains(c) && text.contains(*c));
            if clash {
                continue;
            }
            let rewritten: String = text
                .chars()
                .map(|c| from.iter().position(|&f| f == c).map_or(c, |i| set[i]))
                .collect();
            let Ok(Mapped::Resources(got)) = mapper().map(rewritten.as_bytes()) else {
                panic!("{set:?}: {:?}", mapper().map(rewritten.as_bytes()));
            };
            let got: Vec<Value> = got.into_iter().map(without_ids).collect();
            let want: Vec<Value> = want.iter().cloned().map(without_ids).collect();
            assert_eq!(got, want, "{set:?}\n{rewritten}");
            compared += 1;
        }
    }
    assert!(compared >= 30, "{compared}");
}
