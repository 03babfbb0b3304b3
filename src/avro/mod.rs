//! Avro for the transform's FHIR output: the schemas (`schemas/*.avsc`), a
//! lossless FHIR JSON ⇄ Avro converter, and the Confluent wire format.
//!
//! The schemas are the contract registered with the schema registry, so the
//! converter is driven by them rather than by per-field code: an element the
//! schema lacks is an error, never silently dropped. `decode(encode(r)) == r`
//! holds for every resource `encode` accepts, member order included.
//!
//! Errors name JSON paths and types only, never values: values are patient data.

mod convert;
mod decimal;
mod fast;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::Schema;

use fast::Plan;

pub use convert::{to_avro, to_fhir};
pub use decimal::{PRECISION_URL, TEXT_URL};

/// The registered text of the Encounter schema (record `fhir.Encounter`).
pub const ENCOUNTER_AVSC: &str = include_str!("../../schemas/fhir.Encounter.avsc");
/// The registered text of the Observation schema (record `fhir.Observation`).
pub const OBSERVATION_AVSC: &str = include_str!("../../schemas/fhir.Observation.avsc");
/// The registered text of the Patient schema (record `fhir.Patient`).
pub const PATIENT_AVSC: &str = include_str!("../../schemas/fhir.Patient.avsc");
/// The registered text of the DiagnosticReport schema (record `fhir.DiagnosticReport`).
pub const DIAGNOSTIC_REPORT_AVSC: &str = include_str!("../../schemas/fhir.DiagnosticReport.avsc");
/// The registered text of the ServiceRequest schema (record `fhir.ServiceRequest`).
pub const SERVICE_REQUEST_AVSC: &str = include_str!("../../schemas/fhir.ServiceRequest.avsc");
/// The registered text of the Specimen schema (record `fhir.Specimen`).
pub const SPECIMEN_AVSC: &str = include_str!("../../schemas/fhir.Specimen.avsc");

/// Every resource type the transform emits, with its schema text. Its
/// topic (`topics::FhirTopics`) and registry subject follow from the name.
pub const RESOURCE_SCHEMAS: &[(&str, &str)] = &[
    ("Encounter", ENCOUNTER_AVSC),
    ("Observation", OBSERVATION_AVSC),
    ("Patient", PATIENT_AVSC),
    ("DiagnosticReport", DIAGNOSTIC_REPORT_AVSC),
    ("ServiceRequest", SERVICE_REQUEST_AVSC),
    ("Specimen", SPECIMEN_AVSC),
];

/// Length of the Confluent wire-format header: magic byte 0, then the
/// registry's schema id as a big-endian u32.
pub const WIRE_HEADER_LEN: usize = 5;

/// Why a resource or datum could not be converted. Messages carry JSON
/// paths (`Observation.component[1].valueFoo`), Avro/JSON type names and
/// sizes only: never a value, since values are patient data.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("{path}: not in the Avro schema")]
    UnknownMember { path: String },
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{path}: required element is missing")]
    Missing { path: String },
    /// FHIR JSON has no nulls, empty arrays or empty objects; accepting them
    /// would make the round trip lossy (they come back absent).
    #[error("{path}: null, empty array or empty object (not allowed in FHIR JSON)")]
    Empty { path: String },
    /// Not JSON number text, beyond a double's range, or a `_<name>`
    /// companion that does not rebuild the number (`avro::decimal`).
    #[error("{path}: not a FHIR decimal an Avro double and its _value companion hold")]
    Decimal { path: String },
    #[error("resourceType does not match schema {schema}")]
    ResourceType { schema: String },
    /// The schema uses a construct the converter does not map (content-free).
    #[error("schema {0}")]
    Schema(String),
    /// apache-avro's own message is dropped: it can quote the value.
    #[error("Avro value does not match schema {schema}")]
    Encode { schema: String },
    /// apache-avro's own message is dropped: it can quote the bytes read.
    #[error("Avro datum cannot be read with schema {schema}")]
    Decode { schema: String },
    #[error("{0} bytes left over after the Avro datum")]
    TrailingBytes(usize),
    #[error("wire format: {0} bytes is shorter than the {WIRE_HEADER_LEN}-byte header")]
    WireTooShort(usize),
    #[error("wire format: magic byte is {0:#04x}, expected 0x00")]
    WireMagic(u8),
}

/// The parsed builtin schemas, one per resource type the transform emits,
/// each also compiled once for [`Encoder`].
#[derive(Debug, Clone)]
pub struct FhirSchemas {
    pub encounter: Schema,
    pub observation: Schema,
    encounter_plan: Plan,
    observation_plan: Plan,
    /// Patient, DiagnosticReport, ServiceRequest and Specimen, by type.
    others: Vec<(&'static str, Schema, Plan)>,
}

impl FhirSchemas {
    pub fn builtin() -> Self {
        // Compiled-in text, checked by tests/avro_roundtrip.rs; failing here is a build defect.
        let encounter =
            Schema::parse_str(ENCOUNTER_AVSC).expect("shipped schemas/fhir.Encounter.avsc parses");
        let observation = Schema::parse_str(OBSERVATION_AVSC)
            .expect("shipped schemas/fhir.Observation.avsc parses");
        let others = RESOURCE_SCHEMAS[2..]
            .iter()
            .map(|&(kind, text)| {
                let schema = Schema::parse_str(text).expect("shipped schemas/*.avsc parse");
                let plan = compile(&schema).expect("shipped schemas compile");
                (kind, schema, plan)
            })
            .collect();
        Self {
            encounter_plan: compile(&encounter).expect("shipped Encounter schema compiles"),
            observation_plan: compile(&observation).expect("shipped Observation schema compiles"),
            encounter,
            observation,
            others,
        }
    }

    /// The schema for a FHIR `resourceType`, if the transform emits that type.
    pub fn for_resource(&self, resource_type: &str) -> Option<&Schema> {
        self.encoder(resource_type).map(|e| e.schema)
    }

    /// The encoder for a FHIR `resourceType`, if the transform emits that type.
    pub fn encoder(&self, resource_type: &str) -> Option<Encoder<'_>> {
        let (schema, plan) = match resource_type {
            "Encounter" => (&self.encounter, &self.encounter_plan),
            "Observation" => (&self.observation, &self.observation_plan),
            other => self
                .others
                .iter()
                .find(|(kind, ..)| *kind == other)
                .map(|(_, schema, plan)| (schema, plan))?,
        };
        Some(Encoder { schema, plan })
    }
}

/// A schema compiled for writing: named types resolved once, then every
/// resource encoded straight from its JSON to Avro binary.
#[derive(Debug, Clone, Copy)]
pub struct Encoder<'a> {
    schema: &'a Schema,
    plan: &'a Plan,
}

impl Encoder<'_> {
    pub fn schema(&self) -> &Schema {
        self.schema
    }

    /// [`encode`] with the compiled schema.
    pub fn encode(&self, resource: &serde_json::Value) -> Result<Vec<u8>, AvroError> {
        let mut out = Vec::new();
        self.encode_into(resource, &mut out)?;
        Ok(out)
    }

    /// Appends the datum to `out` (e.g. after a [`wire_header`]); on an
    /// error `out` is left as it was.
    pub fn encode_into(
        &self,
        resource: &serde_json::Value,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        let start = out.len();
        self.plan
            .encode_into(resource, out)
            .map_err(|fast::Mismatch| {
                out.truncate(start);
                explain_mismatch(self.schema, resource)
            })
    }
}

impl Encoder<'_> {
    /// [`Encoder::encode_into`] for a resource that is not JSON yet (the
    /// mapper's typed resources): the datum is written straight from it,
    /// with the same bytes and the same errors as encoding its JSON
    /// (`serde_json::to_value`). What the direct walk does not take (members
    /// out of schema order, say) goes through the JSON, so nothing differs.
    pub fn encode_resource_into<T: serde::Serialize + ?Sized>(
        &self,
        resource_type: &str,
        resource: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        let start = out.len();
        if self
            .plan
            .encode_serialize(resource_type, resource, out)
            .is_ok()
        {
            return Ok(());
        }
        out.truncate(start);
        let json = serde_json::to_value(resource).map_err(|_| AvroError::Encode {
            schema: schema_name(self.schema),
        })?;
        self.encode_into(&json, out)
    }
}

/// A FHIR resource as an Avro binary datum (no container header, no wire
/// header): what goes after [`wire_encode`]'s five bytes. The same bytes as
/// `apache_avro::to_avro_datum` (deprecated in 0.22 for `GenericDatumWriter`)
/// over [`to_avro`]'s value, written directly from the JSON. This compiles
/// `schema` on every call: to encode many resources, use
/// [`FhirSchemas::encoder`].
pub fn encode(schema: &Schema, resource: &serde_json::Value) -> Result<Vec<u8>, AvroError> {
    let plan = compile(schema)?;
    Encoder {
        schema,
        plan: &plan,
    }
    .encode(resource)
}

fn compile(schema: &Schema) -> Result<Plan, AvroError> {
    let resolved = resolve(schema)?;
    if !matches!(schema, Schema::Record(_)) {
        return Err(AvroError::Schema(format!(
            "{}: top level is not a record",
            schema_name(schema)
        )));
    }
    Ok(Plan::compile(schema, resolved.get_names()))
}

/// Why `resource` does not fit `schema`: the direct encoder tracks no path,
/// so the value-building walk (same acceptance rules) is run to name it.
#[cold]
fn explain_mismatch(schema: &Schema, resource: &serde_json::Value) -> AvroError {
    match resolve(schema)
        .and_then(|r| convert::to_avro_resolved(schema, r.get_names(), resource).map(drop))
    {
        Err(e) => e,
        // Not reachable while both walks apply the same rules; never silent.
        Ok(()) => AvroError::Encode {
            schema: schema_name(schema),
        },
    }
}

/// The inverse of [`encode`] (`from_avro_datum`, deprecated in 0.22, then
/// [`to_fhir`]). The whole buffer must be one datum: trailing bytes mean the
/// writer schema was not the one given.
pub fn decode(schema: &Schema, bytes: &[u8]) -> Result<serde_json::Value, AvroError> {
    let resolved = resolve(schema)?;
    let decode_err = || AvroError::Decode {
        schema: schema_name(schema),
    };
    let mut rest = bytes;
    let value = GenericDatumReader::builder(schema)
        .resolved_writer_schemata(resolved.clone())
        .build()
        .map_err(|_| decode_err())?
        .read_value(&mut rest)
        .map_err(|_| decode_err())?;
    if !rest.is_empty() {
        return Err(AvroError::TrailingBytes(rest.len()));
    }
    convert::to_fhir_resolved(schema, resolved.get_names(), &value)
}

/// Confluent wire format: magic byte 0, the schema id (big-endian), the datum.
pub fn wire_encode(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(WIRE_HEADER_LEN + datum.len());
    out.extend_from_slice(&wire_header(schema_id));
    out.extend_from_slice(datum);
    out
}

/// The five bytes [`wire_encode`] puts before the datum.
pub fn wire_header(schema_id: u32) -> [u8; WIRE_HEADER_LEN] {
    let [a, b, c, d] = schema_id.to_be_bytes();
    [0, a, b, c, d]
}

/// Splits a Confluent wire-format record into its schema id and datum.
pub fn wire_decode(bytes: &[u8]) -> Result<(u32, &[u8]), AvroError> {
    let Some((&[magic, a, b, c, d], datum)) = bytes.split_first_chunk::<WIRE_HEADER_LEN>() else {
        return Err(AvroError::WireTooShort(bytes.len()));
    };
    if magic != 0 {
        return Err(AvroError::WireMagic(magic));
    }
    Ok((u32::from_be_bytes([a, b, c, d]), datum))
}

fn resolve(schema: &Schema) -> Result<ResolvedSchema<'_>, AvroError> {
    ResolvedSchema::try_from(schema).map_err(|_| {
        AvroError::Schema(format!(
            "{}: named types do not resolve",
            schema_name(schema)
        ))
    })
}

/// The schema's full name (`fhir.Encounter`), for content-free messages.
fn schema_name(schema: &Schema) -> String {
    schema
        .name()
        .map(|n| n.fullname(None))
        .unwrap_or_else(|| "(unnamed)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::Mapper;

    /// The mapper's typed resources, every element included, are written by
    /// the direct walk (no detour through JSON), with the bytes of their JSON.
    #[test]
    fn typed_resources_are_encoded_directly_with_the_bytes_of_their_json() {
        let schemas = FhirSchemas::builtin();
        let mapper = Mapper::default();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "hl7") {
                continue;
            }
            for m in crate::hl7::split::split(&std::fs::read(&path).unwrap()) {
                let _ = mapper.map_with(&m, |resources, _| {
                    for r in resources {
                        let e = schemas.encoder(r.resource_type()).unwrap();
                        let mut direct = Vec::new();
                        let encoded = e.plan.encode_serialize(r.resource_type(), r, &mut direct);
                        assert!(
                            encoded.is_ok(),
                            "{}: a {} goes through JSON: {:?}",
                            path.display(),
                            r.resource_type(),
                            encoded.err()
                        );
                        assert_eq!(direct, e.encode(&r.to_json().unwrap()).unwrap());
                        checked += 1;
                    }
                });
            }
        }
        assert!(checked > 60, "{checked} resources");
    }
}
