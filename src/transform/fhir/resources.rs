//! Patient, DiagnosticReport, ServiceRequest and Specimen, and the datatypes
//! only they use. Members are in the order of their Avro schemas
//! (`schemas/fhir.<Type>.avsc`), so the direct encoder takes them as they come.

use serde::Serialize;

use super::{
    Attachment, CodeableConcept, Element, Extension, Identifier, Meta, Period, Quantity, Reference,
    Text, TextOnly,
};

#[derive(Debug, Clone, Serialize)]
pub struct HumanName<'a> {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<Text<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<Text<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suffix: Vec<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Address<'a> {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub line: Vec<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Text<'a>>,
    #[serde(rename = "postalCode", skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactPoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Text<'a>>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PatientCommunication<'a> {
    pub language: CodeableConcept<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PatientLink<'a> {
    pub other: Reference<'a>,
    /// `replaces` or `replaced-by`.
    #[serde(rename = "type")]
    pub type_: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Patient<'a> {
    #[serde(rename = "resourceType")]
    pub resource_type: &'static str,
    pub id: Text<'a>,
    pub meta: &'a Meta<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub telecom: Vec<ContactPoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<&'static str>,
    #[serde(rename = "birthDate", skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    #[serde(rename = "_birthDate", skip_serializing_if = "Option::is_none")]
    pub birth_date_ext: Option<Element<'a>>,
    #[serde(rename = "deceasedBoolean", skip_serializing_if = "Option::is_none")]
    pub deceased_boolean: Option<bool>,
    #[serde(rename = "deceasedDateTime", skip_serializing_if = "Option::is_none")]
    pub deceased_date_time: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<Address<'a>>,
    #[serde(rename = "maritalStatus", skip_serializing_if = "Option::is_none")]
    pub marital_status: Option<CodeableConcept<'a>>,
    #[serde(
        rename = "multipleBirthBoolean",
        skip_serializing_if = "Option::is_none"
    )]
    pub multiple_birth_boolean: Option<bool>,
    #[serde(
        rename = "multipleBirthInteger",
        skip_serializing_if = "Option::is_none"
    )]
    pub multiple_birth_integer: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub communication: Vec<PatientCommunication<'a>>,
    #[serde(rename = "generalPractitioner", skip_serializing_if = "Vec::is_empty")]
    pub general_practitioner: Vec<Reference<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<PatientLink<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiagnosticReport<'a> {
    #[serde(rename = "resourceType")]
    pub resource_type: &'static str,
    pub id: Text<'a>,
    pub meta: &'a Meta<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier<'a>>,
    #[serde(rename = "basedOn", skip_serializing_if = "Vec::is_empty")]
    pub based_on: Vec<Reference<'a>>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept<'a>>,
    pub code: CodeableConcept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference<'a>>,
    #[serde(rename = "effectiveDateTime", skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    #[serde(rename = "effectivePeriod", skip_serializing_if = "Option::is_none")]
    pub effective_period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub performer: Vec<Reference<'a>>,
    #[serde(rename = "resultsInterpreter", skip_serializing_if = "Vec::is_empty")]
    pub results_interpreter: Vec<Reference<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub specimen: Vec<Reference<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub result: Vec<Reference<'a>>,
    /// IG OBX-5 ED: an encapsulated report (a PDF) is also the report's
    /// presented form.
    #[serde(rename = "presentedForm", skip_serializing_if = "Vec::is_empty")]
    pub presented_form: Vec<Attachment<'a>>,
    /// IG ORC-16: the order control's reason (event-statusReason). Last,
    /// as in the schema, which gained it in version 2.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceRequest<'a> {
    #[serde(rename = "resourceType")]
    pub resource_type: &'static str,
    pub id: Text<'a>,
    pub meta: &'a Meta<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier<'a>>,
    #[serde(rename = "basedOn", skip_serializing_if = "Vec::is_empty")]
    pub based_on: Vec<Reference<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requisition: Option<Identifier<'a>>,
    pub status: &'static str,
    pub intent: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeableConcept<'a>>,
    #[serde(rename = "orderDetail", skip_serializing_if = "Vec::is_empty")]
    pub order_detail: Vec<CodeableConcept<'a>>,
    #[serde(rename = "quantityQuantity", skip_serializing_if = "Option::is_none")]
    pub quantity_quantity: Option<Quantity<'a>>,
    pub subject: Reference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference<'a>>,
    #[serde(rename = "occurrenceDateTime", skip_serializing_if = "Option::is_none")]
    pub occurrence_date_time: Option<String>,
    #[serde(rename = "authoredOn", skip_serializing_if = "Option::is_none")]
    pub authored_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<Reference<'a>>,
    #[serde(rename = "locationCode", skip_serializing_if = "Vec::is_empty")]
    pub location_code: Vec<CodeableConcept<'a>>,
    #[serde(rename = "reasonCode", skip_serializing_if = "Vec::is_empty")]
    pub reason_code: Vec<CodeableConcept<'a>>,
    #[serde(rename = "supportingInfo", skip_serializing_if = "Vec::is_empty")]
    pub supporting_info: Vec<Reference<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub specimen: Vec<Reference<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<TextOnly<'a>>,
    /// IG ORC-1 and ORC-9 (businessEvent), ORC-14/OBR-17 (order callback
    /// phone), ORC-16 (request-statusReason). Last, as in the schema, which
    /// gained it in version 2.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension<'a>>,
    /// IG TQ1[ServiceRequest]: when the order's TQ1 says when, that is the
    /// occurrence (and `occurrenceDateTime` is left out).
    #[serde(rename = "occurrenceTiming", skip_serializing_if = "Option::is_none")]
    /// Boxed: most orders have none, and it would make ServiceRequest the
    /// one large variant of `Resource`.
    pub occurrence_timing: Option<Box<Timing<'a>>>,
}

/// FHIR Timing: the repeat pattern's code and the repeat's elements the IG
/// maps from TQ1.
#[derive(Debug, Clone, Serialize)]
pub struct Timing<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<TimingRepeat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeableConcept<'a>>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct TimingRepeat<'a> {
    #[serde(rename = "boundsDuration", skip_serializing_if = "Option::is_none")]
    pub bounds_duration: Option<Quantity<'a>>,
    #[serde(rename = "boundsPeriod", skip_serializing_if = "Option::is_none")]
    pub bounds_period: Option<Period>,
    #[serde(rename = "countMax", skip_serializing_if = "Option::is_none")]
    pub count_max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<serde_json::Number>,
    #[serde(rename = "durationUnit", skip_serializing_if = "Option::is_none")]
    pub duration_unit: Option<&'static str>,
    #[serde(rename = "timeOfDay", skip_serializing_if = "Vec::is_empty")]
    pub time_of_day: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

impl TimingRepeat<'_> {
    pub fn is_empty(&self) -> bool {
        self.bounds_duration.is_none()
            && self.bounds_period.is_none()
            && self.count_max.is_none()
            && self.duration.is_none()
            && self.time_of_day.is_empty()
            && self.offset.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SpecimenCollection<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collector: Option<Reference<'a>>,
    #[serde(rename = "collectedDateTime", skip_serializing_if = "Option::is_none")]
    pub collected_date_time: Option<String>,
    #[serde(rename = "collectedPeriod", skip_serializing_if = "Option::is_none")]
    pub collected_period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<CodeableConcept<'a>>,
    #[serde(rename = "bodySite", skip_serializing_if = "Option::is_none")]
    pub body_site: Option<CodeableConcept<'a>>,
}

impl SpecimenCollection<'_> {
    pub fn is_empty(&self) -> bool {
        self.collector.is_none()
            && self.collected_date_time.is_none()
            && self.collected_period.is_none()
            && self.quantity.is_none()
            && self.method.is_none()
            && self.body_site.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SpecimenContainer<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept<'a>>,
    #[serde(
        rename = "additiveCodeableConcept",
        skip_serializing_if = "Option::is_none"
    )]
    pub additive_codeable_concept: Option<CodeableConcept<'a>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Specimen<'a> {
    #[serde(rename = "resourceType")]
    pub resource_type: &'static str,
    pub id: Text<'a>,
    pub meta: &'a Meta<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier<'a>>,
    #[serde(
        rename = "accessionIdentifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub accession_identifier: Option<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference<'a>>,
    #[serde(rename = "receivedTime", skip_serializing_if = "Option::is_none")]
    pub received_time: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parent: Vec<Reference<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<SpecimenCollection<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container: Vec<SpecimenContainer<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub condition: Vec<CodeableConcept<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<TextOnly<'a>>,
}
