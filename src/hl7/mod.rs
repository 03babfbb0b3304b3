//! HL7 v2: reading messages, keys, batches and acknowledgements, and
//! splitting files into messages.
pub mod ack;
pub mod batch;
pub mod charset;
pub mod error;
pub mod fields;
pub mod files;
pub mod message;
pub mod patient_key;
pub mod split;

pub use ack::{AckCode, AckMode, Disposition};
pub use charset::Charset;
pub use error::{ErrorCode, Reject};
pub use message::{MessageHeader, ParsedMessage, ReadOptions};
