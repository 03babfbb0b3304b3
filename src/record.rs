//! A record, shaped like a Kafka record: what the listener appends, what
//! the stage writes, and what every reader hands back.

use bytes::Bytes;

/// A record to append.
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

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A record as read back from either backend.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The embedded store's row id: its total write order across topics.
    /// Kafka has no such order; its reader gives the offset.
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub value: Bytes,
}

/// A topic, its partition count and how many records it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub records: u64,
}

/// Reading a header by name, for anything that carries record headers:
/// [`Record`], [`StoredRecord`] and the stage's borrowed `Source`.
pub trait WithHeaders {
    fn headers(&self) -> &[(String, String)];

    /// The first header of that name. Records carry a dozen headers at most,
    /// so a scan beats building a map.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl WithHeaders for Record {
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

impl WithHeaders for StoredRecord {
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}
