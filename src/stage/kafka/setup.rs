//! Before consuming: topics and their partition counts, the producer and
//! the consumers.

use super::*;

impl KafkaStage {
    /// Creates missing topics and checks that outputs are co-partitioned with inputs.
    pub(super) async fn layout(&self) -> Result<Layout, StageError> {
        let kafka = self.kafka.clone();
        let existing = tokio::task::spawn_blocking(move || kafka_log::list_topics(&kafka))
            .await
            .map_err(|e| StageError::Setup(e.to_string()))??;
        let count = |name: &str| {
            existing
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.partitions)
        };
        let input_counts: HashSet<u32> = self.cfg.inputs.iter().filter_map(|t| count(t)).collect();
        let n = input_counts
            .iter()
            .copied()
            .max()
            .unwrap_or(self.partitions);
        let topics = self.cfg.topics();
        let missing: Vec<String> = self
            .cfg
            .inputs
            .iter()
            .map(String::as_str)
            .chain(topics.all())
            .filter(|t| count(t).is_none())
            .map(str::to_owned)
            .collect();
        if !missing.is_empty() {
            for (topic, outcome) in
                kafka_log::create_topics(&self.kafka, &missing, n, self.replication).await?
            {
                tracing::info!(%topic, partitions = n, outcome, "kafka topic checked");
            }
        }
        self.changelog_layout(count(&self.changelog), n).await?;
        let mut mismatched: Vec<String> = self
            .cfg
            .inputs
            .iter()
            .map(String::as_str)
            .chain(topics.all())
            .filter_map(|t| count(t).filter(|c| *c != n).map(|c| format!("{t} has {c}")))
            .collect();
        mismatched.sort();
        if mismatched.is_empty() {
            return Ok(Layout {
                co_partitioned: true,
            });
        }
        let what = format!(
            "input and output topics must all have {n} partitions for exactly-once ({})",
            mismatched.join(", ")
        );
        if !self.at_least_once {
            return Err(StageError::Setup(format!(
                "{what}; fix the partition counts, or run with --at-least-once"
            )));
        }
        tracing::warn!(
            "{what}; running at-least-once: outputs go by murmur2(key), ids stay deterministic"
        );
        Ok(Layout {
            co_partitioned: false,
        })
    }

    /// The dedup changelog: created (compacted) when missing, and refused
    /// when its partition count is not the inputs' `n`, whatever the
    /// delivery mode: partition p restores the window of input partition p.
    async fn changelog_layout(&self, found: Option<u32>, n: u32) -> Result<(), StageError> {
        match found {
            Some(c) if c == n => Ok(()),
            Some(c) => Err(StageError::Setup(format!(
                "the dedup changelog {} has {c} partitions but the input topics have {n}; \
                 it must match them (partition p holds input partition p's dedup window): \
                 delete it and let `hl7bridge topics create` or the stage create it again, \
                 or use another --group",
                self.changelog
            ))),
            None => {
                let settings = changelog::topic_settings(self.cfg.dedup_window);
                let settings: Vec<(&str, &str)> =
                    settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
                for (topic, outcome) in kafka_log::create_topics_with(
                    &self.kafka,
                    std::slice::from_ref(&self.changelog),
                    n,
                    self.replication,
                    &settings,
                )
                .await?
                {
                    tracing::info!(%topic, partitions = n, outcome, "kafka topic checked");
                }
                Ok(())
            }
        }
    }

    pub(super) fn producer(&self) -> Result<FutureProducer, StageError> {
        // The stage's input is durable, so it can wait out an outage: no
        // message timeout, which also keeps the gapless guarantee whole
        // (librdkafka exempts timed-out messages from it).
        let mut c = self.kafka.producer_config(Duration::from_secs(10))?;
        c.set("enable.gapless.guarantee", "true");
        c.set("message.timeout.ms", "0");
        c.set("linger.ms", "5");
        // The ACK path's single request in flight (see `producer_config`)
        // showed no gain for the stage (tried with linger.ms=0: BENCHMARKS.md,
        // issue 16), which batches by linger and catches up on backlogs: it
        // keeps librdkafka's default.
        c.set("max.in.flight.requests.per.connection", "5");
        for (k, v) in &self.kafka.properties {
            if k != "message.timeout.ms" {
                c.set(k, v);
            }
        }
        c.create()
            .map_err(|e| LogError::Kafka(e.to_string()).into())
    }

    pub(super) fn consumer(
        &self,
        producer: FutureProducer,
    ) -> Result<StreamConsumer<StageContext>, StageError> {
        let mut c: ClientConfig = self.kafka.base();
        c.set("group.id", &self.cfg.group);
        c.set("enable.auto.commit", "true");
        c.set("auto.commit.interval.ms", "1000");
        c.set("enable.auto.offset.store", "false");
        c.set("auto.offset.reset", "earliest");
        c.set("isolation.level", kafka_log::ISOLATION);
        // Partition p of every input to the same member (see the module doc).
        c.set("partition.assignment.strategy", "range");
        // Tansu 0.6 holds every fetch for the full wait even when records are
        // there (the default 500 ms gave a 2.4 s end-to-end p50 at 50 msg/s;
        // 10 ms gave 14 ms). On Kafka the broker answers as soon as data
        // arrives, so a short wait only costs idle fetches. `-X` overrides it.
        if !self.kafka.properties.contains_key("fetch.wait.max.ms") {
            c.set("fetch.wait.max.ms", "10");
        }
        let ctx = StageContext {
            producer,
            revoked: Mutex::new(Vec::new()),
            flush_failed: AtomicBool::new(false),
        };
        c.create_with_context(ctx)
            .map_err(|e| LogError::Kafka(e.to_string()).into())
    }

    /// A reader for output tails and the dedup changelog: never commits,
    /// reports partition ends. Short fetch waits, as for the consumer: Tansu
    /// holds each fetch for the full wait, and recovery reads to the end.
    pub(super) fn tail_reader(&self) -> Result<BaseConsumer, StageError> {
        Ok(kafka_log::reader_with(
            &self.kafka,
            "recovery",
            &[("fetch.wait.max.ms", "10")],
        )?)
    }
}
