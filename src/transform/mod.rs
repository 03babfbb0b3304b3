//! The streaming stage's core: one HL7 v2 message to FHIR R4 Encounter and
//! Observation resources, following the HL7 V2-to-FHIR IG tables
//! (`../shared/reference/v2-to-fhir`, mirrored in `mappings/`).
//!
//! Every message has exactly one outcome: resources, a counted "no FHIR
//! content" (for example an ADT without PV1 or OBX), or an error whose
//! reason names segments and fields, never their content.

mod datatypes;
mod encounter;
mod observation;
pub mod tables;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::hl7::message::{read_full, MessageHeader, ReadOptions};
use crate::hl7::patient_key::{choose, default_priority};
pub use tables::Tables;

/// What one message became.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// FHIR resources as JSON, Encounter first, then Observations in OBX order.
    Resources(Vec<Value>),
    /// A valid message with nothing to map (no PV1 and no OBX).
    NoContent,
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
    pub subject: Option<Value>,
    pub encounter_id: Option<String>,
    pub meta: Value,
}

impl Mapper {
    pub fn map(&self, raw: &[u8]) -> Result<Mapped, MapError> {
        let unreadable =
            |r: crate::hl7::Reject| MapError::new(format!("message cannot be read: {}", r.reason));
        let prepared = read_full(raw, self.read).map_err(unreadable)?;
        let (msg, parsed) = prepared.parse().map_err(unreadable)?;
        let header = &parsed.header;
        let d = &header.delimiters;
        let subject = choose(&parsed.patient_identifiers, &self.patient_id_types).and_then(|cx| {
            datatypes::identifier(&cx.raw, d, &self.tables)
                .map(|id| json!({"type": "Patient", "identifier": id}))
        });
        let pv1 = msg.segment("PV1");
        let visit = pv1
            .and_then(|s| s.field(19))
            .map(|f| f.raw_value())
            .filter(|v| !v.is_empty());
        let encounter_id = pv1.map(|_| {
            let visit_key = visit.unwrap_or(&header.control_id);
            resource_id(&["Encounter", &header.sending_facility, visit_key])
        });
        let ctx = Context {
            header,
            tables: &self.tables,
            subject,
            encounter_id: visit.and(encounter_id.clone()),
            meta: json!({"source": meta_source(header)}),
        };
        let mut out = Vec::new();
        if let (Some(pv1), Some(id)) = (pv1, &encounter_id) {
            out.push(encounter::map(pv1, id, &ctx)?);
        }
        out.extend(observation::map_all(&msg, &ctx)?);
        Ok(if out.is_empty() {
            Mapped::NoContent
        } else {
            Mapped::Resources(out)
        })
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
    h.finalize()
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
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
