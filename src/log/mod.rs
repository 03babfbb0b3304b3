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

use bytes::Bytes;
use futures::future::BoxFuture;

/// One record, shaped like a Kafka record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    /// Patient key (`<authority>|<id>`); `None` goes round-robin.
    pub key: Option<String>,
    /// A fixed partition, overriding the key: the streaming stage writes to
    /// the partition its input came from, so outputs stay co-partitioned even
    /// for records without a key.
    pub partition: Option<i32>,
    pub headers: Vec<(String, String)>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The exact bytes received.
    pub value: Bytes,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

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
