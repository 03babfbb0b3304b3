//! A FHIR decimal as an Avro `double` plus, where needed, its FHIR
//! primitive-extension companion (`_value`).
//!
//! Generic Avro consumers (Confluent's `AvroDeserializer`, Spark, ksqlDB)
//! should get a JSON number, so the decimal is a double. FHIR decimals carry
//! their precision in their text (`0.50` is not `0.5`), and some texts have no
//! double at all (`12345678901234567890`, `1.0e+3`). So the text is rebuilt
//! from the double and a companion that FHIR R4 JSON itself allows:
//!
//! - none, when the double's shortest text (Rust's `{}`: shortest round trip,
//!   never an exponent) *is* the text: `4.41`, `182`, `-3`;
//! - R4's `quantity-precision` extension (`valueInteger` = digits after the
//!   point) when printing the double with that many digits gives the text
//!   back: `0.50`, `1.0`, `7.000`;
//! - otherwise [`TEXT_URL`] with the exact text as `valueString`.
//!
//! Every split is checked by joining it back, so [`join`] of [`split`] is
//! the text, byte for byte.

use serde_json::Number;

/// R4's precision extension: "the number of significant decimal places
/// after the decimal point".
pub const PRECISION_URL: &str = "http://hl7.org/fhir/StructureDefinition/quantity-precision";
/// This project's extension for a decimal text the double and a precision
/// cannot rebuild (more digits than a double holds, or an exponent).
pub const TEXT_URL: &str = "urn:hl7bridge:decimal-text";

/// The longest precision [`join`] prints: a double's exact expansion has at
/// most 1074 digits after the point. A larger one comes from another writer
/// and is refused rather than allocated.
const MAX_PRECISION: usize = 1100;

/// How to get the decimal's text back from its double.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Companion {
    /// Print the double with this many digits after the point.
    Precision(u32),
    /// The exact text.
    Text(String),
}

impl Companion {
    /// The companion as FHIR JSON (`_value`): one extension.
    pub fn to_json(&self) -> serde_json::Value {
        let ext = match self {
            Self::Precision(p) => serde_json::json!({"url": PRECISION_URL, "valueInteger": p}),
            Self::Text(t) => serde_json::json!({"url": TEXT_URL, "valueString": t}),
        };
        serde_json::json!({ "extension": [ext] })
    }

    /// The companion from its FHIR JSON (`_value`): exactly one extension,
    /// one of the two this module writes.
    pub fn from_json(element: &serde_json::Value) -> Result<Self, NotADouble> {
        let ext = match element.get("extension").and_then(|e| e.as_array()) {
            Some(exts) if exts.len() == 1 && element.as_object().is_some_and(|o| o.len() == 1) => {
                &exts[0]
            }
            _ => return Err(NotADouble),
        };
        let url = ext.get("url").and_then(|u| u.as_str());
        match (url, ext.get("valueInteger"), ext.get("valueString")) {
            (Some(PRECISION_URL), Some(p), None) => p
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .map(Self::Precision)
                .ok_or(NotADouble),
            (Some(TEXT_URL), None, Some(serde_json::Value::String(t))) => Ok(Self::Text(t.clone())),
            _ => Err(NotADouble),
        }
    }
}

/// A decimal that has no finite double (`1e400`), or whose companion does
/// not rebuild valid JSON number text. Content-free: callers add the path.
#[derive(Debug)]
pub struct NotADouble;

/// The double of a decimal's exact text, and the companion if the double's
/// shortest text is not that text.
pub fn split(text: &str) -> Result<(f64, Option<Companion>), NotADouble> {
    let d: f64 = text.parse().map_err(|_| NotADouble)?;
    if !d.is_finite() {
        return Err(NotADouble);
    }
    // Compared as they are printed: no string per decimal.
    if prints_as(format_args!("{d}"), text) {
        return Ok((d, None));
    }
    if let Some(p) = fixed_digits_after_point(text) {
        if p <= MAX_PRECISION && prints_as(format_args!("{d:.p$}"), text) {
            let p = u32::try_from(p).map_err(|_| NotADouble)?;
            return Ok((d, Some(Companion::Precision(p))));
        }
    }
    Ok((d, Some(Companion::Text(text.to_owned()))))
}

/// The decimal's exact text from its double and companion, as a JSON number.
pub fn join(d: f64, companion: Option<&Companion>) -> Result<Number, NotADouble> {
    if !d.is_finite() {
        return Err(NotADouble);
    }
    let text = match companion {
        None => shortest(d),
        Some(Companion::Precision(p)) => {
            let p = usize::try_from(*p).map_err(|_| NotADouble)?;
            if p > MAX_PRECISION {
                return Err(NotADouble);
            }
            format!("{d:.p$}")
        }
        // Another writer's text must still be this double's.
        Some(Companion::Text(t)) if t.parse::<f64>().ok() == Some(d) => t.clone(),
        Some(Companion::Text(_)) => return Err(NotADouble),
    };
    // arbitrary_precision: the Number keeps this text. Only exact JSON number
    // text is accepted (` 1.5`, `+1`, `.5` are not).
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Number(n)) if n.as_str() == text => Ok(n),
        _ => Err(NotADouble),
    }
}

/// The shortest text that reads back as `d`, without an exponent.
fn shortest(d: f64) -> String {
    format!("{d}")
}

/// Whether `args` prints exactly `text`, compared piece by piece as it is
/// written rather than after collecting it into a string.
fn prints_as(args: std::fmt::Arguments<'_>, text: &str) -> bool {
    /// The part of the text not matched yet; an error at the first difference.
    struct Rest<'t>(&'t str);
    impl std::fmt::Write for Rest<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 = self.0.strip_prefix(s).ok_or(std::fmt::Error)?;
            Ok(())
        }
    }
    let mut rest = Rest(text);
    std::fmt::write(&mut rest, args).is_ok() && rest.0.is_empty()
}

/// `-?digits(.digits)?` → the count of digits after the point.
fn fixed_digits_after_point(text: &str) -> Option<usize> {
    let t = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() && digits(int) && digits(frac) && (!frac.is_empty() || !t.contains('.')))
        .then_some(frac.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Option<Companion> {
        let (d, c) = split(text).unwrap();
        assert_eq!(join(d, c.as_ref()).unwrap().as_str(), text, "{text}");
        if let Some(c) = &c {
            assert_eq!(&Companion::from_json(&c.to_json()).unwrap(), c);
        }
        c
    }

    #[test]
    fn a_decimal_whose_double_prints_as_sent_needs_no_companion() {
        for t in ["4.41", "182", "-3", "0", "-0", "0.001", "123456.789"] {
            assert_eq!(round_trip(t), None, "{t}");
        }
    }

    #[test]
    fn trailing_zeros_are_kept_as_the_r4_precision() {
        assert_eq!(round_trip("0.50"), Some(Companion::Precision(2)));
        assert_eq!(round_trip("1.0"), Some(Companion::Precision(1)));
        assert_eq!(round_trip("-7.000"), Some(Companion::Precision(3)));
    }

    #[test]
    fn text_a_double_cannot_rebuild_is_kept_whole() {
        for t in [
            "12345678901234567890",
            "0.1000000000000000000001",
            "1.0e+3",
            "1e-7",
        ] {
            assert_eq!(round_trip(t), Some(Companion::Text(t.to_owned())), "{t}");
        }
    }

    #[test]
    fn printed_text_is_compared_whole() {
        assert!(prints_as(format_args!("{}", 1.5), "1.5"));
        assert!(prints_as(format_args!("{:.2}", 0.5), "0.50"));
        assert!(!prints_as(format_args!("{}", 1.5), "1.50"), "longer text");
        assert!(
            !prints_as(format_args!("{:.2}", 0.5), "0.5"),
            "shorter text"
        );
        assert!(!prints_as(format_args!("{}", 1.5), "1.4"));
        assert!(prints_as(format_args!("{}{}", "a", "b"), "ab"), "in pieces");
    }

    #[test]
    fn a_decimal_beyond_a_double_is_refused() {
        assert!(split(&format!("1{}", "0".repeat(400))).is_err());
        assert!(split("1e400").is_err());
    }

    #[test]
    fn a_companion_from_another_writer_is_checked() {
        assert!(join(f64::NAN, None).is_err());
        assert!(join(1.0, Some(&Companion::Precision(u32::MAX))).is_err());
        assert!(join(1.0, Some(&Companion::Text("+1".to_owned()))).is_err());
        assert!(join(1.0, Some(&Companion::Text("1.0 ".to_owned()))).is_err());
        assert!(join(1.0, Some(&Companion::Text("2.0".to_owned()))).is_err());
    }
}
