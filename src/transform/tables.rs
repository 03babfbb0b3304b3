//! The declarative code tables (`mappings/tables.toml`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The tables shipped with the bridge, used when no `--mappings` file is given.
pub const DEFAULT: &str = include_str!("../../mappings/tables.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    pub default_timezone: String,
    /// Field-selection rule: the PV1 field holding the visit number (19, or
    /// 50 for senders that put it in the alternate visit ID).
    #[serde(default = "default_visit_number_field")]
    pub visit_number_field: usize,
    /// Field-selection rule: CX-5 identifier types for the subject, in order
    /// of preference; empty uses the bridge's `patient_id_types`.
    #[serde(default)]
    pub patient_id_types: Vec<String>,
    /// Whether an ORU's ORC/OBR also yields a ServiceRequest (the IG: "if
    /// the receiver needs it"); an ORM's always does.
    #[serde(default)]
    pub service_request_from_results: bool,
    pub event_encounter_status: BTreeMap<String, String>,
    pub patient_class_status: BTreeMap<String, String>,
    pub patient_class: BTreeMap<String, (String, String)>,
    pub observation_status: BTreeMap<String, String>,
    pub coding_systems: BTreeMap<String, String>,
    /// Per-sender overrides, matched on MSH-3 and MSH-4; the first match wins.
    #[serde(default, rename = "sender")]
    pub senders: Vec<SenderOverride>,
    /// Each override merged over the base tables, built once at load.
    #[serde(skip)]
    resolved: Vec<Tables>,
}

fn default_visit_number_field() -> usize {
    19
}

/// `[[sender]]`: settings and table rows that replace the base ones for the
/// messages of one sending application and/or facility.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SenderOverride {
    /// MSH-3.1 to match (omitted: any).
    pub application: Option<String>,
    /// MSH-4.1 to match (omitted: any).
    pub facility: Option<String>,
    pub default_timezone: Option<String>,
    pub visit_number_field: Option<usize>,
    pub patient_id_types: Option<Vec<String>>,
    #[serde(default)]
    pub event_encounter_status: BTreeMap<String, String>,
    #[serde(default)]
    pub patient_class_status: BTreeMap<String, String>,
    #[serde(default)]
    pub patient_class: BTreeMap<String, (String, String)>,
    #[serde(default)]
    pub observation_status: BTreeMap<String, String>,
    #[serde(default)]
    pub coding_systems: BTreeMap<String, String>,
}

impl SenderOverride {
    fn matches(&self, application: &str, facility: &str) -> bool {
        let is = |want: &Option<String>, got: &str| {
            want.as_deref()
                .is_none_or(|w| w.eq_ignore_ascii_case(got.split('^').next().unwrap_or(got).trim()))
        };
        is(&self.application, application) && is(&self.facility, facility)
    }

    fn apply(&self, base: &Tables) -> Tables {
        let mut t = base.clone();
        t.senders.clear();
        t.resolved.clear();
        if let Some(v) = &self.default_timezone {
            t.default_timezone = v.clone();
        }
        if let Some(v) = self.visit_number_field {
            t.visit_number_field = v;
        }
        if let Some(v) = &self.patient_id_types {
            t.patient_id_types = v.clone();
        }
        t.event_encounter_status
            .extend(self.event_encounter_status.clone());
        t.patient_class_status
            .extend(self.patient_class_status.clone());
        t.patient_class.extend(self.patient_class.clone());
        t.observation_status.extend(self.observation_status.clone());
        t.coding_systems.extend(self.coding_systems.clone());
        t
    }
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
        let mut t: Tables = toml::from_str(text).map_err(|e| TablesError::Parse(name.into(), e))?;
        t.check()
            .map_err(|e| TablesError::Invalid(name.into(), e))?;
        let mut resolved = Vec::with_capacity(t.senders.len());
        for (i, o) in t.senders.iter().enumerate() {
            if o.application.is_none() && o.facility.is_none() {
                return Err(TablesError::Invalid(
                    name.into(),
                    format!(
                        "sender override {} matches no sender: give application and/or facility",
                        i + 1
                    ),
                ));
            }
            let merged = o.apply(&t);
            merged.check().map_err(|e| {
                TablesError::Invalid(name.into(), format!("sender override {}: {e}", i + 1))
            })?;
            resolved.push(merged);
        }
        t.resolved = resolved;
        Ok(t)
    }

    /// The tables for one sender: its override merged over the base, or the base.
    pub fn for_sender(&self, application: &str, facility: &str) -> &Tables {
        self.senders
            .iter()
            .zip(&self.resolved)
            .find(|(o, _)| o.matches(application, facility))
            .map_or(self, |(_, t)| t)
    }

    /// Values must be codes FHIR R4 allows; the timezone must be an offset.
    fn check(&self) -> Result<(), String> {
        if !matches!(self.visit_number_field, 19 | 50) {
            return Err(format!(
                "visit_number_field = {} (the visit number is PV1-19, or PV1-50 alternate visit ID)",
                self.visit_number_field
            ));
        }
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

    /// A v2 coding-system name (CWE-3) as a FHIR system URI (borrowed from
    /// the table, or from `name` when it already is a URI).
    pub fn system_uri<'a>(&'a self, name: &'a str) -> Option<Cow<'a, str>> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let upper = if name.bytes().any(|b| b.is_ascii_lowercase()) {
            Cow::Owned(name.to_ascii_uppercase())
        } else {
            Cow::Borrowed(name)
        };
        if let Some(u) = self.coding_systems.get(&*upper) {
            return Some(Cow::Borrowed(u));
        }
        if let Some(num) = upper
            .strip_prefix("HL7")
            .filter(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Some(Cow::Owned(format!(
                "http://terminology.hl7.org/CodeSystem/v2-{num}"
            )));
        }
        if is_uri(name) {
            return Some(Cow::Borrowed(name));
        }
        Some(Cow::Owned(prefixed_uri_safe("urn:hl7v2:codesystem:", name)))
    }

    /// The system URI of v2 table `table` (e.g. "0078"): [`Self::system_uri`]
    /// of `HL7<table>`.
    pub fn table_uri(&self, table: &str) -> Option<String> {
        self.table_uri_cow(table).map(Cow::into_owned)
    }

    /// [`Tables::table_uri`], borrowed for the tables the mapper defaults to
    /// (it asks once per coded element, so this is on the hot path).
    pub fn table_uri_cow(&self, table: &str) -> Option<Cow<'_, str>> {
        const DEFAULTS: &[(&str, &str, &str)] = &[
            (
                "0007",
                "HL70007",
                "http://terminology.hl7.org/CodeSystem/v2-0007",
            ),
            (
                "0023",
                "HL70023",
                "http://terminology.hl7.org/CodeSystem/v2-0023",
            ),
            (
                "0069",
                "HL70069",
                "http://terminology.hl7.org/CodeSystem/v2-0069",
            ),
            (
                "0078",
                "HL70078",
                "http://terminology.hl7.org/CodeSystem/v2-0078",
            ),
            (
                "0112",
                "HL70112",
                "http://terminology.hl7.org/CodeSystem/v2-0112",
            ),
        ];
        if let Some(&(_, name, uri)) = DEFAULTS.iter().find(|(t, _, _)| *t == table) {
            // What `system_uri` gives for `HL7nnnn` unless the tables name it.
            return Some(match self.coding_systems.get(name) {
                Some(u) => Cow::Borrowed(u),
                None => Cow::Borrowed(uri),
            });
        }
        let mut name = String::with_capacity(3 + table.len());
        name.push_str("HL7");
        name.push_str(table);
        self.system_uri(&name).map(|u| Cow::Owned(u.into_owned()))
    }

    /// An assigning authority namespace as an identifier system URI.
    pub fn authority_uri(&self, ns: &str) -> String {
        let ns = ns.trim();
        if is_uri(ns) {
            return ns.to_owned();
        }
        prefixed_uri_safe("urn:hl7v2:authority:", ns)
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
    prefixed_uri_safe("", s)
}

/// `prefix` then [`uri_safe`]`(s)`, built in one string (ids and systems are
/// made per message: no `format!` and no intermediate string).
fn prefixed_uri_safe(prefix: &str, s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(prefix.len() + s.len());
    out.push_str(prefix);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
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

    fn with_override(extra: &str) -> Result<Tables, TablesError> {
        Tables::parse(&format!("{DEFAULT}\n{extra}"), "test.toml")
    }

    #[test]
    fn a_sender_override_applies_to_its_sender_only_and_inherits_the_rest() {
        let t = with_override(
            "[[sender]]\nfacility = \"HOPITAL\"\ndefault_timezone = \"+01:00\"\nvisit_number_field = 50\n[sender.observation_status]\nF = \"preliminary\"\n",
        )
        .unwrap();
        let h = t.for_sender("ANYAPP", "HOPITAL");
        assert_eq!(h.default_timezone, "+01:00");
        assert_eq!(h.visit_number_field, 50);
        assert_eq!(h.observation_status["F"], "preliminary");
        assert_eq!(
            h.observation_status["C"], "corrected",
            "other rows are inherited"
        );
        let other = t.for_sender("ANYAPP", "GENHOSP");
        assert_eq!(other.default_timezone, "+00:00");
        assert_eq!(other.observation_status["F"], "final");
    }

    #[test]
    fn overrides_match_on_application_and_facility_and_the_first_match_wins() {
        let t = with_override(
            "[[sender]]\napplication = \"LAB\"\nfacility = \"A\"\ndefault_timezone = \"+02:00\"\n[[sender]]\nfacility = \"A\"\ndefault_timezone = \"+03:00\"\n",
        )
        .unwrap();
        assert_eq!(t.for_sender("LAB", "A").default_timezone, "+02:00");
        assert_eq!(
            t.for_sender("lab", "A^1.2.3^ISO").default_timezone,
            "+02:00"
        );
        assert_eq!(t.for_sender("ADT", "A").default_timezone, "+03:00");
        assert_eq!(t.for_sender("LAB", "B").default_timezone, "+00:00");
    }

    #[test]
    fn a_bad_override_is_a_clear_error_naming_it() {
        let e = with_override("[[sender]]\nfacility = \"A\"\ndefault_timezone = \"CET\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("sender override 1"), "{e}");
        let e = with_override("[[sender]]\ndefault_timezone = \"+01:00\"\n").unwrap_err();
        assert!(e.to_string().contains("matches no sender"), "{e}");
        let e =
            with_override("[[sender]]\nfacility = \"A\"\nvisit_number_field = 7\n").unwrap_err();
        assert!(e.to_string().contains("visit_number_field"), "{e}");
        assert!(with_override("[[sender]]\nfacility = \"A\"\nfavourite_colour = 1\n").is_err());
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
