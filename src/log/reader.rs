//! The read seam: what `topics`, `tail`, `reconcile` and `/readyz` need from
//! a log, whichever backend holds it.

use std::time::Duration;

use super::embedded::EmbeddedReader;
use super::kafka::{self, KafkaConfig};
use super::LogError;
use crate::record::{StoredRecord, TopicSummary};

/// Where reading a topic starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// After the last record present now: only what is written from now on.
    End,
}

/// Read-only access to a log.
pub trait LogReader: Send {
    /// Every topic, with its partition count and how many records it holds.
    fn topics(&self) -> Result<Vec<TopicSummary>, LogError>;

    /// The names of the topics, sorted: cheaper than [`topics`](Self::topics)
    /// where a backend must count records per partition.
    fn topic_names(&self) -> Result<Vec<String>, LogError> {
        Ok(self.topics()?.into_iter().map(|t| t.name).collect())
    }

    /// Calls `each` for the records of `topic` from `start` until it returns
    /// false or, unless `follow`, until the end of the topic. With `follow`
    /// it waits for new records.
    fn read(
        &self,
        topic: &str,
        start: Start,
        follow: bool,
        each: &mut dyn FnMut(&StoredRecord) -> bool,
    ) -> Result<(), LogError>;

    /// Calls `each` for every record of `topics` present now (the embedded
    /// store in write order across them; Kafka topic by topic, each partition
    /// in offset order) until it returns false. With `values` false a backend
    /// may leave values empty, for walks that need headers only.
    fn scan(
        &self,
        topics: &[String],
        values: bool,
        each: &mut dyn FnMut(&StoredRecord) -> bool,
    ) -> Result<(), LogError>;

    /// Whether the log answers: what `/readyz` reports.
    fn check(&self) -> Result<(), String>;
}

/// Records per page read from the embedded store.
const PAGE: usize = 500;
/// How often a following read of the embedded store looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

impl LogReader for EmbeddedReader {
    fn topics(&self) -> Result<Vec<TopicSummary>, LogError> {
        EmbeddedReader::topics(self)
    }

    fn read(
        &self,
        topic: &str,
        start: Start,
        follow: bool,
        each: &mut dyn FnMut(&StoredRecord) -> bool,
    ) -> Result<(), LogError> {
        let mut after = match start {
            Start::Beginning => 0,
            Start::End => self.last_id(topic)?,
        };
        loop {
            let page = EmbeddedReader::read(self, topic, after, PAGE)?;
            for r in &page {
                if !each(r) {
                    return Ok(());
                }
                after = r.id;
            }
            if page.is_empty() {
                if !follow {
                    return Ok(());
                }
                std::thread::sleep(FOLLOW_POLL);
            }
        }
    }

    fn scan(
        &self,
        topics: &[String],
        values: bool,
        each: &mut dyn FnMut(&StoredRecord) -> bool,
    ) -> Result<(), LogError> {
        let mut after = 0;
        loop {
            let page = if values {
                self.read_topics(topics, after, PAGE)?
            } else {
                self.read_topics_meta(topics, after, PAGE)?
            };
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id;
            for r in &page {
                if !each(r) {
                    return Ok(());
                }
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        EmbeddedReader::topics(self)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Reading Kafka with consumers that never join a group or commit.
pub struct KafkaReader {
    cfg: KafkaConfig,
}

impl KafkaReader {
    pub fn new(cfg: KafkaConfig) -> Self {
        Self { cfg }
    }
}

impl LogReader for KafkaReader {
    fn topics(&self) -> Result<Vec<TopicSummary>, LogError> {
        kafka::list_topics(&self.cfg)
    }

    fn topic_names(&self) -> Result<Vec<String>, LogError> {
        kafka::topic_names(&self.cfg)
    }

    fn read(
        &self,
        topic: &str,
        start: Start,
        follow: bool,
        each: &mut dyn FnMut(&StoredRecord) -> bool,
    ) -> Result<(), LogError> {
        kafka::tail(&self.cfg, topic, start == Start::Beginning, follow, |r| {
            each(&r)
        })
    }

    fn scan(
        &self,
        topics: &[String],
        _values: bool,
        each: &mut dyn FnMut(&StoredRecord) -> bool,
    ) -> Result<(), LogError> {
        let existing = self.topic_names()?;
        for topic in topics.iter().filter(|t| existing.contains(t)) {
            let mut stopped = false;
            kafka::tail(&self.cfg, topic, true, false, |r| {
                stopped = !each(&r);
                !stopped
            })?;
            if stopped {
                break;
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        use rdkafka::consumer::Consumer;
        let c = kafka::reader(&self.cfg, "readyz").map_err(|e| e.to_string())?;
        c.fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| format!("broker not reachable: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::embedded::{EmbeddedConfig, EmbeddedLog};
    use crate::log::Log;
    use crate::record::Record;

    fn rec(topic: &str, value: &'static [u8]) -> Record {
        Record {
            topic: topic.into(),
            key: Some("k".into()),
            partition: None,
            headers: vec![("h".into(), "v".into())],
            timestamp_ms: 1,
            value: bytes::Bytes::from_static(value),
        }
    }

    fn values(reader: &dyn LogReader, topic: &str, start: Start) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        reader
            .read(topic, start, false, &mut |r| {
                out.push(r.value.to_vec());
                true
            })
            .unwrap();
        out
    }

    #[tokio::test]
    async fn the_embedded_reader_reads_from_either_end_and_scans_in_write_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap();
        log.append(vec![rec("a", b"1"), rec("b", b"2"), rec("a", b"3")])
            .await
            .unwrap();
        let reader: Box<dyn LogReader> = Box::new(EmbeddedReader::open(dir.path()).unwrap());
        assert_eq!(values(&*reader, "a", Start::Beginning), [b"1", b"3"]);
        assert!(
            values(&*reader, "a", Start::End).is_empty(),
            "nothing after the end"
        );

        let topics = ["a".to_owned(), "b".to_owned()];
        let mut seen = Vec::new();
        reader
            .scan(&topics, false, &mut |r| {
                seen.push((r.topic.clone(), r.value.len(), r.headers.len()));
                true
            })
            .unwrap();
        assert_eq!(
            seen,
            [("a".into(), 0, 1), ("b".into(), 0, 1), ("a".into(), 0, 1)],
            "write order across topics; headers without values"
        );
        let mut first = 0;
        reader
            .scan(&topics, true, &mut |_| {
                first += 1;
                false
            })
            .unwrap();
        assert_eq!(first, 1, "a scan stops when told to");
        assert_eq!(reader.topics().unwrap().len(), 2);
        assert_eq!(reader.check(), Ok(()));
        log.close();
    }
}
