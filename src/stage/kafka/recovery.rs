//! Recovery: what each output partition already holds, read from its last
//! record, and which outputs are therefore already written.

use super::*;

/// What one output partition already holds, and what this process has sent to it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct OutputState {
    /// Input topic -> offset below which every record's outputs are written.
    pub(super) covered: HashMap<String, i64>,
    /// Input topic -> (offset, index): that record's outputs are written
    /// through `index`, the rest may not be. It comes from a recovered tail
    /// and is carried in every later header until the record is processed
    /// again: once other records' outputs are appended, the tail no longer
    /// says so itself.
    pub(super) partial: HashMap<String, (i64, usize)>,
}

impl OutputState {
    pub(super) fn written(&self, topic: &str, offset: i64, index: usize) -> bool {
        self.covered.get(topic).is_some_and(|c| offset < *c)
            || self
                .partial
                .get(topic)
                .is_some_and(|(o, i)| *o == offset && index <= *i)
    }

    pub(super) fn cover(&mut self, topic: &str, below: i64) {
        let c = self.covered.entry(topic.to_owned()).or_insert(0);
        *c = (*c).max(below);
        let c = *c;
        if self.partial.get(topic).is_some_and(|(o, _)| *o < c) {
            self.partial.remove(topic);
        }
    }

    /// Folds in the source of the record found at the partition's tail.
    pub(super) fn with_tail(mut self, topic: String, offset: i64, index: usize) -> Self {
        if self.covered.get(&topic).is_none_or(|c| offset >= *c) {
            self.partial.insert(topic, (offset, index));
        }
        self
    }
}

/// Recovery state of one partition number, across all output topics.
#[derive(Debug, Default)]
pub(super) struct PartitionState {
    pub(super) outputs: HashMap<String, OutputState>,
}

impl PartitionState {
    /// Which of `records` (the outputs of `src`, in index order) still need
    /// sending; then marks everything before `src` as covered.
    /// Call [`PartitionState::complete`] once they are handed to the producer.
    pub(super) fn advance(&mut self, src: &Source<'_>, records: &[Record]) -> Vec<bool> {
        let keep = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                !self
                    .outputs
                    .get(&r.topic)
                    .is_some_and(|o| o.written(src.topic, src.offset, i))
            })
            .collect();
        self.cover(src.topic, src.offset);
        keep
    }

    /// `src`'s outputs are sent: anything written after them implies them.
    pub(super) fn complete(&mut self, src: &Source<'_>) {
        self.cover(src.topic, src.offset + 1);
    }

    pub(super) fn cover(&mut self, topic: &str, below: i64) {
        for o in self.outputs.values_mut() {
            o.cover(topic, below);
        }
    }

    /// The `source.covered` header for an output sent to `output` now.
    pub(super) fn covered_header(&self, output: &str) -> String {
        let Some(o) = self.outputs.get(output) else {
            return String::new();
        };
        let mut v: Vec<_> = o.covered.iter().collect();
        v.sort();
        v.iter()
            .map(|(t, o)| format!("{t}:{o}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `source.partial` header for an output sent to `output` now, if any.
    pub(super) fn partial_header(&self, output: &str) -> Option<String> {
        let o = self.outputs.get(output)?;
        let mut v: Vec<_> = o.partial.iter().collect();
        v.sort();
        let h = v
            .iter()
            .map(|(t, (o, i))| format!("{t}:{o}:{i}"))
            .collect::<Vec<_>>()
            .join(",");
        (!h.is_empty()).then_some(h)
    }
}

/// Reads the last record of partition `p` of each output topic, one reader
/// per topic, all at once: the member does not serve its group while it
/// recovers, and Tansu 0.6 does not wait for a busy member before handing
/// its partitions to another (see `KafkaStage::session`).
pub(super) fn recover(
    reader: &(dyn Fn() -> Result<BaseConsumer, StageError> + Sync),
    outputs: &[String],
    p: i32,
) -> Result<PartitionState, StageError> {
    let found: Vec<Result<OutputState, StageError>> = std::thread::scope(|s| {
        let readers: Vec<_> = outputs
            .iter()
            .map(|o| s.spawn(move || recover_one(&reader()?, o, p)))
            .collect();
        readers
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StageError::Setup(format!(
                        "recovery of partition {p} failed (a reader panicked)"
                    )))
                })
            })
            .collect()
    });
    let mut state = PartitionState::default();
    for (o, out) in outputs.iter().zip(found) {
        state.outputs.insert(o.clone(), out?);
    }
    Ok(state)
}

/// What partition `p` of output topic `o` already holds, from its last record.
///
/// It reads from the high watermark - 1 up to the end of the partition as
/// the fetch reports it, keeping the last record seen, rather than trusting
/// the watermark alone: Tansu 0.6 answers ListOffsets(latest) with the last
/// *batch's* base offset + 1.
fn recover_one(reader: &BaseConsumer, o: &str, p: i32) -> Result<OutputState, StageError> {
    let (_lo, hi) = reader
        .fetch_watermarks(o, p, METADATA_TIMEOUT)
        .map_err(kafka_err)?;
    let start = if hi > 0 {
        Offset::Offset(hi - 1)
    } else {
        Offset::Beginning
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(o, p, start).map_err(kafka_err)?;
    reader.assign(&tpl).map_err(kafka_err)?;
    let deadline = std::time::Instant::now() + METADATA_TIMEOUT * 3;
    let mut last = None;
    // End-of-partition comes from the fetch's high watermark, which Tansu
    // may also understate; so after it, keep reading until a quiet spell.
    let mut eof_at: Option<std::time::Instant> = None;
    loop {
        if std::time::Instant::now() > deadline {
            return Err(StageError::Setup(format!(
                "could not read {o} partition {p} to its end for recovery"
            )));
        }
        if eof_at.is_some_and(|t| t.elapsed() >= TAIL_QUIET) {
            break;
        }
        match reader.poll(Duration::from_millis(50)) {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                eof_at.get_or_insert_with(std::time::Instant::now);
            }
            Some(Err(e)) => return Err(kafka_err(e)),
            Some(Ok(m)) => {
                last = Some(kafka_log::message_headers(&m));
                eof_at = None;
            }
        }
    }
    let mut out = OutputState::default();
    if let Some(headers) = last {
        out = parse_tail(&headers).ok_or_else(|| {
            StageError::Setup(format!(
                "the last record of {o} partition {p} has no source.* headers; was it written by another producer?"
            ))
        })?;
    }
    tracing::info!(topic = %o, partition = p, covered = ?out.covered, partial = ?out.partial, "output partition recovered");
    reader.unassign().map_err(kafka_err)?;
    Ok(out)
}

pub(super) fn parse_tail(headers: &[(String, String)]) -> Option<OutputState> {
    let get = |k: &str| {
        headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.as_str())
    };
    pub(super) fn entries(v: &str) -> impl Iterator<Item = &str> {
        v.split(',').filter(|s| !s.is_empty())
    }
    let covered = entries(get(h::COVERED)?)
        .map(|pair| {
            let (t, o) = pair.rsplit_once(':')?;
            Some((t.to_owned(), o.parse().ok()?))
        })
        .collect::<Option<HashMap<_, _>>>()?;
    let partial = entries(get(h::PARTIAL).unwrap_or(""))
        .map(|e| {
            let (rest, i) = e.rsplit_once(':')?;
            let (t, o) = rest.rsplit_once(':')?;
            Some((t.to_owned(), (o.parse().ok()?, i.parse().ok()?)))
        })
        .collect::<Option<HashMap<_, _>>>()?;
    let state = OutputState { covered, partial };
    Some(state.with_tail(
        get(h::SOURCE_TOPIC)?.to_owned(),
        get(h::SOURCE_OFFSET)?.parse().ok()?,
        get(h::SOURCE_INDEX)?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(topic: &str, offset: i64) -> Source<'_> {
        Source {
            topic,
            partition: 0,
            offset,
            key: None,
            headers: &[],
            value: b"",
        }
    }

    fn out(topic: &str) -> Record {
        Record {
            topic: topic.into(),
            key: None,
            partition: Some(0),
            headers: vec![],
            timestamp_ms: 0,
            value: Default::default(),
        }
    }

    /// Recovered: fhir.observation's last record is output 1 of oru@7, and
    /// every adt record below 3 and oru record below 7 is covered.
    fn recovered() -> PartitionState {
        let obs = parse_tail(&[
            (h::COVERED.into(), "hl7v2.adt:3,hl7v2.oru:7".into()),
            (h::SOURCE_TOPIC.into(), "hl7v2.oru".into()),
            (h::SOURCE_OFFSET.into(), "7".into()),
            (h::SOURCE_INDEX.into(), "1".into()),
        ])
        .unwrap();
        let mut s = PartitionState::default();
        s.outputs.insert("fhir.observation".into(), obs);
        s.outputs
            .insert("fhir.encounter".into(), OutputState::default());
        s
    }

    #[test]
    fn outputs_below_the_covered_offset_are_skipped() {
        let mut s = recovered();
        let keep = s.advance(&src("hl7v2.oru", 6), &[out("fhir.observation")]);
        assert_eq!(keep, vec![false]);
    }

    #[test]
    fn the_last_records_source_is_resumed_after_its_last_written_index() {
        let mut s = recovered();
        let outs = [
            out("fhir.observation"),
            out("fhir.observation"),
            out("fhir.observation"),
        ];
        assert_eq!(
            s.advance(&src("hl7v2.oru", 7), &outs),
            vec![false, false, true]
        );
    }

    #[test]
    fn an_output_topic_with_nothing_written_gets_everything() {
        let mut s = recovered();
        assert_eq!(
            s.advance(&src("hl7v2.oru", 6), &[out("fhir.encounter")]),
            vec![true]
        );
    }

    #[test]
    fn other_input_topics_are_judged_by_their_own_offsets() {
        let mut s = recovered();
        assert_eq!(
            s.advance(&src("hl7v2.adt", 2), &[out("fhir.observation")]),
            vec![false]
        );
        assert_eq!(
            s.advance(&src("hl7v2.adt", 3), &[out("fhir.observation")]),
            vec![true]
        );
        assert_eq!(
            s.advance(&src("hl7v2.orm", 0), &[out("fhir.observation")]),
            vec![true]
        );
    }

    #[test]
    fn the_covered_header_advances_with_processing_and_never_goes_back() {
        let mut s = recovered();
        s.advance(&src("hl7v2.adt", 10), &[]);
        assert_eq!(s.covered_header("fhir.encounter"), "hl7v2.adt:10");
        s.complete(&src("hl7v2.adt", 10));
        s.advance(&src("hl7v2.oru", 2), &[]);
        s.complete(&src("hl7v2.oru", 2));
        assert_eq!(
            s.covered_header("fhir.observation"),
            "hl7v2.adt:11,hl7v2.oru:7"
        );
        assert_eq!(
            s.covered_header("fhir.encounter"),
            "hl7v2.adt:11,hl7v2.oru:3"
        );
    }

    /// The case that a per-topic "last offset" alone gets wrong: the tail's
    /// source is adt@6, but oru@0 was sent before it and must not be resent.
    #[test]
    fn records_of_other_topics_completed_before_the_tail_are_not_resent() {
        let mut live = PartitionState::default();
        live.outputs
            .insert("fhir.encounter".into(), OutputState::default());
        let mut tail = Vec::new();
        for (t, o) in [("hl7v2.oru", 0), ("hl7v2.adt", 6)] {
            live.advance(&src(t, o), &[out("fhir.encounter")]);
            tail = vec![
                (h::COVERED.to_owned(), live.covered_header("fhir.encounter")),
                (h::SOURCE_TOPIC.to_owned(), t.to_owned()),
                (h::SOURCE_OFFSET.to_owned(), o.to_string()),
                (h::SOURCE_INDEX.to_owned(), "0".to_owned()),
            ];
            live.complete(&src(t, o));
        }
        let mut s = PartitionState::default();
        s.outputs
            .insert("fhir.encounter".into(), parse_tail(&tail).unwrap());
        assert_eq!(
            s.advance(&src("hl7v2.oru", 0), &[out("fhir.encounter")]),
            vec![false]
        );
        assert_eq!(
            s.advance(&src("hl7v2.adt", 6), &[out("fhir.encounter")]),
            vec![false]
        );
        assert_eq!(
            s.advance(&src("hl7v2.oru", 1), &[out("fhir.encounter")]),
            vec![true]
        );
    }

    /// The headers a live state puts on an output of `src` at `index`.
    fn sent(
        live: &PartitionState,
        output: &str,
        t: &str,
        o: i64,
        index: usize,
    ) -> Vec<(String, String)> {
        let mut h = vec![
            (h::COVERED.to_owned(), live.covered_header(output)),
            (h::SOURCE_TOPIC.to_owned(), t.to_owned()),
            (h::SOURCE_OFFSET.to_owned(), o.to_string()),
            (h::SOURCE_INDEX.to_owned(), index.to_string()),
        ];
        if let Some(p) = live.partial_header(output) {
            h.push((h::PARTIAL.to_owned(), p));
        }
        h
    }

    /// Seen on Tansu: member A sent oru@0's encounter, lost the partition
    /// before oru@0's consumer offset was committed, got it back, recovered
    /// (tail = oru@0 index 0), wrote adt outputs after it, and left. The
    /// next owner replays oru@0 and must still know its encounter is written.
    #[test]
    fn a_recovered_partial_record_stays_known_after_other_records_are_appended() {
        let enc = "fhir.encounter";
        let mut a = PartitionState::default();
        a.outputs.insert(enc.into(), OutputState::default());
        a.advance(&src("hl7v2.oru", 0), &[out(enc)]);
        let tail = sent(&a, enc, "hl7v2.oru", 0, 0);

        let mut again = PartitionState::default();
        again.outputs.insert(enc.into(), parse_tail(&tail).unwrap());
        let mut tail = Vec::new();
        for o in 0..12 {
            again.advance(&src("hl7v2.adt", o), &[out(enc)]);
            tail = sent(&again, enc, "hl7v2.adt", o, 0);
            again.complete(&src("hl7v2.adt", o));
        }

        let mut next = PartitionState::default();
        next.outputs.insert(enc.into(), parse_tail(&tail).unwrap());
        assert_eq!(next.advance(&src("hl7v2.oru", 0), &[out(enc)]), vec![false]);
        assert_eq!(
            next.advance(&src("hl7v2.adt", 11), &[out(enc)]),
            vec![false]
        );
        assert_eq!(next.advance(&src("hl7v2.adt", 12), &[out(enc)]), vec![true]);
    }

    #[test]
    fn a_partial_record_resumes_after_its_written_index_and_is_then_forgotten() {
        let obs = "fhir.observation";
        let mut s = PartitionState::default();
        s.outputs.insert(
            obs.into(),
            parse_tail(&[
                (h::COVERED.into(), "hl7v2.adt:4".into()),
                (h::PARTIAL.into(), "hl7v2.oru:9:1".into()),
                (h::SOURCE_TOPIC.into(), "hl7v2.adt".into()),
                (h::SOURCE_OFFSET.into(), "4".into()),
                (h::SOURCE_INDEX.into(), "0".into()),
            ])
            .unwrap(),
        );
        let three = [out(obs), out(obs), out(obs)];
        assert_eq!(
            s.partial_header(obs).as_deref(),
            Some("hl7v2.adt:4:0,hl7v2.oru:9:1")
        );
        assert_eq!(
            s.advance(&src("hl7v2.oru", 9), &three),
            vec![false, false, true]
        );
        s.complete(&src("hl7v2.oru", 9));
        assert_eq!(s.partial_header(obs).as_deref(), Some("hl7v2.adt:4:0"));
        s.advance(&src("hl7v2.adt", 5), &[]);
        assert_eq!(s.partial_header(obs), None);
    }

    #[test]
    fn a_tail_without_provenance_is_not_trusted() {
        assert_eq!(parse_tail(&[]), None);
        assert_eq!(parse_tail(&[(h::COVERED.into(), "x:1".into())]), None);
    }
}
