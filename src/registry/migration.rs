//! The one-time migration of the FHIR subjects to schema version 3, where
//! FHIR decimals turned from strings (the exact text) into doubles with a
//! `_<name>` companion ([`crate::avro`]).
//!
//! string → double is not BACKWARD-compatible, so a registry holding version
//! 2 refuses version 3, and the stage refuses to start
//! ([`needs_migration`] tells it why). `hl7bridge topics migrate-schemas`
//! then registers version 3 with the check at NONE for that one
//! registration, and only if the decimals are the *only* incompatible
//! change: the rest of the schema must pass the subject's own level. Records
//! already written keep their writer schema id, so every consumer that
//! resolves the id (Confluent's deserializers, `tail --format fhir`) reads
//! both.

use serde_json::Value;

use super::compatibility::CompatibilityLevel;
use super::store::{RegistryStore, VersionId};
use super::RegistryError;

/// What an operator runs when the stage refuses to start for this reason.
pub const COMMAND: &str = "hl7bridge topics migrate-schemas";

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Something besides the decimals changed incompatibly: not this
    /// migration's to override.
    #[error(
        "{subject}: the new schema is incompatible with the registered one beyond the \
         decimals turning into numbers, so the migration does not override it: {}",
        messages.join("; ")
    )]
    Incompatible {
        subject: String,
        messages: Vec<String>,
    },
}

/// What the migration did to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The subject already had this schema.
    Current { version: u32, id: u32 },
    /// Registered under the subject's own level (new subject, or compatible).
    Registered { version: u32, id: u32 },
    /// Registered over a version with text decimals, at NONE for this once.
    Migrated { version: u32, id: u32 },
}

/// Registers `text` under `subject`, overriding the compatibility check
/// only for the string → double change of the decimals.
pub fn migrate(
    store: &RegistryStore,
    subject: &str,
    text: &str,
) -> Result<Migrated, MigrationError> {
    match store.lookup(subject, text) {
        Ok(v) => {
            return Ok(Migrated::Current {
                version: v.version,
                id: v.id,
            })
        }
        Err(RegistryError::SubjectNotFound(_) | RegistryError::SchemaNotFound) => {}
        Err(e) => return Err(e.into()),
    }
    if store.check_compatibility(subject, None, text)?.is_empty() {
        let v = store.register(subject, text)?;
        return Ok(Migrated::Registered {
            version: v.version,
            id: v.id,
        });
    }
    // The same schema with the decimals as they were must pass the
    // subject's own level: then the decimals are all the override lets in.
    let as_before = with_text_decimals(text).ok_or_else(|| {
        RegistryError::InvalidSchema("the new schema is not a JSON object".to_owned())
    })?;
    let messages = store.check_compatibility(subject, None, &as_before)?;
    let latest = store.version(subject, VersionId::Latest)?;
    if !messages.is_empty() || !has_text_decimals(&latest.schema) {
        return Err(MigrationError::Incompatible {
            subject: subject.to_owned(),
            messages,
        });
    }
    let v = store.register_overriding(subject, text, CompatibilityLevel::None)?;
    tracing::info!(subject, version = v.version, id = v.id, "schema migrated");
    Ok(Migrated::Migrated {
        version: v.version,
        id: v.id,
    })
}

/// Whether a registration refused as incompatible is the one this
/// migration is for: the subject's latest schema has decimals as strings and
/// the new one does not.
pub fn needs_migration(latest: &str, new: &str) -> bool {
    has_text_decimals(latest) && !has_text_decimals(new)
}

/// Whether a schema has a FHIR decimal written as a string (before version 3).
pub fn has_text_decimals(schema_text: &str) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(o) => {
                let text_decimal = o.get("fhirType").and_then(Value::as_str) == Some("decimal")
                    && mentions_string(o.get("type"));
                text_decimal || o.values().any(walk)
            }
            Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    serde_json::from_str::<Value>(schema_text).is_ok_and(|v| walk(&v))
}

fn mentions_string(t: Option<&Value>) -> bool {
    match t {
        Some(Value::String(s)) => s == "string",
        Some(Value::Array(a)) => a.iter().any(|b| b == "string"),
        _ => false,
    }
}

/// `text` with its decimals written as before version 3: a string, and no
/// companion field. `None` if `text` is not a JSON schema.
fn with_text_decimals(text: &str) -> Option<String> {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(fields)) = o.get_mut("fields") {
                    let mut decimal: Option<String> = None;
                    fields.retain_mut(|f| {
                        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
                        if decimal.take().is_some_and(|d| name == format!("_{d}")) {
                            return false;
                        }
                        if f.get("fhirType").and_then(Value::as_str) == Some("decimal") {
                            decimal = Some(name.to_owned());
                            f["type"] = serde_json::json!(["null", "string"]);
                        }
                        true
                    });
                }
                o.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(text).ok()?;
    v.is_object().then(|| {
        walk(&mut v);
        v.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::OBSERVATION_AVSC;

    #[test]
    fn version_3_has_numeric_decimals_and_reverts_to_text_ones() {
        assert!(!has_text_decimals(OBSERVATION_AVSC));
        let before = with_text_decimals(OBSERVATION_AVSC).unwrap();
        assert!(has_text_decimals(&before));
        assert!(!before.contains("\"_value\""));
        apache_avro::Schema::parse_str(&before).unwrap();
        assert!(needs_migration(&before, OBSERVATION_AVSC));
        assert!(!needs_migration(OBSERVATION_AVSC, OBSERVATION_AVSC));
    }
}
