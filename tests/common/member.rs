//! `hl7bridge transform` members as subprocesses, and where their consumer
//! group has got to.
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hl7bridge::log::kafka::KafkaConfig;
use hl7bridge::record::StoredRecord;

use super::process::bin;
use super::stage::INPUTS;

/// Generous deadlines for progress, never timing assertions.
pub const WAIT: Duration = Duration::from_secs(120);

/// A running `transform` and the file its log goes to.
pub struct Member {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl Member {
    /// Waits until this member has been given partitions, so a kill cannot
    /// land inside its group join (Tansu 0.6 was seen never expiring a member
    /// killed there, leaving its partitions unconsumed).
    pub fn wait_assigned(&self) {
        let start = Instant::now();
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("partitions assigned")
        {
            assert!(
                start.elapsed() < WAIT,
                "no partitions assigned to {:?}",
                self.log
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until this member has restored the dedup window of `n`
    /// partitions: it is then that far into its assignment, and the rest is
    /// still to do (a member takes up its partitions one at a time, each as
    /// its first input arrives).
    pub fn wait_restored(&self, n: usize) {
        let start = Instant::now();
        while std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("dedup window restored")
            .count()
            < n
        {
            assert!(
                start.elapsed() < WAIT,
                "{:?} did not restore {n} partitions",
                self.log
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A member is killed with its test: none outlives a failed assertion.
impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn transform(brokers: &str, registry: &str, dir: &std::path::Path) -> Member {
    let log = std::env::temp_dir().join(format!(
        "hl7bridge-transform-{}-{}.log",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(bin())
        .args([
            "transform",
            "--kafka-brokers",
            brokers,
            "--schema-registry-url",
            registry,
        ])
        .args(["--metrics-listen", ""])
        // A killed member is noticed after this, not librdkafka's default 45 s.
        .args([
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        // Kept for post-mortems: $TMPDIR/hl7bridge-transform-<test pid>-<nanos>.log
        .stderr(file)
        .spawn()
        .unwrap();
    Member { child, log }
}

/// SIGTERM: the member finishes what is in flight and leaves the group.
pub fn terminate(mut m: Member) {
    Command::new("kill")
        .args(["-TERM", &m.child.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    while m.child.try_wait().unwrap().is_none() {
        if start.elapsed() > WAIT {
            let _ = m.child.kill();
            panic!("transform did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL: nothing is flushed or committed.
pub fn kill(mut m: Member) {
    m.child.kill().unwrap();
    m.child.wait().unwrap();
}

/// Waits until the transform group's committed offsets reach the end of
/// every input partition that holds records.
pub fn wait_committed_to_end(cfg: &KafkaConfig, inputs: &[StoredRecord]) {
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for r in inputs {
        let e = ends.entry((r.topic.clone(), r.partition)).or_default();
        *e = (*e).max(r.offset + 1);
    }
    let names: Vec<String> = INPUTS.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    loop {
        let topics = hl7bridge::log::kafka::list_topics(cfg).unwrap();
        let got =
            hl7bridge::stage::kafka::committed_offsets(cfg, "hl7bridge-transform", &topics, &names)
                .unwrap();
        if ends.iter().all(|(k, end)| got.get(k) == Some(end)) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "committed offsets {got:?} did not reach the input ends {ends:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
