//! hl7bridge: an MLLP listener that answers HL7 v2 messages only after they
//! are durably stored, and keeps them as Kafka-shaped records.
//!
//! Reading the tree:
//! - [`mllp`]: the source's framing (MLLP release 2 codec)
//! - [`hl7`]: reading messages, patient keys, batches, ACKs; splitting files into messages
//! - [`intake`]: a frame in, records and an ACK plan out (pure)
//! - [`log`]: the log backends behind one trait (embedded SQLite, Kafka)
//! - [`transform`]: HL7 v2 to FHIR R4 Encounter and Observation
//! - [`stage`]: the streaming stage: raw records to Avro FHIR records, exactly once
//! - [`avro`], [`registry`]: FHIR Avro schemas and the Confluent-compatible registry
//! - [`server`]: the listener and its connections
//! - [`replay`]: the MLLP client that replays files and checks ACKs
//! - [`inspect`]: messages in files as a readable tree with their problems
//! - [`cli`]: the `hl7bridge` command

pub mod app;
pub mod avro;
pub mod cli;
pub mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod hl7;
pub mod inspect;
pub mod intake;
pub mod internal_events;
pub mod log;
pub mod metrics;
pub mod mllp;
pub mod reconcile;
pub mod record;
pub mod registry;
pub mod replay;
pub mod server;
pub mod shutdown;
pub mod stage;
pub mod telemetry;
pub mod topics;
pub mod transform;
