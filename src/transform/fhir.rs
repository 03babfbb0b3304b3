//! The mapper's output as typed FHIR R4 elements, borrowing text from the
//! message and the tables where it can.
//!
//! Serialized with serde, they give exactly the JSON the mapper documents
//! (members in the order below, which is also the Avro schemas' field order,
//! absent elements omitted) and, through [`crate::avro::Encoder::encode_resource_into`],
//! the Avro datum without building a `serde_json::Value` first.

use std::borrow::Cow;

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::Number;

mod resources;
pub use resources::*;

/// FHIR text: borrowed from the message or the tables when nothing had to
/// change, owned otherwise.
pub type Text<'a> = Cow<'a, str>;

#[derive(Debug, Clone, Serialize)]
pub struct Coding<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<Text<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeableConcept<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Text<'a>>,
}

/// Members in schema order (`type`, `system`, `value`), so Avro → JSON
/// gives back the same text.
#[derive(Debug, Clone, Serialize)]
pub struct Identifier<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Text<'a>>,
    pub value: Text<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Text<'a>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<Text<'a>>,
    /// The participant's function (IG OBR-34/35 event-performerFunction);
    /// only the DiagnosticReport schema's Reference has it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta<'a> {
    pub source: Text<'a>,
    /// Encounter only (PV2-22); the Observation schema has no such field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security: Vec<Coding<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quantity<'a> {
    pub value: Number,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparator: Option<Text<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Range<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<Quantity<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<Quantity<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratio<'a> {
    pub numerator: Quantity<'a>,
    pub denominator: Quantity<'a>,
}

/// `{"text": ...}`: Observation.referenceRange and Annotation (note).
#[derive(Debug, Clone, Serialize)]
pub struct TextOnly<'a> {
    pub text: Text<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Participant<'a> {
    #[serde(rename = "type")]
    pub type_: Vec<CodeableConcept<'a>>,
    pub individual: Reference<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Location<'a> {
    pub location: Reference<'a>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension<'a>>,
}

/// FHIR Extension: a URL and one value, or nested extensions (the forms
/// the mapper emits).
#[derive(Debug, Clone)]
pub struct Extension<'a> {
    pub url: &'static str,
    pub value: ExtensionValue<'a>,
}

impl<'a> Extension<'a> {
    pub fn new(url: &'static str, value: ExtensionValue<'a>) -> Self {
        Self { url, value }
    }
}

#[derive(Debug, Clone)]
pub enum ExtensionValue<'a> {
    String(Text<'a>),
    DateTime(String),
    Coding(Coding<'a>),
    CodeableConcept(CodeableConcept<'a>),
    Attachment(Attachment<'a>),
    Reference(Reference<'a>),
    Address(Address<'a>),
    ContactPoint(ContactPoint<'a>),
    /// A complex extension (citizenship, nationality): no value of its own.
    Nested(Vec<Extension<'a>>),
}

impl Serialize for Extension<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut e = s.serialize_struct("Extension", 2)?;
        // Nested extensions come first, as in the schemas that have them.
        if let ExtensionValue::Nested(v) = &self.value {
            e.serialize_field("extension", v)?;
        }
        e.serialize_field("url", self.url)?;
        match &self.value {
            ExtensionValue::Nested(_) => {}
            ExtensionValue::String(v) => e.serialize_field("valueString", v)?,
            ExtensionValue::Address(v) => e.serialize_field("valueAddress", v)?,
            ExtensionValue::ContactPoint(v) => e.serialize_field("valueContactPoint", v)?,
            ExtensionValue::DateTime(v) => e.serialize_field("valueDateTime", v)?,
            ExtensionValue::Coding(v) => e.serialize_field("valueCoding", v)?,
            ExtensionValue::CodeableConcept(v) => e.serialize_field("valueCodeableConcept", v)?,
            ExtensionValue::Attachment(v) => e.serialize_field("valueAttachment", v)?,
            ExtensionValue::Reference(v) => e.serialize_field("valueReference", v)?,
        }
        e.end()
    }
}

/// FHIR Attachment (IG ED[Attachment], RP[Attachment]).
#[derive(Debug, Clone, Serialize)]
pub struct Attachment<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension<'a>>,
    #[serde(rename = "contentType", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<Text<'a>>,
    /// base64Binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Text<'a>>,
}

/// The extensions of a primitive element (`_status` in FHIR JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Element<'a> {
    pub extension: Vec<Extension<'a>>,
}

/// FHIR Narrative: `div` is XHTML with the text escaped.
#[derive(Debug, Clone, Serialize)]
pub struct Narrative {
    pub status: &'static str,
    pub div: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hospitalization<'a> {
    #[serde(rename = "admitSource", skip_serializing_if = "Option::is_none")]
    pub admit_source: Option<CodeableConcept<'a>>,
    #[serde(
        rename = "dischargeDisposition",
        skip_serializing_if = "Option::is_none"
    )]
    pub discharge_disposition: Option<CodeableConcept<'a>>,
    #[serde(
        rename = "preAdmissionIdentifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub pre_admission_identifier: Option<Identifier<'a>>,
    #[serde(rename = "reAdmission", skip_serializing_if = "Option::is_none")]
    pub re_admission: Option<CodeableConcept<'a>>,
    #[serde(rename = "dietPreference", skip_serializing_if = "Vec::is_empty")]
    pub diet_preference: Vec<CodeableConcept<'a>>,
    #[serde(rename = "specialCourtesy", skip_serializing_if = "Vec::is_empty")]
    pub special_courtesy: Vec<CodeableConcept<'a>>,
    #[serde(rename = "specialArrangement", skip_serializing_if = "Vec::is_empty")]
    pub special_arrangement: Vec<CodeableConcept<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Reference<'a>>,
}

impl Hospitalization<'_> {
    pub fn is_empty(&self) -> bool {
        self.admit_source.is_none()
            && self.discharge_disposition.is_none()
            && self.pre_admission_identifier.is_none()
            && self.re_admission.is_none()
            && self.diet_preference.is_empty()
            && self.special_courtesy.is_empty()
            && self.special_arrangement.is_empty()
            && self.destination.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Encounter<'a> {
    #[serde(rename = "resourceType")]
    pub resource_type: &'static str,
    pub id: Text<'a>,
    /// The message's meta, owned when PV2-22 adds a security label.
    pub meta: Cow<'a, Meta<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier<'a>>,
    pub status: Text<'a>,
    pub class: Coding<'a>,
    #[serde(rename = "type", skip_serializing_if = "Vec::is_empty")]
    pub type_: Vec<CodeableConcept<'a>>,
    #[serde(rename = "serviceType", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<CodeableConcept<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a Reference<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub participant: Vec<Participant<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub location: Vec<Location<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hospitalization: Option<Hospitalization<'a>>,
    // Elements added in schema version 2, after the first version's (the
    // Avro schema's field order, which is also the member order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Narrative>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<CodeableConcept<'a>>,
    #[serde(rename = "episodeOfCare", skip_serializing_if = "Vec::is_empty")]
    pub episode_of_care: Vec<Reference<'a>>,
    /// Duration, in days (IG NM[Quantity-LengthOfStay]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<Quantity<'a>>,
    #[serde(rename = "reasonCode", skip_serializing_if = "Vec::is_empty")]
    pub reason_code: Vec<CodeableConcept<'a>>,
}

/// Observation.value[x] (and component.value[x]): one of these, by OBX-2.
#[derive(Debug, Clone)]
pub enum ObsValue<'a> {
    Quantity(Quantity<'a>),
    CodeableConcept(CodeableConcept<'a>),
    String(Text<'a>),
    Range(Range<'a>),
    Ratio(Ratio<'a>),
    Time(String),
    DateTime(String),
}

impl ObsValue<'_> {
    /// The member name, e.g. `valueQuantity`.
    pub fn key(&self) -> &'static str {
        match self {
            ObsValue::Quantity(_) => "valueQuantity",
            ObsValue::CodeableConcept(_) => "valueCodeableConcept",
            ObsValue::String(_) => "valueString",
            ObsValue::Range(_) => "valueRange",
            ObsValue::Ratio(_) => "valueRatio",
            ObsValue::Time(_) => "valueTime",
            ObsValue::DateTime(_) => "valueDateTime",
        }
    }
}

impl Serialize for ObsValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ObsValue::Quantity(v) => v.serialize(s),
            ObsValue::CodeableConcept(v) => v.serialize(s),
            ObsValue::String(v) => v.serialize(s),
            ObsValue::Range(v) => v.serialize(s),
            ObsValue::Ratio(v) => v.serialize(s),
            ObsValue::Time(v) | ObsValue::DateTime(v) => v.serialize(s),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub id: Text<'a>,
    pub meta: &'a Meta<'a>,
    pub extension: Vec<Extension<'a>>,
    pub identifier: Vec<Identifier<'a>>,
    pub status: Text<'a>,
    /// `_status`: OBX-11 `X` as an alternate code.
    pub status_element: Option<Element<'a>>,
    pub category: Vec<CodeableConcept<'a>>,
    pub code: CodeableConcept<'a>,
    pub subject: Option<&'a Reference<'a>>,
    pub encounter: Option<Reference<'a>>,
    pub effective_date_time: Option<String>,
    pub performer: Vec<Reference<'a>>,
    /// None, one value (value[x]), or several: components that share `code`.
    pub values: Vec<ObsValue<'a>>,
    pub data_absent_reason: Option<CodeableConcept<'a>>,
    pub interpretation: Vec<CodeableConcept<'a>>,
    pub reference_range: Vec<TextOnly<'a>>,
    pub note: Vec<TextOnly<'a>>,
    pub body_site: Option<CodeableConcept<'a>>,
    pub method: Option<CodeableConcept<'a>>,
    pub specimen: Option<Reference<'a>>,
    pub device: Option<Reference<'a>>,
}

/// Observation.component: the observation's code with one value.
struct Components<'r, 'a> {
    code: &'r CodeableConcept<'a>,
    values: &'r [ObsValue<'a>],
}

impl Serialize for Components<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct One<'r, 'a>(&'r CodeableConcept<'a>, &'r ObsValue<'a>);
        impl Serialize for One<'_, '_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut c = s.serialize_struct("Observation_Component", 2)?;
                c.serialize_field("code", self.0)?;
                c.serialize_field(self.1.key(), self.1)?;
                c.end()
            }
        }
        let mut seq = s.serialize_seq(Some(self.values.len()))?;
        for v in self.values {
            seq.serialize_element(&One(self.code, v))?;
        }
        seq.end()
    }
}

impl Serialize for Observation<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("Observation", 22)?;
        o.serialize_field("resourceType", "Observation")?;
        o.serialize_field("id", &self.id)?;
        o.serialize_field("meta", self.meta)?;
        o.serialize_field("status", &self.status)?;
        o.serialize_field("code", &self.code)?;
        if let Some(subject) = self.subject {
            o.serialize_field("subject", subject)?;
        }
        if let Some(e) = &self.encounter {
            o.serialize_field("encounter", e)?;
        }
        if let Some(e) = &self.effective_date_time {
            o.serialize_field("effectiveDateTime", e)?;
        }
        if !self.performer.is_empty() {
            o.serialize_field("performer", &self.performer)?;
        }
        match self.values.as_slice() {
            [] => {} // FHIR allows an Observation without value[x]
            [v] => o.serialize_field(v.key(), v)?,
            values => o.serialize_field(
                "component",
                &Components {
                    code: &self.code,
                    values,
                },
            )?,
        }
        if !self.interpretation.is_empty() {
            o.serialize_field("interpretation", &self.interpretation)?;
        }
        if !self.reference_range.is_empty() {
            o.serialize_field("referenceRange", &self.reference_range)?;
        }
        if !self.note.is_empty() {
            o.serialize_field("note", &self.note)?;
        }
        // Elements added in schema version 2, after the first version's.
        if !self.extension.is_empty() {
            o.serialize_field("extension", &self.extension)?;
        }
        if !self.identifier.is_empty() {
            o.serialize_field("identifier", &self.identifier)?;
        }
        if let Some(e) = &self.status_element {
            o.serialize_field("_status", e)?;
        }
        if !self.category.is_empty() {
            o.serialize_field("category", &self.category)?;
        }
        if let Some(d) = &self.data_absent_reason {
            o.serialize_field("dataAbsentReason", d)?;
        }
        for (key, v) in [("bodySite", &self.body_site), ("method", &self.method)] {
            if let Some(v) = v {
                o.serialize_field(key, v)?;
            }
        }
        for (key, v) in [("specimen", &self.specimen), ("device", &self.device)] {
            if let Some(v) = v {
                o.serialize_field(key, v)?;
            }
        }
        o.end()
    }
}

/// One mapped resource.
#[derive(Debug, Clone)]
pub enum Resource<'a> {
    Encounter(Encounter<'a>),
    Observation(Observation<'a>),
    Patient(Patient<'a>),
    DiagnosticReport(DiagnosticReport<'a>),
    ServiceRequest(ServiceRequest<'a>),
    Specimen(Specimen<'a>),
}

impl Resource<'_> {
    /// FHIR `resourceType`.
    pub fn resource_type(&self) -> &'static str {
        match self {
            Resource::Encounter(_) => "Encounter",
            Resource::Observation(_) => "Observation",
            Resource::Patient(_) => "Patient",
            Resource::DiagnosticReport(_) => "DiagnosticReport",
            Resource::ServiceRequest(_) => "ServiceRequest",
            Resource::Specimen(_) => "Specimen",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Resource::Encounter(e) => &e.id,
            Resource::Observation(o) => &o.id,
            Resource::Patient(p) => &p.id,
            Resource::DiagnosticReport(r) => &r.id,
            Resource::ServiceRequest(r) => &r.id,
            Resource::Specimen(r) => &r.id,
        }
    }

    /// The resource as FHIR JSON (what [`super::Mapper::map`] returns).
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

impl Serialize for Resource<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Resource::Encounter(e) => e.serialize(s),
            Resource::Observation(o) => o.serialize(s),
            Resource::Patient(p) => p.serialize(s),
            Resource::DiagnosticReport(r) => r.serialize(s),
            Resource::ServiceRequest(r) => r.serialize(s),
            Resource::Specimen(r) => r.serialize(s),
        }
    }
}
