//! v2 datatypes against the IG's datatype maps.

#[test]
fn parts_split_as_str_split_does() {
    let long = "a^".repeat(20);
    for v in [
        "",
        "^",
        "a",
        "a^b",
        "^^x^",
        "é^ü^",
        &long,
        &long[..31],
        &long[..32],
        &long[..33],
    ] {
        for sep in ['^', 'é'] {
            let std: Vec<&str> = v.split(sep).collect();
            let p = super::parts(v, sep);
            for (i, want) in std.iter().enumerate() {
                assert_eq!(p.get(i), *want, "{v:?} {i}");
            }
            assert_eq!(p.get(std.len()), "", "{v:?}");
            assert_eq!(p.get(std.len() + 20), "", "{v:?}");
            assert_eq!(super::first_part(v, sep), std[0], "{v:?}");
        }
    }
}

use super::*;
use serde_json::{json, Value};

fn js<T: serde::Serialize>(v: Option<T>) -> Option<Value> {
    v.map(|v| serde_json::to_value(v).unwrap())
}

#[test]
fn timestamps_keep_precision_and_offset() {
    let tz = "+00:00";
    assert_eq!(datetime("2026", tz).as_deref(), Some("2026"));
    assert_eq!(datetime("202611", tz).as_deref(), Some("2026-11"));
    assert_eq!(datetime("20261101", tz).as_deref(), Some("2026-11-01"));
    assert_eq!(
        datetime("202611011230", tz).as_deref(),
        Some("2026-11-01T12:30:00+00:00")
    );
    assert_eq!(
        datetime("20261101123015.25-0500", tz).as_deref(),
        Some("2026-11-01T12:30:15.25-05:00")
    );
    assert_eq!(
        datetime("20261101123015+0100", "-05:00").as_deref(),
        Some("2026-11-01T12:30:15+01:00"),
        "a sent offset wins"
    );
    assert_eq!(
        datetime("20261101123015", "-05:00").as_deref(),
        Some("2026-11-01T12:30:15-05:00")
    );
    for bad in [
        "",
        "2026-11-01",
        "20261301",
        "2026110112301",
        "abc",
        "20261101250000",
    ] {
        assert_eq!(datetime(bad, tz), None, "{bad}");
    }
}

#[test]
fn decimals_are_json_numbers() {
    assert_eq!(decimal("182").map(Value::Number), Some(json!(182)));
    assert_eq!(decimal("0.50"), Some(serde_json::from_str("0.50").unwrap()));
    assert_eq!(decimal(".5"), Some(serde_json::from_str("0.5").unwrap()));
    assert_eq!(decimal("-3").map(Value::Number), Some(json!(-3)));
    assert_eq!(decimal("POS"), None);
    assert_eq!(decimal("1-2"), None);
    // Beyond a double's range: not a number the Avro topics can carry.
    assert_eq!(decimal(&format!("1{}", "0".repeat(400))), None);
    assert!(decimal(&format!("1{}", "0".repeat(300))).is_some());
}

#[test]
fn a_utc_offset_is_range_checked() {
    let tz = "+00:00";
    assert_eq!(datetime("20261101123015+9999", tz), None, "+99:99");
    assert_eq!(datetime("20261101123015+1500", tz), None, "hours > 14");
    assert_eq!(datetime("20261101123015+1430", tz), None, "past +14:00");
    assert_eq!(datetime("20261101123015-0560", tz), None, "minutes >= 60");
    assert_eq!(datetime("20261101123015+05", tz), None, "not HHMM");
    assert_eq!(datetime("20261101+9999", tz), None, "on a date too");
    assert_eq!(
        datetime("20261101123015+1400", tz).as_deref(),
        Some("2026-11-01T12:30:15+14:00")
    );
    assert_eq!(
        datetime("20261101123015-0930", tz).as_deref(),
        Some("2026-11-01T12:30:15-09:30")
    );
}

#[test]
fn date_and_time_components_are_range_checked() {
    let tz = "+00:00";
    for bad in [
        "0000",           // FHIR years start at 0001
        "202600",         // month 0
        "202613",         // month 13
        "20261100",       // day 0
        "20261132",       // day 32
        "20260431",       // 31 April
        "20250229",       // 29 February in a common year
        "19000229",       // 1900 is not a leap year
        "2026110124",     // hour 24
        "202611011260",   // minute 60
        "20261101123060", // second 60
        "202611011230.5", // a fraction without seconds
        "20261101123015.12345",
    ] {
        assert_eq!(datetime(bad, tz), None, "{bad}");
    }
    assert_eq!(datetime("20240229", tz).as_deref(), Some("2024-02-29"));
    assert_eq!(datetime("20000229", tz).as_deref(), Some("2000-02-29"));
    assert_eq!(
        datetime("20261231235959.9999", tz).as_deref(),
        Some("2026-12-31T23:59:59.9999+00:00")
    );
}

#[test]
fn a_tm_fraction_belongs_to_seconds_only() {
    assert_eq!(time("12.5"), None, "HH.S would invent minutes and seconds");
    assert_eq!(time("1230.5"), None, "HHMM.S would invent seconds");
    assert_eq!(time("123045.5").as_deref(), Some("12:30:45.5"));
    assert_eq!(time("123045.1234").as_deref(), Some("12:30:45.1234"));
    assert_eq!(time("123045.12345"), None, "v2 allows four digits");
    assert_eq!(time("123045."), None);
    assert_eq!(time("12").as_deref(), Some("12:00:00"));
    assert_eq!(time("1230").as_deref(), Some("12:30:00"));
    assert_eq!(
        time("1230+0100").as_deref(),
        Some("12:30:00"),
        "FHIR time has no offset"
    );
    assert_eq!(time("1230+9999"), None, "a malformed offset is not a TM");
    for bad in ["24", "1260", "123060", "1", "123", "ab", ""] {
        assert_eq!(time(bad), None, "{bad}");
    }
}

#[test]
fn text_with_nothing_left_after_unescaping_and_trimming_is_no_string() {
    let d = Delimiters::default();
    assert_eq!(string(r"\H\\N\", &d), None, "only formatting escapes");
    assert_eq!(string("   ", &d), None);
    assert_eq!(string(r"\.br\ \.br\", &d), None, "only line breaks");
    assert_eq!(string(r#""""#, &d), None, "the v2 null");
    assert_eq!(string(r" a\.br\b ", &d).as_deref(), Some("a\nb"));
    assert_eq!(
        string("a\u{a0}b\u{2028}c\u{0}d\u{feff}e\\X07\\", &d).as_deref(),
        Some("a b cde"),
        "other whitespace is a space, control characters go"
    );
}

#[test]
fn a_code_has_no_leading_trailing_or_repeated_whitespace() {
    let d = Delimiters::default();
    assert_eq!(code(" ", &d), None, "a single space is no code");
    assert_eq!(code(r"\H\", &d), None);
    assert_eq!(code("  A \t  B ", &d).as_deref(), Some("A B"));
}

#[test]
fn a_coding_with_nothing_left_is_dropped_and_an_empty_concept_is_none() {
    let (d, t) = (Delimiters::default(), Tables::builtin());
    assert!(codeable_concept(" ", &d, &t, None).is_none());
    assert!(codeable_concept(r"\H\^\N\^LN", &d, &t, None).is_none());
    assert_eq!(
        js(codeable_concept(" ^Detected^SCT", &d, &t, None)),
        Some(json!({"coding": [{"system": "http://snomed.info/sct", "display": "Detected"}]})),
        "the code is omitted, the display kept"
    );
    assert_eq!(
        js(codeable_concept(r"A^ ^^ ^\H\^L^^^ ", &d, &t, None)),
        Some(json!({"coding": [{"code": "A"}]})),
        "an empty second coding and blank text are dropped"
    );
    let mut q = Quantity {
        value: Number::from(1),
        unit: None,
        system: None,
        code: None,
        comparator: None,
    };
    quantity_units(" ^ ^UCUM", &d, &t, &mut q);
    assert!(
        q.unit.is_none() && q.system.is_none() && q.code.is_none(),
        "{q:?}"
    );
}

#[test]
fn identifiers_need_a_value_and_systems_are_uris() {
    let (d, t) = (Delimiters::default(), Tables::builtin());
    assert!(identifier(r"\H\^^^GENHOSP^MR", &d, &t).is_none());
    assert!(identifier(" ^^^GENHOSP^MR", &d, &t).is_none());
    assert_eq!(
        js(identifier("1^^^ ^ ", &d, &t)),
        Some(json!({"value": "1"})),
        "blank authority and type are omitted"
    );
    assert_eq!(
        identifier("1^^^&1.2.840.1&ISO", &d, &t)
            .unwrap()
            .system
            .unwrap(),
        "urn:oid:1.2.840.1"
    );
    assert_eq!(
        identifier("1^^^&not an oid&ISO", &d, &t)
            .unwrap()
            .system
            .unwrap(),
        "urn:hl7v2:authority:not%20an%20oid",
        "ISO that is not an OID is a name"
    );
    assert_eq!(
        identifier("1^^^&http://x.org/a b", &d, &t)
            .unwrap()
            .system
            .unwrap(),
        "urn:hl7v2:authority:http%3A%2F%2Fx.org%2Fa%20b",
        "a URI with whitespace is a name"
    );
    assert!(practitioner_ref(r"\H\^ ^\N\", &d, &t).is_none());
    assert_eq!(
        js(practitioner_ref("^DOE&VAN^JO", &d, &t)),
        Some(json!({"type": "Practitioner", "display": "JO DOE"})),
        "FN-1 is the surname"
    );
    assert!(location_ref(r"\N\^ ^&", &d).is_none());
}

#[test]
fn escapes_are_decoded() {
    let d = Delimiters::default();
    assert_eq!(unescape("a\\F\\b\\S\\c\\.br\\d\\E\\", &d), "a|b^c\nd\\");
    assert_eq!(unescape("\\H\\bold\\N\\", &d), "bold");
    assert_eq!(unescape("\\X41\\", &d), "A");
}

/// The one-pass path for plain values (`plain_text`) gives what the general
/// path (null check, unescape, clean, trim; for a code, whitespace runs made
/// one space) gives, for every value made of up to three of these pieces.
#[test]
fn plain_values_come_out_as_the_general_path_makes_them() {
    let d = Delimiters::default();
    let general = |raw: &str| -> Option<String> {
        if is_null(raw) {
            return None;
        }
        cleaned(&unescape(raw, &d)).map(Cow::into_owned)
    };
    const PIECES: &[&str] = &[
        "", " ", "  ", "\t", "\r\n", "a", "Zz9", "\"\"", "\\H\\", "\\T\\", "é", "\u{a0}", "\u{1}",
        "~", "\u{7f}",
    ];
    for a in PIECES {
        for b in PIECES {
            for c in PIECES {
                let raw = format!("{a}{b}{c}");
                let want = general(&raw);
                assert_eq!(string(&raw, &d).map(Cow::into_owned), want, "{raw:?}");
                let want_code = want
                    .as_deref()
                    .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "));
                assert_eq!(code(&raw, &d).map(Cow::into_owned), want_code, "{raw:?}");
                let mut joined = "x".to_owned();
                let pushed = push_string(&raw, &d, "|", &mut joined);
                let want_joined = match &want {
                    Some(s) => format!("x|{s}"),
                    None => "x".to_owned(),
                };
                assert_eq!((pushed, joined), (want.is_some(), want_joined), "{raw:?}");
            }
        }
    }
}
