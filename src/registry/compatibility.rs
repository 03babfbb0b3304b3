//! Compatibility levels, as Confluent defines them, checked with Avro's
//! schema resolution rules.
//!
//! BACKWARD: the new schema can read data written with the previous one
//! (consumers upgrade first). FORWARD: the previous schema can read data
//! written with the new one (producers upgrade first). FULL: both. The
//! `_TRANSITIVE` forms check against every version, not just the latest.

use std::fmt;
use std::str::FromStr;

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

use super::RegistryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Why `new` may not follow `previous` (versions oldest first); empty
    /// means compatible. Non-transitive levels look only at the last one.
    ///
    /// Avro's "partial" compatibility (a union or enum that only sometimes
    /// resolves) counts as incompatible, as it does in Confluent's checker:
    /// a consumer must not fail on some records.
    pub fn check(self, new: &Schema, previous: &[(u32, Schema)]) -> Vec<String> {
        let against = match previous.split_last() {
            Some((last, _)) if !self.transitive() => std::slice::from_ref(last),
            _ => previous,
        };
        let mut problems = Vec::new();
        for (version, old) in against {
            if self.backward() {
                if let Some(why) = cannot_read(old, new) {
                    problems.push(format!(
                        "the new schema cannot read data written with version {version} ({}): {why}",
                        self
                    ));
                }
            }
            if self.forward() {
                if let Some(why) = cannot_read(new, old) {
                    problems.push(format!(
                        "version {version} cannot read data written with the new schema ({}): {why}",
                        self
                    ));
                }
            }
        }
        problems
    }
}

fn cannot_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => {
            Some("only some values resolve (a union branch or enum symbol is missing)".into())
        }
        Err(e) => Some(e.to_string()),
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Case-insensitive, as Confluent accepts it.
impl FromStr for CompatibilityLevel {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            _ => return Err(RegistryError::InvalidCompatibilityLevel(s.to_owned())),
        })
    }
}
