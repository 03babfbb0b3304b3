//! Topic names: the one place they are made. Raw topics (what the listener
//! writes) come from `topic_prefix`, FHIR topics (what the stage writes)
//! from `transform.output_prefix`.

/// Message types (MSH-9.1, lower case) that always have a raw topic.
pub const BUILTIN_TYPES: [&str; 3] = ["adt", "oru", "orm"];
/// The dead-letter topic's suffix, on both sides. Never a message type's topic.
pub const DLQ: &str = "dlq";

/// A raw topic's name: `<prefix><type>`, e.g. `hl7v2.adt`.
pub fn raw(prefix: &str, message_type: &str) -> String {
    format!("{prefix}{message_type}")
}

/// The raw topics the stage reads: one per built-in message type.
pub fn stage_inputs(raw_prefix: &str) -> Vec<String> {
    BUILTIN_TYPES.iter().map(|t| raw(raw_prefix, t)).collect()
}

/// Every raw topic the bridge writes: adt, oru, orm, dlq, then any extra
/// accepted types.
pub fn raw_topics(raw_prefix: &str, accept_types: &[String]) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN_TYPES
        .iter()
        .chain(std::iter::once(&DLQ))
        .map(|t| raw(raw_prefix, t))
        .collect();
    for t in accept_types {
        let name = raw(raw_prefix, &t.to_ascii_lowercase());
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The stage's output topics: one per FHIR resource type the transform
/// emits, named for the type in lower case (`<prefix>encounter`,
/// `<prefix>diagnosticreport`, ...), and the stage's dead-letter topic.
/// A new resource type in `avro::RESOURCE_SCHEMAS` gets its topic here
/// without a change to this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirTopics {
    /// In `avro::RESOURCE_SCHEMAS` order.
    by_resource: Vec<String>,
    pub dlq: String,
}

impl FhirTopics {
    pub fn new(prefix: &str) -> Self {
        Self {
            by_resource: crate::avro::RESOURCE_SCHEMAS
                .iter()
                .map(|(t, _)| format!("{prefix}{}", t.to_ascii_lowercase()))
                .collect(),
            dlq: format!("{prefix}{DLQ}"),
        }
    }

    /// Every output topic, the dead-letter topic last.
    pub fn all(&self) -> Vec<&str> {
        self.by_resource
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(self.dlq.as_str()))
            .collect()
    }

    /// The topic a resource type is written to.
    pub fn for_type(&self, resource_type: &str) -> Option<&str> {
        crate::avro::RESOURCE_SCHEMAS
            .iter()
            .position(|(t, _)| *t == resource_type)
            .map(|i| self.by_resource[i].as_str())
    }

    /// The topic of each resource type, in `avro::RESOURCE_SCHEMAS` order.
    pub fn by_resource(&self) -> &[String] {
        &self.by_resource
    }
}

/// The Kafka stage's sender-dedup changelog: one per consumer group (the
/// state belongs to the group, as a Kafka Streams store's changelog belongs
/// to its `application.id`), co-partitioned with the raw topics.
pub fn dedup_changelog(group: &str) -> String {
    format!("{group}-dedup-changelog")
}

/// Every topic of a bridge config: the raw ones, then the FHIR ones. What
/// `topics create` makes, besides the [`dedup_changelog`].
pub fn all(cfg: &crate::config::Config) -> Vec<String> {
    let mut names = raw_topics(&cfg.topic_prefix, &cfg.accept_types);
    names.extend(
        FhirTopics::new(&cfg.transform.output_prefix)
            .all()
            .iter()
            .map(|t| t.to_string()),
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_topics_are_the_builtin_types_the_dlq_and_extras_once_each() {
        let extra = vec!["SIU".to_owned(), "adt".to_owned()];
        assert_eq!(
            raw_topics("hl7v2.", &extra),
            [
                "hl7v2.adt",
                "hl7v2.oru",
                "hl7v2.orm",
                "hl7v2.dlq",
                "hl7v2.siu"
            ]
        );
        assert_eq!(stage_inputs("x."), ["x.adt", "x.oru", "x.orm"]);
    }

    #[test]
    fn the_dedup_changelog_is_named_for_the_group() {
        assert_eq!(
            dedup_changelog("hl7bridge-transform"),
            "hl7bridge-transform-dedup-changelog"
        );
    }

    #[test]
    fn fhir_topics_follow_the_output_prefix() {
        assert_eq!(
            FhirTopics::new("fhir.").all(),
            [
                "fhir.encounter",
                "fhir.observation",
                "fhir.patient",
                "fhir.diagnosticreport",
                "fhir.servicerequest",
                "fhir.specimen",
                "fhir.dlq"
            ]
        );
    }
}
