//! The consume-map-produce loop, and the Kafka stage's dedup window.

use super::recovery::*;
use super::*;
use crate::record::WithHeaders;

impl KafkaStage {
    pub(super) async fn session(
        &self,
        shutdown: &CancellationToken,
        layout: Layout,
    ) -> Result<(), StageError> {
        let producer = self.producer()?;
        let consumer = self.consumer(producer.clone())?;
        let inputs: Vec<&str> = self.cfg.inputs.iter().map(String::as_str).collect();
        consumer
            .subscribe(&inputs)
            .map_err(|e| LogError::Kafka(e.to_string()))?;
        let topics = self.cfg.topics();
        let outputs: Vec<String> = topics.all().iter().map(|s| s.to_string()).collect();
        let mut parts: HashMap<i32, PartitionState> = HashMap::new();
        // Input partitions seen since their assignment: the first record of
        // each is logged, so where a member resumed is always on record.
        let mut resumed: HashSet<(String, i32)> = HashSet::new();
        let mut pending = FuturesOrdered::new();
        std::fs::create_dir_all(&self.data_dir).map_err(LogError::Io)?;
        let mut store = DedupStore::open(&self.data_dir.join(dedup::DB_FILE)).map_err(|e| {
            StageError::Setup(format!("opening the dedup window's local copy: {e}"))
        })?;
        // The copy holds only what this session restores from the changelog
        // and writes there itself.
        store.clear().map_err(|e| {
            StageError::Setup(format!("emptying the dedup window's local copy: {e}"))
        })?;
        // Partitions whose dedup window is restored since their assignment.
        let mut restored: HashSet<i32> = HashSet::new();
        let mut dedup = Dedup {
            store,
            window: self.cfg.dedup_window,
            in_flight: HashMap::new(),
            delivered: Vec::new(),
            last_flush: std::time::Instant::now(),
        };
        tracing::info!(group = %self.cfg.group, exactly_once = layout.co_partitioned, "transform stage consuming");
        loop {
            if consumer
                .context()
                .flush_failed
                .swap(false, Ordering::SeqCst)
            {
                return Err(StageError::Setup(
                    "outputs were still in flight when partitions were revoked".into(),
                ));
            }
            if let Some(fatal) = producer.client().fatal_error() {
                return Err(StageError::Setup(format!(
                    "producer fatal error: {fatal:?}"
                )));
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                done = pending.next(), if !pending.is_empty() => {
                    let Some(done) = done else { continue };
                    let Done { topic, partition, offset, seen, result, outcome, outputs, received_at } = done;
                    if let Err(e) = result {
                        return Err(StageError::Setup(format!("output delivery failed: {e}")));
                    }
                    ev::TransformCommitted { outcome, records: 1, outputs }.emit();
                    if let Some(received_at) = &received_at {
                        ev::EndToEnd { received_at }.emit();
                    }
                    dedup.delivered(seen)?;
                    // Only an owned partition can store; a revoked one just skips.
                    let _ = store_next(&consumer, &topic, partition, offset + 1);
                }
                m = consumer.recv(), if pending.len() < MAX_PENDING => {
                    let m = m.map_err(|e| LogError::Kafka(e.to_string()))?;
                    for p in consumer.context().take_revoked() {
                        parts.remove(&p);
                        restored.remove(&p);
                        resumed.retain(|(_, q)| *q != p);
                    }
                    let partition = m.partition();
                    if resumed.insert((m.topic().to_owned(), partition)) {
                        tracing::info!(topic = m.topic(), partition, offset = m.offset(), "input partition resumed");
                    }
                    let recover_outputs = layout.co_partitioned && !parts.contains_key(&partition);
                    let restore_window = !restored.contains(&partition);
                    if recover_outputs || restore_window {
                        let state = self.take_up(partition, recover_outputs, restore_window, &outputs, &mut dedup.store)?;
                        if let Some(state) = state {
                            parts.insert(partition, state);
                        }
                        restored.insert(partition);
                    }
                    let Sent { deliveries, entry, seen, outcome, received_at } = self
                        .handle(&producer, &m, parts.get_mut(&partition), layout, &mut dedup)
                        .await?;
                    let outputs = deliveries.len() as u64;
                    let (topic, offset) = (m.topic().to_owned(), m.offset());
                    pending.push_back(async move {
                        let mut result = Ok(());
                        // The offset is stored only once the dedup entry is
                        // delivered too (see `changelog`).
                        for d in deliveries.into_iter().chain(entry) {
                            match d.await {
                                Ok(Ok(_)) => {}
                                Ok(Err((e, _))) => result = Err(e.to_string()),
                                Err(_) => result = Err("delivery canceled".to_owned()),
                            }
                        }
                        Done { topic, partition, offset, seen, result, outcome, outputs, received_at }
                    });
                }
            }
        }
        // Clean stop: deliver what is in flight, then store its offsets.
        while let Some(Done {
            topic,
            partition,
            offset,
            seen,
            result,
            ..
        }) = pending.next().await
        {
            if result.is_ok() {
                dedup.delivered(seen)?;
                let _ = store_next(&consumer, &topic, partition, offset + 1);
            }
        }
        dedup.flush()?;
        let _ = producer.flush(REVOKE_FLUSH);
        // Closing the consumer (on drop) auto-commits the *stored* offsets:
        // records whose outputs are delivered. Never commit the consumer's
        // position, which can run ahead of them.
        Ok(())
    }

    /// Before any input of a newly assigned partition: what its outputs
    /// already hold (if `recover_outputs`) and its dedup window from the
    /// changelog (if `restore_window`), read side by side.
    fn take_up(
        &self,
        partition: i32,
        recover_outputs: bool,
        restore_window: bool,
        outputs: &[String],
        store: &mut DedupStore,
    ) -> Result<Option<PartitionState>, StageError> {
        let since = crate::stage::now_ms() - self.cfg.dedup_window.as_millis() as i64;
        let (state, window) = tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                let state = recover_outputs
                    .then(|| s.spawn(|| recover(&|| self.tail_reader(), outputs, partition)));
                let window = restore_window.then(|| {
                    self.tail_reader().and_then(|r| {
                        changelog::restore(&r, &self.changelog, partition, store, since)
                    })
                });
                let state = state.map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(StageError::Setup(format!(
                            "recovery of partition {partition} failed (a reader panicked)"
                        )))
                    })
                });
                (state, window)
            })
        });
        window.transpose()?;
        state.transpose()
    }

    /// Maps one input record and sends the outputs not already written.
    pub(super) async fn handle(
        &self,
        producer: &FutureProducer,
        m: &BorrowedMessage<'_>,
        state: Option<&mut PartitionState>,
        layout: Layout,
        dedup: &mut Dedup,
    ) -> Result<Sent, StageError> {
        let headers = kafka_log::message_headers(m);
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let src = Source {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: key.as_deref(),
            headers: &headers,
            value: m.payload().unwrap_or_default(),
        };
        let seen = dedup::key(&src).map(|key| Seen {
            key,
            source: src.coordinates(),
            seen_ms: crate::stage::now_ms(),
        });
        let duplicate = match &seen {
            Some(s) => dedup.first(&s.key)?.is_some_and(|first| first != s.source),
            None => false,
        };
        let mut name = "duplicate";
        let mut records: Vec<Record> = if duplicate {
            ev::DuplicateSkipped {
                topic: src.topic,
                partition: src.partition,
                offset: src.offset,
                control_id: src.header(crate::headers::CONTROL_ID).unwrap_or(""),
            }
            .emit();
            Vec::new()
        } else {
            let outcome = self.stage.process(&src);
            if let Outcome::NoContent = outcome {
                tracing::debug!(
                    topic = src.topic,
                    partition = src.partition,
                    offset = src.offset,
                    "no FHIR content"
                );
            }
            name = outcome.name();
            outcome.into_records()
        };
        let received_at = matches!(name, "resources" | "partial")
            .then(|| src.header(crate::headers::RECEIVED_AT).map(str::to_owned))
            .flatten();
        let seen = seen.filter(|_| !duplicate);
        let mut entry = None;
        if let Some(s) = &seen {
            dedup.in_flight.insert(s.key.clone(), s.source.clone());
            let r = changelog::record(&self.changelog, src.partition, s);
            entry = Some(kafka_log::enqueue(producer, &r).await.map_err(kafka_err)?);
        }
        let mut out = Vec::with_capacity(records.len());
        match state {
            Some(state) => {
                let keep = state.advance(&src, &records);
                for (r, keep) in records.iter_mut().zip(keep) {
                    if keep {
                        r.headers
                            .push((h::COVERED.into(), state.covered_header(&r.topic)));
                        if let Some(p) = state.partial_header(&r.topic) {
                            r.headers.push((h::PARTIAL.into(), p));
                        }
                        out.push(kafka_log::enqueue(producer, r).await.map_err(kafka_err)?);
                    }
                }
                tracing::debug!(
                    topic = src.topic,
                    partition = src.partition,
                    offset = src.offset,
                    outputs = records.len(),
                    sent = out.len(),
                    "input handled"
                );
                state.complete(&src);
            }
            None => {
                debug_assert!(!layout.co_partitioned);
                for r in &mut records {
                    r.partition = None;
                    out.push(kafka_log::enqueue(producer, r).await.map_err(kafka_err)?);
                }
            }
        }
        Ok(Sent {
            deliveries: out,
            entry,
            seen,
            outcome: name,
            received_at,
        })
    }
}

/// What `handle` sent for one input record.
pub(super) struct Sent {
    pub(super) deliveries: Vec<rdkafka::producer::DeliveryFuture>,
    /// The record's dedup entry on the changelog.
    pub(super) entry: Option<rdkafka::producer::DeliveryFuture>,
    pub(super) seen: Option<Seen>,
    pub(super) outcome: &'static str,
    pub(super) received_at: Option<String>,
}

/// One input record whose outputs have all been delivered (or failed).
pub(super) struct Done {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) seen: Option<Seen>,
    pub(super) result: Result<(), String>,
    pub(super) outcome: &'static str,
    pub(super) outputs: u64,
    pub(super) received_at: Option<String>,
}

/// The Kafka stage's view of the dedup window: the local copy of what the
/// changelog holds, plus keys whose outputs and entry are still in flight (a
/// resend can arrive before they land).
pub(super) struct Dedup {
    pub(super) store: DedupStore,
    pub(super) window: Duration,
    pub(super) in_flight: HashMap<DedupKey, String>,
    pub(super) delivered: Vec<Seen>,
    pub(super) last_flush: std::time::Instant,
}

impl Dedup {
    pub(super) fn first(&self, k: &DedupKey) -> Result<Option<String>, StageError> {
        if let Some(s) = self.in_flight.get(k) {
            return Ok(Some(s.clone()));
        }
        let since = crate::stage::now_ms() - self.window.as_millis() as i64;
        self.store
            .first_seen(k, since)
            .map_err(|e| StageError::Setup(format!("reading the dedup window: {e}")))
    }

    /// The outputs and the entry of `seen`'s record are delivered: remember
    /// it in the local copy (in batches). It stays in `in_flight` until its
    /// batch is written, or a resend arriving meanwhile would find it nowhere
    /// (the failover test caught exactly that: a resend through the other
    /// bridge, a few milliseconds behind its first copy, was emitted again).
    pub(super) fn delivered(&mut self, seen: Option<Seen>) -> Result<(), StageError> {
        if let Some(s) = seen {
            self.delivered.push(s);
        }
        if self.delivered.len() >= 256 || self.last_flush.elapsed() >= Duration::from_millis(200) {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), StageError> {
        self.last_flush = std::time::Instant::now();
        if self.delivered.is_empty() {
            return Ok(());
        }
        let before = crate::stage::now_ms() - self.window.as_millis() as i64;
        self.store
            .remember(&self.delivered, Some(before))
            .map_err(|e| {
                StageError::Setup(format!("writing the dedup window's local copy: {e}"))
            })?;
        for s in self.delivered.drain(..) {
            if self.in_flight.get(&s.key) == Some(&s.source) {
                self.in_flight.remove(&s.key);
            }
        }
        Ok(())
    }
}

/// Stores `next` as the partition's offset to commit: the next record to read.
///
/// Not `Consumer::store_offset`: that wraps librdkafka's legacy
/// `rd_kafka_offset_store`, which stores its argument **+ 1**, so passing
/// `offset + 1` made every commit skip one record (a lost output whenever a
/// partition moved right after that record was stored, seen on Tansu).
pub(super) fn store_next<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    topic: &str,
    partition: i32,
    next: i64,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(next))?;
    consumer.store_offsets(&tpl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dedup(dir: &std::path::Path) -> Dedup {
        Dedup {
            store: DedupStore::open(&dir.join(dedup::DB_FILE)).unwrap(),
            window: Duration::from_secs(3600),
            in_flight: HashMap::new(),
            delivered: Vec::new(),
            last_flush: std::time::Instant::now(),
        }
    }

    fn seen() -> Seen {
        Seen {
            key: DedupKey {
                sender: "F".into(),
                control_id: "1".into(),
                digest: [7; 32],
            },
            source: "hl7v2.adt/0/3".into(),
            seen_ms: crate::stage::now_ms(),
        }
    }

    #[test]
    fn a_key_is_known_while_in_flight_delivered_but_unwritten_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dedup(dir.path());
        let s = seen();
        d.in_flight.insert(s.key.clone(), s.source.clone());
        assert_eq!(d.first(&s.key).unwrap().as_deref(), Some("hl7v2.adt/0/3"));
        d.delivered(Some(s.clone())).unwrap();
        assert_eq!(
            d.first(&s.key).unwrap().as_deref(),
            Some("hl7v2.adt/0/3"),
            "delivered, its batch not yet written"
        );
        d.flush().unwrap();
        assert!(d.in_flight.is_empty());
        assert_eq!(d.first(&s.key).unwrap().as_deref(), Some("hl7v2.adt/0/3"));
    }
}
