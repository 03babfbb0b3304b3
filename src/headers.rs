//! Every record header name, in one place.
//!
//! Values never contain message content beyond MSH routing fields (which are
//! not PHI), coordinates and counts.

// Written by the listener on every raw record.
pub const MESSAGE_TYPE: &str = "hl7.message_type";
pub const TRIGGER_EVENT: &str = "hl7.trigger_event";
pub const MESSAGE_STRUCTURE: &str = "hl7.message_structure";
pub const CONTROL_ID: &str = "hl7.control_id";
pub const VERSION: &str = "hl7.version";
pub const PROCESSING_ID: &str = "hl7.processing_id";
pub const CHARSET: &str = "hl7.charset";
pub const SENDING_APPLICATION: &str = "hl7.sending_application";
pub const SENDING_FACILITY: &str = "hl7.sending_facility";
pub const RECEIVING_APPLICATION: &str = "hl7.receiving_application";
pub const RECEIVING_FACILITY: &str = "hl7.receiving_facility";
pub const PATIENT_KEY_MISSING: &str = "hl7.patient_key_missing";
pub const RECEIVED_AT: &str = "bridge.received_at";
pub const LISTENER: &str = "bridge.listener";
pub const PEER: &str = "bridge.peer";
/// Subject of the verified client certificate (mTLS connections only).
pub const CLIENT_CERT: &str = "bridge.client_cert";

// Dead letters, raw and FHIR: why, without content.
pub const ERROR_CODE: &str = "error.code";
pub const ERROR_REASON: &str = "error.reason";
pub const TRUNCATED: &str = "dlq.truncated";
/// On the stage's dead letter of one segment (a partial outcome): its name
/// (`OBX`) and its 1-based position among the message's segments of that name.
pub const ERROR_SEGMENT: &str = "error.segment";
pub const ERROR_SEGMENT_INDEX: &str = "error.segment_index";

// Provenance on every output of the stage.
pub const SOURCE_TOPIC: &str = "source.topic";
pub const SOURCE_PARTITION: &str = "source.partition";
pub const SOURCE_OFFSET: &str = "source.offset";
/// Ordinal of this output among the outputs of its input record.
pub const SOURCE_INDEX: &str = "source.index";
/// How many outputs its input record has.
pub const SOURCE_COUNT: &str = "source.count";
pub const RESOURCE_TYPE: &str = "fhir.resource_type";
pub const RESOURCE_ID: &str = "fhir.id";

// The Kafka stage's recovery state, on outputs (see `stage::kafka::recovery`).
/// `topic:offset,...`: the input offsets this output partition covers.
pub const COVERED: &str = "source.covered";
/// `topic:offset:index,...`: records whose outputs to this topic a
/// recovered tail showed written only through `index`.
pub const PARTIAL: &str = "source.partial";
