//! Issue 14: failover with zero loss on Kafka (a real Tansu broker). Two
//! `serve --kafka-brokers … --no-transform` bridges on their own ports, two
//! `hl7bridge transform` members with their own data directories, and a
//! sender that knows both bridges, as an interface engine with a backup host:
//! on a refused connection, a lost connection or an ACK timeout it moves to
//! the other endpoint and resends what was not acknowledged (same bytes, same
//! control ID); on AE it resends to the same endpoint.
//!
//! The active bridge is SIGKILLed several times at seeded random points and
//! restarted; one transform member is SIGKILLed once and restarted. Then:
//! - every message that got AA is in its raw topic;
//! - a raw duplicate is only a resend: a message with an unanswered or AE'd
//!   attempt, every copy the same bytes with the same control ID;
//! - every message has its FHIR records exactly once across both members,
//!   from its first stored copy: the stage's dedup drops the later copies.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::member::{kill, transform, wait_committed_to_end, Member, WAIT};
use common::process::{bin, Bridge};
use common::rng::Rng;
use common::stage::{expected_output_count, output_id, output_topics, source_id, SourceId};
use common::tansu::Tansu;
use common::{adt, oru, read_kafka_topic, Ack, Client, RAW_TOPICS};
use hl7bridge::log::kafka::KafkaConfig;
use hl7bridge::record::{StoredRecord, WithHeaders};
use tokio::task::block_in_place;

const MESSAGES: usize = 400;
const BRIDGE_KILLS: usize = 4;
/// Messages whose first ACK is lost on the way back (read, then ignored as
/// if it never came): the sender resends them to the other bridge, so the
/// raw topics hold them twice and the stage's dedup is at work.
const LOST_ACKS: usize = 3;
/// Few partitions: a member recovers each assigned partition one by one.
const PARTITIONS: u32 = 2;
/// The sender's ACK timeout, above the bridges' own `--ack-timeout`.
const ACK_WAIT: Duration = Duration::from_secs(8);
const BRIDGE_ACK_TIMEOUT: &str = "3s";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One bridge host: a fixed port and data directory, restarted in place.
struct Host {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Host {
    fn new() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        }
    }

    /// Starts `serve` and waits for its "listening on" line.
    fn start(&mut self, brokers: &str) {
        let mut child = Command::new(bin())
            .args(["serve", "--listen", &self.addr.to_string()])
            .args(["--registry-listen", "", "--metrics-listen", ""])
            .args(["--kafka-brokers", brokers, "--no-transform"])
            .args(["--ack-timeout", BRIDGE_ACK_TIMEOUT])
            .arg("--data-dir")
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.contains(&self.addr.to_string()),
            "bridge on {} did not start: {line:?}",
            self.addr
        );
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One attempt: the message's index, the endpoint it went to, and MSA-1,
/// "none" (connection lost, or no ACK within `ACK_WAIT`) or "lost:<MSA-1>"
/// (an ACK lost on the way back).
#[derive(Debug, Clone)]
struct Attempt {
    message: usize,
    endpoint: usize,
    code: String,
}

/// A sender with a primary and a backup endpoint, one message at a time.
struct Sender {
    endpoints: Vec<SocketAddr>,
    /// The endpoint in use: the killer reads it to kill the active bridge.
    active: Arc<AtomicUsize>,
    /// Messages acknowledged with AA so far.
    acked: Arc<AtomicUsize>,
    /// Messages whose first ACK is lost.
    lose_ack: Vec<usize>,
}

impl Sender {
    async fn run(self, messages: Vec<(String, Vec<u8>)>) -> Vec<Attempt> {
        let mut attempts = Vec::new();
        let mut conn: Option<Client> = None;
        let deadline = Instant::now() + WAIT * 2;
        for (i, (id, msg)) in messages.iter().enumerate() {
            loop {
                assert!(
                    Instant::now() < deadline,
                    "{id}: no AA from either endpoint"
                );
                let ep = self.active.load(Ordering::SeqCst);
                if conn.is_none() {
                    conn = tokio::time::timeout(
                        Duration::from_secs(2),
                        Client::try_connect(self.endpoints[ep]),
                    )
                    .await
                    .ok()
                    .flatten();
                    if conn.is_none() {
                        // Refused: the backup host (nothing was sent).
                        self.failover(ep);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                let c = conn.as_mut().unwrap();
                let answer = if c.try_send(msg).await {
                    c.recv_within(ACK_WAIT).await
                } else {
                    None
                };
                let Some(bytes) = answer else {
                    // Lost or timed out: its fate is unknown, so resend it
                    // to the other endpoint.
                    attempts.push(Attempt {
                        message: i,
                        endpoint: ep,
                        code: "none".into(),
                    });
                    conn = None;
                    self.failover(ep);
                    continue;
                };
                let ack = Ack::parse(&bytes);
                assert_eq!(
                    ack.control_id(),
                    id,
                    "ACK for another message:\n{}",
                    ack.text
                );
                let code = ack.code().to_owned();
                let first_try = !attempts.iter().any(|a: &Attempt| a.message == i);
                if first_try && self.lose_ack.contains(&i) {
                    // As after an ACK timeout: the other endpoint, same bytes.
                    attempts.push(Attempt {
                        message: i,
                        endpoint: ep,
                        code: format!("lost:{code}"),
                    });
                    conn = None;
                    self.failover(ep);
                    continue;
                }
                attempts.push(Attempt {
                    message: i,
                    endpoint: ep,
                    code: code.clone(),
                });
                match code.as_str() {
                    "AA" => break,
                    "AE" => tokio::time::sleep(Duration::from_millis(200)).await,
                    other => panic!("{id}: only AA or AE are acceptable, got {other}"),
                }
            }
            self.acked.fetch_add(1, Ordering::SeqCst);
            // Paced, so that the kills land while messages flow.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        attempts
    }

    fn failover(&self, from: usize) {
        let _ = self.active.compare_exchange(
            from,
            (from + 1) % self.endpoints.len(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

/// ADTs and ORUs over a few dozen patients (so both partitions get both).
fn messages() -> Vec<(String, Vec<u8>)> {
    (0..MESSAGES)
        .map(|i| {
            let id = format!("FO-{i:05}");
            let mrn = format!("FOP{}", i % 37);
            let m = if i % 2 == 0 {
                adt(&id, &mrn)
            } else {
                oru(&id, &mrn, 1 + i % 3)
            };
            (id, m)
        })
        .collect()
}

/// Waits until `acked` reaches `n`.
fn wait_acked(acked: &AtomicUsize, n: usize) {
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < WAIT,
            "the sender stalled at {} of {n} messages",
            acked.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

enum Fault {
    Bridge,
    Member,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_and_two_members_lose_nothing_and_emit_once_through_sigkills() {
    let Some(broker) = Tansu::sqlite() else {
        return;
    };
    let brokers = broker.brokers();
    let cfg = KafkaConfig {
        brokers: brokers.clone(),
        ..Default::default()
    };
    // Every topic, the dedup changelog too, as `topics create` makes them.
    let mut topics: Vec<String> = RAW_TOPICS.iter().map(|s| s.to_string()).collect();
    topics.extend(output_topics());
    hl7bridge::log::kafka::create_topics(&cfg, &topics, PARTITIONS, 1)
        .await
        .unwrap();
    let changelog = hl7bridge::topics::dedup_changelog("hl7bridge-transform");
    let settings = hl7bridge::stage::kafka::changelog::topic_settings(Duration::from_secs(3600));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    hl7bridge::log::kafka::create_topics_with(
        &cfg,
        std::slice::from_ref(&changelog),
        PARTITIONS,
        1,
        &settings,
    )
    .await
    .unwrap();

    // The schema registry: a third bridge, never killed (it stands in for
    // the site's Confluent-compatible registry).
    let registry_dir = tempfile::tempdir().unwrap();
    let (registry_host, registry) = block_in_place(|| {
        Bridge::serve_with_registry(
            registry_dir.path(),
            &["--kafka-brokers", &brokers, "--no-transform"],
        )
    });
    let mut hosts = [Host::new(), Host::new()];
    block_in_place(|| hosts.iter_mut().for_each(|h| h.start(&brokers)));
    let member_dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut members: Vec<Member> = block_in_place(|| {
        member_dirs
            .iter()
            .map(|d| {
                let m = transform(&brokers, &registry, d.path());
                m.wait_assigned();
                m
            })
            .collect()
    });

    // The faults, at seeded random points of the stream.
    let mut rng = Rng::seeded("failover");
    let mut plan: Vec<(usize, Fault)> = (0..BRIDGE_KILLS)
        .map(|_| {
            (
                MESSAGES / 10 + rng.below(MESSAGES as u64 * 8 / 10) as usize,
                Fault::Bridge,
            )
        })
        .collect();
    plan.push((
        MESSAGES * 3 / 10 + rng.below(MESSAGES as u64 * 4 / 10) as usize,
        Fault::Member,
    ));
    plan.sort_by_key(|(at, _)| *at);

    let sender = Sender {
        endpoints: hosts.iter().map(|h| h.addr).collect(),
        active: Arc::new(AtomicUsize::new(0)),
        acked: Arc::new(AtomicUsize::new(0)),
        lose_ack: (0..LOST_ACKS)
            .map(|_| rng.below(MESSAGES as u64) as usize)
            .collect(),
    };
    let (active, acked) = (sender.active.clone(), sender.acked.clone());
    let all = messages();
    let sending = tokio::spawn(sender.run(all.clone()));

    // (fault, messages acked when it struck)
    let mut struck: Vec<(&str, usize)> = Vec::new();
    block_in_place(|| {
        for (at, fault) in &plan {
            wait_acked(&acked, *at);
            std::thread::sleep(Duration::from_millis(rng.below(50)));
            match fault {
                Fault::Bridge => {
                    let ep = active.load(Ordering::SeqCst);
                    hosts[ep].kill();
                    struck.push(("bridge", acked.load(Ordering::SeqCst)));
                    // The host comes back; the sender is on the other one by now.
                    hosts[ep].start(&brokers);
                }
                Fault::Member => {
                    let m = members.remove(0);
                    kill(m);
                    struck.push(("member", acked.load(Ordering::SeqCst)));
                    // Back at once; it joins while the stream goes on.
                    members.push(transform(&brokers, &registry, member_dirs[0].path()));
                }
            }
        }
    });
    let attempts = tokio::time::timeout(WAIT * 3, sending)
        .await
        .expect("the sender finished")
        .expect("the sender did not panic");

    let inputs: Vec<StoredRecord> = block_in_place(|| {
        let inputs: Vec<StoredRecord> = RAW_TOPICS[..3]
            .iter()
            .flat_map(|t| read_kafka_topic(&cfg, t))
            .collect();
        members.iter().for_each(Member::wait_assigned);
        wait_committed_to_end(&cfg, &inputs);
        // Anything extra (a duplicate) surfaces before counting.
        std::thread::sleep(Duration::from_secs(3));
        inputs
    });
    let outputs: Vec<StoredRecord> = block_in_place(|| {
        output_topics()
            .iter()
            .flat_map(|t| read_kafka_topic(&cfg, t))
            .collect()
    });
    for m in members {
        kill(m);
    }

    // The sender's side: every message got AA in the end.
    let mut tries: HashMap<usize, Vec<&Attempt>> = HashMap::new();
    for a in &attempts {
        tries.entry(a.message).or_default().push(a);
    }
    let resent: Vec<usize> = (0..MESSAGES)
        .filter(|i| tries.get(i).map_or(0, Vec::len) > 1)
        .collect();
    let mut resent_to = [0usize; 2];
    for a in tries.values().flat_map(|t| t.iter().skip(1)) {
        resent_to[a.endpoint] += 1;
    }
    let unanswered = attempts.iter().filter(|a| a.code == "none").count();
    // A lost AA: the message was stored, so its resend is a raw duplicate.
    let lost_aa = attempts.iter().filter(|a| a.code == "lost:AA").count();

    // Raw: every AA'd message is stored; a second copy only from a resend.
    let mut copies: HashMap<&str, Vec<&StoredRecord>> = HashMap::new();
    for r in &inputs {
        copies
            .entry(r.header("hl7.control_id").unwrap_or(""))
            .or_default()
            .push(r);
    }
    let mut lost = Vec::new();
    let mut raw_duplicated = 0;
    for (i, (id, msg)) in all.iter().enumerate() {
        let t = &tries[&i];
        assert_eq!(t.last().unwrap().code, "AA", "{id}: {t:?}");
        let c = copies
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        if c.is_empty() {
            lost.push(id.clone());
            continue;
        }
        for r in c {
            assert_eq!(
                &r.value[..],
                &msg[..],
                "{id}: a stored copy is the bytes sent"
            );
        }
        if c.len() > 1 {
            raw_duplicated += 1;
            assert!(
                t.len() > 1 && c.len() <= t.len(),
                "{id}: {} copies, but attempts {t:?}",
                c.len()
            );
        }
    }
    assert_eq!(copies.len(), MESSAGES, "nothing stored that was not sent");

    // FHIR: by source message, exactly once, from its first copy.
    let first: HashMap<&str, SourceId> = copies
        .iter()
        .map(|(id, c)| {
            (
                *id,
                c.iter().map(|r| source_id(r)).min_by_key(|s| s.2).unwrap(),
            )
        })
        .collect();
    let by_source: HashMap<SourceId, &StoredRecord> =
        inputs.iter().map(|r| (source_id(r), r)).collect();
    let mut per_message: HashMap<&str, Vec<(SourceId, usize, String)>> = HashMap::new();
    for o in &outputs {
        let (topic, t, p, off, index) = output_id(o);
        let src = by_source
            .get(&(t.clone(), p, off))
            .unwrap_or_else(|| panic!("an output of no input: {t}/{p}/{off}"));
        per_message
            .entry(src.header("hl7.control_id").unwrap_or(""))
            .or_default()
            .push(((t, p, off), index, topic));
    }
    // Per message: outputs from another copy than the first, or an output
    // index twice, is a duplicate; otherwise every index must be there.
    let (mut fhir_duplicated, mut fhir_missing) = (Vec::new(), Vec::new());
    for (id, msg) in &all {
        let got = per_message.remove(id.as_str()).unwrap_or_default();
        let from_first = got
            .iter()
            .all(|(s, _, _)| Some(s) == first.get(id.as_str()));
        let mut indices: Vec<usize> = got.iter().map(|(_, i, _)| *i).collect();
        indices.sort_unstable();
        indices.dedup();
        if !from_first || indices.len() != got.len() {
            fhir_duplicated.push((id.clone(), got));
        } else if got.len() != expected_output_count(msg) {
            fhir_missing.push((id.clone(), got.len(), expected_output_count(msg)));
        }
    }

    let bridge_kills = struck.iter().filter(|(f, _)| *f == "bridge").count();
    eprintln!(
        "failover: messages {MESSAGES}, bridge kills {bridge_kills}, member kills {}, \
         resent messages {} (resends to endpoint 0: {}, to 1: {}; unanswered attempts {unanswered}, \
         lost AAs {lost_aa}), lost {}, \
         duplicated raw {raw_duplicated} (dropped by dedup), duplicated FHIR {}, \
         FHIR records {}; faults at (kind, messages acked): {struck:?}",
        struck.len() - bridge_kills,
        resent.len(),
        resent_to[0],
        resent_to[1],
        lost.len(),
        fhir_duplicated.len(),
        outputs.len(),
    );
    assert!(lost.is_empty(), "AA'd but not stored: {lost:?}");
    assert!(
        fhir_duplicated.is_empty(),
        "FHIR records twice (control ID, [(source, index, output topic)]): {fhir_duplicated:?}"
    );
    assert!(
        fhir_missing.is_empty(),
        "FHIR records missing (id, got, want): {fhir_missing:?}"
    );
    assert!(
        struck.iter().all(|(_, n)| *n < MESSAGES),
        "every fault struck mid-stream: {struck:?}"
    );
    assert!(
        raw_duplicated >= lost_aa,
        "a message whose AA was lost is stored twice: {raw_duplicated} < {lost_aa}"
    );
    assert!(
        unanswered >= bridge_kills,
        "each bridge kill left the sender without an answer at least once: {unanswered}"
    );
    drop(registry_host);
}
