//! The streaming stage on Kafka (a real Tansu broker): `hl7bridge transform`
//! as a consumer group writes every FHIR output exactly once, through
//! SIGKILLs and a rebalance between two processes, with schemas in the
//! bridge's embedded registry endpoint, and sender resends emitted once.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::member::*;
use common::process::{bin, Bridge};
use common::stage::*;
use common::tansu::Tansu;
use common::{adt, kafka_config, oru, read_kafka_topic, Client};
use hl7bridge::log::kafka::KafkaConfig;
use hl7bridge::record::StoredRecord;
use hl7bridge::registry::{RemoteRegistry, SchemaRegistry};
use hl7bridge::stage::decoder::FhirDecoder;
use hl7bridge::transform::{Mapped, Mapper};

fn all_outputs(cfg: &KafkaConfig) -> Vec<StoredRecord> {
    output_topics()
        .iter()
        .flat_map(|t| read_kafka_topic(cfg, t))
        .collect()
}

fn all_inputs(cfg: &KafkaConfig) -> Vec<StoredRecord> {
    INPUTS
        .iter()
        .flat_map(|t| read_kafka_topic(cfg, t))
        .collect()
}

/// Waits until at least `n` outputs exist (or `WAIT` passes: the final
/// assertions then name what is missing).
fn wait_for_outputs(cfg: &KafkaConfig, n: usize) -> usize {
    let start = Instant::now();
    loop {
        let got = all_outputs(cfg).len();
        if got >= n || start.elapsed() > WAIT {
            return got;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Raw and FHIR topics (6 partitions each) and a `serve` on the broker,
/// with its registry endpoint: (settings, bridge, registry URL, its data dir).
async fn serve_on(broker: &Tansu) -> (KafkaConfig, Bridge, String, tempfile::TempDir) {
    let cfg = kafka_config(&broker.brokers()).await;
    let outputs = output_topics();
    hl7bridge::log::kafka::create_topics(&cfg, &outputs, 6, 1)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (bridge, registry) =
        Bridge::serve_with_registry(dir.path(), &["--kafka-brokers", &broker.brokers()]);
    (cfg, bridge, registry, dir)
}

/// Like [`serve_on`] with `n` partitions per topic: a member recovers each
/// assigned partition (its output tails, its dedup window) one by one, so
/// fewer partitions keep takeovers short.
async fn serve_on_partitions(
    broker: &Tansu,
    n: u32,
) -> (KafkaConfig, Bridge, String, tempfile::TempDir) {
    let cfg = KafkaConfig {
        brokers: broker.brokers(),
        ..Default::default()
    };
    let mut topics: Vec<String> = common::RAW_TOPICS.iter().map(|s| s.to_string()).collect();
    topics.extend(output_topics());
    hl7bridge::log::kafka::create_topics(&cfg, &topics, n, 1)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (bridge, registry) =
        Bridge::serve_with_registry(dir.path(), &["--kafka-brokers", &broker.brokers()]);
    (cfg, bridge, registry, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn transform_on_kafka_is_exactly_once_through_sigkills_and_a_rebalance() {
    let Some(broker) = Tansu::sqlite() else {
        return;
    };
    let (cfg, bridge, registry, _serve_dir) = serve_on(&broker).await;
    let mut c = Client::connect(bridge.addr).await;
    for i in 0..300 {
        let m = if i % 3 == 0 {
            adt(&format!("K-{i}"), &format!("P{}", i % 23))
        } else {
            oru(&format!("K-{i}"), &format!("P{}", i % 23), 1 + i % 5)
        };
        assert_eq!(c.roundtrip(&m).await.code(), "AA");
        // Every 50th message is resent as it was (a lost ACK): stored twice, emitted once.
        if i % 50 == 7 {
            assert_eq!(c.roundtrip(&m).await.code(), "AA");
        }
    }
    let inputs = tokio::task::block_in_place(|| all_inputs(&cfg));
    assert_eq!(inputs.len(), 306);
    let mut first_copies = HashSet::new();
    let want: usize = inputs
        .iter()
        .filter(|r| first_copies.insert(r.value.clone()))
        .map(|r| expected_output_count(&r.value))
        .sum();

    let work = tempfile::tempdir().unwrap();
    let brokers = broker.brokers();
    let mut log = Vec::new();
    tokio::task::block_in_place(|| {
        // Two SIGKILLs of a lone member, each once it has taken up two of
        // the partitions with work left (of 6): mid-stream.
        for _ in 1..=2 {
            let t = transform(&brokers, &registry, work.path());
            t.wait_assigned();
            t.wait_restored(2);
            kill(t);
            log.push(("killed alone", all_outputs(&cfg).len()));
        }
        // A second member joins mid-stream (the first revokes, flushes, and
        // both recover from the output tails); then the first leaves (SIGTERM)
        // and the survivor takes its partitions over. (A member SIGKILLed while
        // another is alive is left to the broker's session timeout, which
        // Tansu 0.6 was seen not to enforce: its partitions stayed assigned.)
        let a = transform(&brokers, &registry, work.path());
        a.wait_assigned();
        a.wait_restored(1);
        let got = all_outputs(&cfg).len();
        let b = transform(&brokers, &registry, work.path());
        b.wait_assigned();
        log.push(("second member joined", got));
        let got = wait_for_outputs(&cfg, (want * 4 / 5).max(all_outputs(&cfg).len() + 1));
        terminate(a);
        log.push(("one of two left", got));
        let got = wait_for_outputs(&cfg, want);
        log.push(("survivor finished", got));
        // Let anything extra (a duplicate) surface before counting.
        std::thread::sleep(Duration::from_secs(3));
        kill(b);
    });
    eprintln!("progress: {log:?}");

    let outputs = tokio::task::block_in_place(|| all_outputs(&cfg));
    let ids: Vec<OutputId> = outputs.iter().map(output_id).collect();
    let unique: HashSet<&OutputId> = ids.iter().collect();
    let mut dup: HashMap<&OutputId, usize> = HashMap::new();
    for i in &ids {
        *dup.entry(i).or_default() += 1;
    }
    dup.retain(|_, n| *n > 1);
    assert!(dup.is_empty(), "duplicated outputs: {dup:?}");
    let mut missing = Vec::new();
    let mut seen_bytes = HashSet::new();
    for r in &inputs {
        if !seen_bytes.insert(r.value.clone()) {
            continue;
        }
        let n = expected_output_count(&r.value);
        for i in 0..n {
            let present = ids
                .iter()
                .any(|(_, t, p, o, x)| (t, *p, *o, *x) == (&r.topic, r.partition, r.offset, i));
            if !present {
                missing.push((r.topic.clone(), r.partition, r.offset, i, n));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "lost outputs (topic, partition, offset, index, count): {missing:?}"
    );
    assert_eq!(unique.len(), want, "no output is lost");
    assert!(
        log.iter().filter(|(_, n)| *n < want).count() >= 3,
        "the kills landed mid-stream: {log:?}"
    );

    // Co-partitioned and keyed like the input; Avro decodes (through the
    // registry endpoint, with a Confluent client library) to the direct mapping.
    let mut decoder = FhirDecoder::new(SchemaRegistry::Remote(
        RemoteRegistry::new(&registry).unwrap(),
    ));
    let by_source: HashMap<SourceId, &StoredRecord> =
        inputs.iter().map(|r| (source_id(r), r)).collect();
    let decoded = decoded_by_source(&mut decoder, &outputs).await;
    for (source, resources) in &decoded {
        let input = by_source[source];
        let Ok(Mapped::Resources(direct)) = Mapper::default().map(&input.value) else {
            panic!("{source:?} produced outputs but maps to none");
        };
        assert_eq!(resources, &direct, "{source:?}");
    }
    for out in &outputs {
        let (_, t, p, o, _) = output_id(out);
        let input = by_source[&(t, p, o)];
        assert_eq!(out.partition, input.partition);
        assert_eq!(out.key, input.key);
    }
    drop(bridge);
}

/// The group's committed offset for a partition is the next record to read
/// (Kafka's convention): after a clean stop it equals the partition's end,
/// neither behind (a replay) nor past it (a record skipped on the next start).
#[tokio::test(flavor = "multi_thread")]
async fn after_a_clean_stop_the_committed_offsets_are_the_next_records_to_read() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let Some(broker) = Tansu::memory() else {
        return;
    };
    let (cfg, bridge, registry, _serve_dir) = serve_on(&broker).await;
    let mut c = Client::connect(bridge.addr).await;
    for i in 0..24 {
        let m = if i % 2 == 0 {
            adt(&format!("C-{i}"), &format!("P{i}"))
        } else {
            oru(&format!("C-{i}"), &format!("P{i}"), 2)
        };
        assert_eq!(c.roundtrip(&m).await.code(), "AA");
    }
    let inputs = tokio::task::block_in_place(|| all_inputs(&cfg));
    let want: usize = inputs.iter().map(|r| expected_output_count(&r.value)).sum();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for r in &inputs {
        let e = ends.entry((r.topic.clone(), r.partition)).or_default();
        *e = (*e).max(r.offset + 1);
    }

    let work = tempfile::tempdir().unwrap();
    tokio::task::block_in_place(|| {
        let t = transform(&broker.brokers(), &registry, work.path());
        assert_eq!(wait_for_outputs(&cfg, want), want);
        // Past the 1 s auto-commit interval, then the close's own commit.
        std::thread::sleep(Duration::from_secs(2));
        terminate(t);
    });

    let group: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "hl7bridge-transform")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (t, p) in ends.keys() {
        tpl.add_partition(t, *p);
    }
    let committed = tokio::task::block_in_place(|| {
        group
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap()
    });
    let mut got: HashMap<(String, i32), i64> = HashMap::new();
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            got.insert((e.topic().to_owned(), e.partition()), o);
        }
    }
    assert_eq!(got, ends, "committed offsets vs partition ends");
    drop(bridge);
}

/// Exactly-once rests on co-partitioning; the stage refuses to run without
/// it unless told to give exactly-once up.
#[tokio::test(flavor = "multi_thread")]
async fn transform_refuses_outputs_with_other_partition_counts_unless_at_least_once() {
    let Some(broker) = Tansu::memory() else {
        return;
    };
    let cfg = kafka_config(&broker.brokers()).await;
    hl7bridge::log::kafka::create_topics(&cfg, &["fhir.encounter".to_owned()], 3, 1)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::block_in_place(|| {
        Command::new(bin())
            .args([
                "transform",
                "--kafka-brokers",
                &broker.brokers(),
                "--registry-listen",
                "",
            ])
            .args(["--metrics-listen", ""])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    });
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fhir.encounter has 3") && err.contains("--at-least-once"),
        "{err}"
    );
}

/// Issue 14: the dedup window is the group's, not a member's disk. Member A
/// (its own data directory) emits a batch and leaves; the sender then resends
/// the batch as it was (lost ACKs). Member B, with another, empty data
/// directory, takes every partition over and must not emit them again.
#[tokio::test(flavor = "multi_thread")]
async fn a_resend_first_seen_on_the_old_owner_is_not_emitted_by_the_new_one() {
    let Some(broker) = Tansu::memory() else {
        return;
    };
    let (cfg, bridge, registry, _serve_dir) = serve_on_partitions(&broker, 2).await;
    let batch: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                adt(&format!("T-{i}"), &format!("P{}", i % 13))
            } else {
                oru(&format!("T-{i}"), &format!("P{}", i % 13), 1 + i % 3)
            }
        })
        .collect();
    let mut c = Client::connect(bridge.addr).await;
    for m in &batch {
        assert_eq!(c.roundtrip(m).await.code(), "AA");
    }
    let want: usize = batch.iter().map(|m| expected_output_count(m)).sum();

    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let brokers = broker.brokers();
    tokio::task::block_in_place(|| {
        let a = transform(&brokers, &registry, dir_a.path());
        assert_eq!(
            wait_for_outputs(&cfg, want),
            want,
            "member A emits the batch"
        );
        wait_committed_to_end(&cfg, &all_inputs(&cfg));
        terminate(a);
    });

    // The ACKs were lost: the sender resends every message, same bytes.
    for m in &batch {
        assert_eq!(c.roundtrip(m).await.code(), "AA");
    }
    let inputs = tokio::task::block_in_place(|| all_inputs(&cfg));
    assert_eq!(inputs.len(), 2 * batch.len(), "both copies are stored");

    tokio::task::block_in_place(|| {
        let b = transform(&brokers, &registry, dir_b.path());
        b.wait_assigned();
        // B has read every resend once its offsets reach the ends.
        wait_committed_to_end(&cfg, &inputs);
        terminate(b);
    });
    let outputs = tokio::task::block_in_place(|| all_outputs(&cfg));
    // The first copy of each message: the lower offset of the two.
    let mut first: HashMap<&[u8], SourceId> = HashMap::new();
    for r in &inputs {
        let f = first.entry(&r.value[..]).or_insert_with(|| source_id(r));
        if r.offset < f.2 {
            *f = source_id(r);
        }
    }
    let first_offsets: HashSet<SourceId> = first.into_values().collect();
    let resent: Vec<OutputId> = outputs
        .iter()
        .map(output_id)
        .filter(|(_, t, p, o, _)| !first_offsets.contains(&(t.clone(), *p, *o)))
        .collect();
    assert!(resent.is_empty(), "outputs of resends: {resent:?}");
    assert_eq!(outputs.len(), want, "each message's outputs, once");
    drop(bridge);
}

/// Partition p of the dedup changelog holds input partition p's window, so
/// the stage refuses a changelog with another partition count, even
/// at-least-once.
#[tokio::test(flavor = "multi_thread")]
async fn transform_refuses_a_dedup_changelog_with_another_partition_count() {
    let Some(broker) = Tansu::memory() else {
        return;
    };
    let cfg = kafka_config(&broker.brokers()).await;
    let changelog = hl7bridge::topics::dedup_changelog("hl7bridge-transform");
    hl7bridge::log::kafka::create_topics(&cfg, std::slice::from_ref(&changelog), 2, 1)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::block_in_place(|| {
        Command::new(bin())
            .args([
                "transform",
                "--at-least-once",
                "--kafka-brokers",
                &broker.brokers(),
                "--registry-listen",
                "",
            ])
            .args(["--metrics-listen", ""])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    });
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{changelog} has 2 partitions"))
            && err.contains("input topics have 6"),
        "{err}"
    );
}
