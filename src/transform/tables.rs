//! The declarative code tables (`mappings/tables.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The tables shipped with the bridge, used when no `--mappings` file is given.
pub const DEFAULT: &str = include_str!("../../mappings/tables.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    pub default_timezone: String,
    pub event_encounter_status: BTreeMap<String, String>,
    pub patient_class_status: BTreeMap<String, String>,
    pub patient_class: BTreeMap<String, (String, String)>,
    pub observation_status: BTreeMap<String, String>,
    pub coding_systems: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid mapping file {0}: {1}")]
    Parse(String, toml::de::Error),
    #[error("invalid mapping file {0}: {1}")]
    Invalid(String, String),
}

const ENCOUNTER_STATUS: &[&str] = &[
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const OBSERVATION_STATUS: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];

impl Tables {
    pub fn builtin() -> Self {
        // The shipped file is checked by `builtin_tables_are_valid`; failing here is a build defect.
        Self::parse(DEFAULT, "mappings/tables.toml").expect("shipped mappings/tables.toml is valid")
    }

    pub fn load(path: &Path) -> Result<Self, TablesError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TablesError::Read(name.clone(), e))?;
        Self::parse(&text, &name)
    }

    pub fn parse(text: &str, name: &str) -> Result<Self, TablesError> {
        let t: Tables = toml::from_str(text).map_err(|e| TablesError::Parse(name.into(), e))?;
        t.check()
            .map_err(|e| TablesError::Invalid(name.into(), e))?;
        Ok(t)
    }

    /// Values must be codes FHIR R4 allows; the timezone must be an offset.
    fn check(&self) -> Result<(), String> {
        // "+hh:mm" exactly as FHIR writes it, in FHIR's range (see `datatypes::offset`).
        let tz = &self.default_timezone;
        let tz_ok = tz.len() == 6
            && tz.get(3..4) == Some(":")
            && super::datatypes::offset(&tz.replacen(':', "", 1)).as_ref() == Some(tz);
        if !tz_ok && self.default_timezone != "Z" {
            return Err(format!(
                "default_timezone {:?} is not an offset like +01:00 or Z",
                self.default_timezone
            ));
        }
        for (table, map) in [
            ("event_encounter_status", &self.event_encounter_status),
            ("patient_class_status", &self.patient_class_status),
        ] {
            if let Some((k, v)) = map
                .iter()
                .find(|(_, v)| !ENCOUNTER_STATUS.contains(&v.as_str()))
            {
                return Err(format!(
                    "{table}.{k} = {v:?} is not an Encounter.status code"
                ));
            }
        }
        if let Some((k, v)) = self
            .observation_status
            .iter()
            .find(|(_, v)| !OBSERVATION_STATUS.contains(&v.as_str()))
        {
            return Err(format!(
                "observation_status.{k} = {v:?} is not an Observation.status code"
            ));
        }
        if let Some((k, _)) = self
            .coding_systems
            .iter()
            .find(|(_, v)| v.chars().any(char::is_whitespace) || v.is_empty())
        {
            return Err(format!("coding_systems.{k} is not a URI"));
        }
        Ok(())
    }

    /// A v2 coding-system name (CWE-3) as a FHIR system URI.
    pub fn system_uri(&self, name: &str) -> Option<String> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        if let Some(u) = self.coding_systems.get(&name.to_ascii_uppercase()) {
            return Some(u.clone());
        }
        let upper = name.to_ascii_uppercase();
        if let Some(num) = upper
            .strip_prefix("HL7")
            .filter(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Some(format!("http://terminology.hl7.org/CodeSystem/v2-{num}"));
        }
        if is_uri(name) {
            return Some(name.to_owned());
        }
        Some(format!("urn:hl7v2:codesystem:{}", uri_safe(name)))
    }

    /// An assigning authority namespace as an identifier system URI.
    pub fn authority_uri(&self, ns: &str) -> String {
        let ns = ns.trim();
        if is_uri(ns) {
            return ns.to_owned();
        }
        format!("urn:hl7v2:authority:{}", uri_safe(ns))
    }
}

/// A name that is already a URI and can be used as one: it looks like one,
/// and has no whitespace (a FHIR `uri` has none). Anything else is a name,
/// made into a `urn:hl7v2:` URI by the caller.
fn is_uri(name: &str) -> bool {
    (name.contains("://") || name.starts_with("urn:"))
        && super::datatypes::uri_as_sent(name).is_some()
}

/// Percent-encodes what may not appear in a URI path segment.
pub fn uri_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tables_are_valid() {
        let t = Tables::builtin();
        assert_eq!(t.event_encounter_status["A04"], "planned");
        assert_eq!(t.system_uri("LN").as_deref(), Some("http://loinc.org"));
        assert_eq!(
            t.system_uri("HL70078").as_deref(),
            Some("http://terminology.hl7.org/CodeSystem/v2-0078")
        );
        assert_eq!(t.system_uri("L").as_deref(), Some("urn:hl7v2:codesystem:L"));
    }

    #[test]
    fn a_bad_mapping_file_is_a_clear_error() {
        let bad = DEFAULT.replace("A03 = \"finished\"", "A03 = \"done\"");
        let e = Tables::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(
            e.contains("event_encounter_status.A03") && e.contains("x.toml"),
            "{e}"
        );
        let bad = DEFAULT.replace(
            "default_timezone = \"+00:00\"",
            "default_timezone = \"EST\"",
        );
        assert!(Tables::parse(&bad, "x.toml").is_err());
        for bad_tz in ["+99:99", "+14:30", "-05:60", "+0500", "+05:0"] {
            let bad = DEFAULT.replace(
                "default_timezone = \"+00:00\"",
                &format!("default_timezone = \"{bad_tz}\""),
            );
            assert!(Tables::parse(&bad, "x.toml").is_err(), "{bad_tz}");
        }
        for good_tz in ["-05:00", "+14:00", "+05:45", "Z"] {
            let good = DEFAULT.replace(
                "default_timezone = \"+00:00\"",
                &format!("default_timezone = \"{good_tz}\""),
            );
            assert!(Tables::parse(&good, "x.toml").is_ok(), "{good_tz}");
        }
    }

    #[test]
    fn a_uri_with_whitespace_is_a_name_not_a_uri() {
        let t = Tables::builtin();
        assert_eq!(
            t.system_uri("http://x.org/cs").as_deref(),
            Some("http://x.org/cs")
        );
        assert_eq!(
            t.system_uri("http://x.org/my cs").as_deref(),
            Some("urn:hl7v2:codesystem:http%3A%2F%2Fx.org%2Fmy%20cs")
        );
        assert_eq!(t.authority_uri("urn:x:y"), "urn:x:y");
        assert_eq!(
            t.authority_uri("urn:x y"),
            "urn:hl7v2:authority:urn%3Ax%20y"
        );
    }
}
