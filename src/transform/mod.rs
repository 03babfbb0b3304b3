//! The streaming stage's core: one HL7 v2 message to FHIR R4 resources
//! (Encounter, Observation, Patient, Specimen, ServiceRequest and
//! DiagnosticReport), following the HL7 V2-to-FHIR IG tables
//! (`../shared/reference/v2-to-fhir`, mirrored in `mappings/` and `codes`).
//! A reference to a resource the bridge emits is literal (`Patient/<id>`)
//! and names a resource emitted for the same message.
//!
//! Every message has exactly one outcome: resources, a counted "no FHIR
//! content" (for example an ADT without PV1 or OBX), or an error whose
//! reason names segments and fields, never their content.

pub mod codes;
mod datatypes;
mod demographics;
mod diagnostic_report;
mod encounter;
pub mod fhir;
mod merge;
mod observation;
mod orders;
mod patient;
mod references;
mod service_request;
mod specimen;
pub mod tables;
mod timing;

use std::borrow::Cow;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::hl7::message::{read_full, MessageHeader, ReadOptions};
use crate::hl7::patient_key::{choose, default_priority};
pub use fhir::Resource;
pub use tables::Tables;

/// What one message became.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// FHIR resources as JSON: Encounter first, Observations in OBX order,
    /// then Patients, Specimens, ServiceRequests and DiagnosticReports.
    Resources(Vec<Value>),
    /// A valid message with nothing to map (no PID, PV1, OBX or order).
    NoContent,
    /// Resources, and segments that could not be mapped: each cost only the
    /// resources that depend on it (an OBX, its Observation).
    Partial {
        resources: Vec<Value>,
        skipped: Vec<Skipped>,
    },
}

/// A segment the mapper could not map. The rest of the message is mapped;
/// the stage dead-letters this part on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The segment's name, e.g. `OBX`.
    pub segment: &'static str,
    /// Its 1-based position among the message's segments of that name.
    pub index: usize,
    /// Content-free, as [`MapError`]'s.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct MapError {
    /// Stable, content-free: e.g. "OBX-3 is empty in OBX 2".
    pub reason: String,
}

impl MapError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

pub struct Mapper {
    pub tables: Tables,
    pub patient_id_types: Vec<String>,
    pub read: ReadOptions,
}

impl Default for Mapper {
    fn default() -> Self {
        Self {
            tables: Tables::builtin(),
            patient_id_types: default_priority(),
            read: ReadOptions::default(),
        }
    }
}

/// What every resource of a message shares.
pub(crate) struct Context<'a> {
    pub header: &'a MessageHeader,
    pub tables: &'a Tables,
    pub subject: Option<fhir::Reference<'a>>,
    /// `Encounter/<id>`, when the visit number identifies the encounter.
    pub encounter_reference: Option<String>,
    pub meta: fhir::Meta<'a>,
}

impl Mapper {
    /// The message's resources as FHIR JSON.
    pub fn map(&self, raw: &[u8]) -> Result<Mapped, MapError> {
        self.map_with(raw, |resources, skipped| {
            let json = resources
                .iter()
                .map(Resource::to_json)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| MapError::new("a mapped resource cannot be written as JSON"))?;
            Ok(match (json.is_empty(), skipped) {
                (true, []) => Mapped::NoContent,
                // Nothing else to emit: the message fails as a whole, as the
                // stage then dead-letters it whole.
                (true, [first, ..]) => return Err(MapError::new(first.reason.clone())),
                (false, []) => Mapped::Resources(json),
                (false, _) => Mapped::Partial {
                    resources: json,
                    skipped: skipped.to_vec(),
                },
            })
        })?
    }

    /// Maps one message and hands its resources (Encounter first, then
    /// Observations in OBX order; empty for "no FHIR content") and the
    /// segments it could not map to `f`. The resources borrow the message,
    /// so they live only for the call: what the stage uses to encode Avro
    /// without building JSON first. An error is a message that cannot be
    /// read at all.
    pub fn map_with<R>(
        &self,
        raw: &[u8],
        f: impl FnOnce(&[Resource<'_>], &[Skipped]) -> R,
    ) -> Result<R, MapError> {
        let unreadable =
            |r: crate::hl7::Reject| MapError::new(format!("message cannot be read: {}", r.reason));
        let prepared = read_full(raw, self.read).map_err(unreadable)?;
        let (msg, parsed) = prepared.view().map_err(unreadable)?;
        let header = &parsed.header;
        let d = &header.delimiters;
        let tables = self
            .tables
            .for_sender(&header.sending_application, &header.sending_facility);
        let id_types = if tables.patient_id_types.is_empty() {
            &self.patient_id_types
        } else {
            &tables.patient_id_types
        };
        // The first PID's Patient, which every other resource's subject names.
        let patient_id = msg.segment("PID").map(|_| {
            let h = header;
            merge::patient_id(
                &parsed.patient_identifiers,
                id_types,
                &[&h.sending_facility, &h.control_id, "0"],
            )
        });
        let subject = patient_id.as_ref().map(|pid| fhir::Reference {
            reference: Some(Cow::Owned(format!("Patient/{pid}"))),
            type_: None,
            identifier: choose(&parsed.patient_identifiers, id_types)
                .and_then(|cx| datatypes::identifier(&cx.raw, d, tables)),
            display: None,
            extension: Vec::new(),
        });
        let pv1 = msg.segment("PV1");
        // An empty, blank or null (`""`) visit number is none: keying on it would
        // give every such encounter of the facility the same id.
        let visit = pv1
            .and_then(|s| s.field(tables.visit_number_field))
            .filter(|v| !v.trim().is_empty() && !datatypes::is_null(v));
        let encounter_id = pv1.map(|_| {
            let visit_key = visit.unwrap_or(&header.control_id);
            resource_id(&["Encounter", &header.sending_facility, visit_key])
        });
        let ctx = Context {
            header,
            tables,
            subject,
            encounter_reference: visit
                .and(encounter_id.as_ref())
                .map(|eid| format!("Encounter/{eid}")),
            meta: fhir::Meta {
                source: Cow::Owned(meta_source(header)),
                security: Vec::new(),
            },
        };
        let mut out = Vec::new();
        if let (Some(pv1), Some(id)) = (&pv1, &encounter_id) {
            let pv2 = msg.segment("PV2");
            out.push(Resource::Encounter(encounter::map(
                pv1,
                pv2.as_ref(),
                id,
                &ctx,
            )?));
        }
        let mut skipped = Vec::new();
        let observations = observation::map_all(&msg, &ctx, &mut out, &mut skipped);
        if let Some(pid) = &patient_id {
            merge::map_all(&msg, &ctx, id_types, pid, &mut out);
        }
        orders::map_all(&msg, &ctx, &observations, &mut out);
        Ok(f(&out, &skipped))
    }
}

/// A deterministic FHIR id: the same inputs give the same id, so reprocessing
/// a message upserts rather than duplicates downstream.
pub(crate) fn resource_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // The hex digits into a fixed buffer, then one string: no per-digit
    // capacity check (ids are made for every resource of every message).
    let mut hex = [0u8; 40];
    for (pair, &b) in hex.chunks_exact_mut(2).zip(h.finalize().iter()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    // Always ASCII: the check passes, and is a short word-at-a-time scan.
    String::from(std::str::from_utf8(&hex).unwrap_or_default())
}

/// `meta.source`: which message this came from (sender and control ID).
fn meta_source(h: &MessageHeader) -> String {
    use tables::uri_safe;
    format!(
        "urn:hl7v2:{}:{}:{}",
        uri_safe(&h.sending_application),
        uri_safe(&h.sending_facility),
        uri_safe(&h.control_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Maps an ORU^R01 made of the given segments after MSH and PID: its
    /// Encounter and Observations (what these tests are about).
    fn oru(segments: &[&str]) -> Vec<Value> {
        let mut m = "MSH|^~\\&|LAB|FAC|B|G|20261115103000||ORU^R01|CTRL1|P|2.5.1\r\
                     PID|||MRN1^^^H^MR\r"
            .to_owned();
        for s in segments {
            m.push_str(s);
            m.push('\r');
        }
        match Mapper::default().map(m.as_bytes()) {
            Ok(Mapped::Resources(r)) => r
                .into_iter()
                .filter(|r| {
                    matches!(
                        r["resourceType"].as_str(),
                        Some("Encounter" | "Observation")
                    )
                })
                .collect(),
            other => panic!("expected resources, got {other:?}"),
        }
    }

    fn pv1(fields: &[(usize, &str)]) -> String {
        let mut f = vec![""; 46];
        f[0] = "PV1";
        for &(n, v) in fields {
            f[n] = v;
        }
        f.join("|")
    }

    #[test]
    fn a_sender_override_changes_timezone_and_visit_field_for_that_sender_only() {
        let text = format!(
            "{}\n[[sender]]\nfacility = \"FAC\"\ndefault_timezone = \"+01:00\"\nvisit_number_field = 50\n",
            tables::DEFAULT
        );
        let mapper = Mapper {
            tables: Tables::parse(&text, "site.toml").unwrap(),
            ..Mapper::default()
        };
        let mut fields = vec![""; 51];
        fields[0] = "PV1";
        fields[19] = "V19";
        fields[50] = "V50";
        let msg = |fac: &str| {
            format!(
                "MSH|^~\\&|LAB|{fac}|B|G|20261115103000||ORU^R01|C1|P|2.5.1\rPID|||M^^^H^MR\r{}\rOBX|1|ST|X^T^L||v||||||F|||202611151030\r",
                fields.join("|")
            )
        };
        let Ok(Mapped::Resources(site)) = mapper.map(msg("FAC").as_bytes()) else {
            panic!()
        };
        assert_eq!(site[0]["identifier"][0]["value"], "V50");
        assert_eq!(site[1]["effectiveDateTime"], "2026-11-15T10:30:00+01:00");
        let Ok(Mapped::Resources(other)) = mapper.map(msg("ELSEWHERE").as_bytes()) else {
            panic!()
        };
        assert_eq!(other[0]["identifier"][0]["value"], "V19");
        assert_eq!(other[1]["effectiveDateTime"], "2026-11-15T10:30:00+00:00");
    }

    #[test]
    fn obx5_and_obx7_of_only_formatting_escapes_give_no_value_and_no_reference_range() {
        let r = oru(&[r"OBX|1|FT|X^Text^L||\H\\N\||\H\\N\|||||F"]);
        assert_eq!(r.len(), 1);
        let o = r[0].as_object().unwrap();
        assert!(!o.contains_key("valueString"), "{o:?}");
        assert!(!o.contains_key("referenceRange"), "{o:?}");
        // FHIR allows an Observation without value[x].
        assert_eq!(o["code"]["coding"][0]["code"], "X");
    }

    #[test]
    fn a_cwe_code_that_is_a_single_space_is_omitted_and_nothing_left_means_no_value() {
        let r = oru(&[
            "OBX|1|CWE|X^Coded^L|| ^Detected^SCT||||||F",
            "OBX|2|CWE|Y^Coded^L|| ^ ||||||F",
        ]);
        assert_eq!(
            r[0]["valueCodeableConcept"],
            json!({"coding": [{"system": "http://snomed.info/sct", "display": "Detected"}]})
        );
        assert!(r[1].get("valueCodeableConcept").is_none(), "{:#}", r[1]);
        assert!(r[1].get("valueString").is_none(), "{:#}", r[1]);
    }

    #[test]
    fn repetitions_with_nothing_left_are_not_values_or_components() {
        let r = oru(&[r"OBX|1|ST|X^Text^L||\H\\N\~one~ ||||||F"]);
        assert_eq!(r[0]["valueString"], "one");
        assert!(r[0].get("component").is_none());
    }

    #[test]
    fn notes_and_units_with_nothing_left_are_omitted() {
        let r = oru(&[
            r"OBX|1|NM|X^Num^L||5| ^\H\^UCUM|||||F",
            r"NTE|1|L|\H\\N\",
            r"NTE|2|L|first~\N\~second",
        ]);
        assert_eq!(r[0]["valueQuantity"], json!({"value": 5}));
        assert_eq!(r[0]["note"], json!([{"text": "first\nsecond"}]));
    }

    #[test]
    fn an_invalid_optional_timestamp_is_omitted_never_emitted() {
        let r = oru(&[
            &pv1(&[
                (2, "I"),
                (19, "V1"),
                (44, "20261114200000+9999"),
                (45, "20260230"),
            ]),
            "OBR|1||F1|X^Panel^L||20261115070000|20261115081500",
            "OBX|1|NM|X^Num^L||5||||||F|||20261115081500+9999",
            "OBX|2|NM|X^Num^L||5||||||F|||20261399",
        ]);
        let e = &r[0];
        assert!(e.get("period").is_none(), "{e:#}");
        assert_eq!(
            e["status"], "finished",
            "PV1-45 was sent: the encounter ended, when is unknown"
        );
        // An unusable OBX-14 is treated like an empty one: OBR-7 is used.
        for o in &r[1..] {
            assert_eq!(o["effectiveDateTime"], "2026-11-15T08:15:00+00:00");
        }
    }

    #[test]
    fn an_invalid_timestamp_value_is_kept_as_text() {
        let r = oru(&[
            "OBX|1|DTM|X^When^L||20261101123015+9999||||||F",
            "OBX|2|TM|X^At^L||12.5||||||F",
        ]);
        assert_eq!(r[0]["valueString"], "20261101123015+9999");
        assert_eq!(r[1]["valueString"], "12.5");
    }

    #[test]
    fn the_v2_null_is_no_value() {
        let null = r#""""#;
        let r = oru(&[
            &pv1(&[(2, "I"), (19, null), (45, null)]),
            &format!("OBR|1||{null}"),
            &format!("OBX|1|ST|X^Text^L||{null}||{null}||||{null}"),
        ]);
        let (e, o) = (&r[0], &r[1]);
        assert_eq!(e["status"], "in-progress", "PV1-45 \"\" is not a discharge");
        assert!(e.get("identifier").is_none() && e.get("period").is_none());
        assert!(o.get("valueString").is_none() && o.get("referenceRange").is_none());
        assert_eq!(o["status"], "unknown", "OBX-11 \"\" is read as empty");
        assert!(
            o.get("encounter").is_none(),
            "no visit number, no encounter reference"
        );
        // The encounter id is keyed on the message, not on the literal "".
        let mut other_msg = "MSH|^~\\&|LAB|FAC|B|G|20261115103000||ORU^R01|CTRL2|P|2.5.1\r\
                             PID|||MRN2^^^H^MR\r"
            .to_owned();
        other_msg.push_str(&pv1(&[(2, "I"), (19, null)]));
        let Ok(Mapped::Resources(r2)) = Mapper::default().map(other_msg.as_bytes()) else {
            panic!("expected resources")
        };
        assert_ne!(
            r2[0]["id"], e["id"],
            "two visits with PV1-19 \"\" are not one"
        );
    }

    #[test]
    fn obx_with_the_same_set_id_and_code_get_distinct_ids() {
        let r = oru(&[
            "OBR|1||F1|X^Panel^L",
            "OBX||TX|NOTE^Note^L||line one||||||F",
            "OBX||TX|NOTE^Note^L||line two||||||F",
            "OBX||TX|NOTE^Note^L||line three||||||F",
        ]);
        let ids: std::collections::BTreeSet<_> =
            r.iter().map(|o| o["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(
            r,
            oru(&[
                "OBR|1||F1|X^Panel^L",
                "OBX||TX|NOTE^Note^L||line one||||||F",
                "OBX||TX|NOTE^Note^L||line two||||||F",
                "OBX||TX|NOTE^Note^L||line three||||||F",
            ]),
            "and stay deterministic"
        );
    }

    #[test]
    fn an_obx3_with_nothing_left_is_rejected_without_quoting_it() {
        let m =
            b"MSH|^~\\&|A|F|B|G|2026||ORU^R01|N2|P|2.5\rOBX|1|ST|\\H\\ ^ \\N\\||SECRET||||||F\r";
        let e = Mapper::default().map(m).unwrap_err();
        assert_eq!(e.reason, "OBX-3 observation identifier is empty in OBX 1");
    }
}
