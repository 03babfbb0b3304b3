//! The log backend: where records become durable.
//!
//! The listener only knows [`Log`]: hand it records, and the future resolves
//! once they are durable (an fsynced SQLite commit, or Kafka's `acks=all`
//! delivery report). An ACK is sent only after that future resolves `Ok`.
//! A Kafka append of several records (a batch) is not atomic: if any record
//! fails the whole frame is answered AE/CE and resent, so records that did
//! land appear twice, detectable by `hl7.control_id`.

pub mod embedded;
pub mod kafka;
pub mod partitioner;
pub mod reader;

use futures::future::BoxFuture;

use crate::record::{Position, Record};

pub use reader::{KafkaReader, LogReader, Start};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("store error: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("store commit failed: {0}")]
    Commit(String),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("store writer has stopped")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// Append records and learn when they are durable.
pub trait Log: Send + Sync + 'static {
    /// Appends all records atomically where the backend can (the embedded
    /// store commits them in one transaction). Resolves once durable.
    fn append(&self, records: Vec<Record>) -> BoxFuture<'static, Result<Vec<Position>, LogError>>;

    /// A short name for logs: "embedded" or "kafka".
    fn kind(&self) -> &'static str;
}
