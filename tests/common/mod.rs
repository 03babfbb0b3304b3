//! Shared test harness: a real server on an ephemeral port, a real MLLP client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hl7bridge::intake::{Intake, IntakeConfig};
use hl7bridge::log::embedded::{EmbeddedConfig, EmbeddedLog, EmbeddedReader};
use hl7bridge::log::kafka::{KafkaConfig, KafkaLog};
use hl7bridge::log::Log;
use hl7bridge::mllp;
use hl7bridge::record::StoredRecord;
use hl7bridge::server::{ConnectionLimits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn limits() -> ConnectionLimits {
    ConnectionLimits {
        max_message_bytes: 1 << 20,
        max_in_flight: 16,
        frame_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        ack_timeout: Duration::from_secs(10),
    }
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    /// Set when the server runs on Kafka; records are then read from the broker.
    pub kafka: Option<KafkaConfig>,
}

pub const RAW_TOPICS: [&str; 4] = ["hl7v2.adt", "hl7v2.oru", "hl7v2.orm", "hl7v2.dlq"];

/// Kafka settings for a test broker, with the raw topics created (6 partitions).
pub async fn kafka_config(brokers: &str) -> KafkaConfig {
    let cfg = KafkaConfig {
        brokers: brokers.to_owned(),
        ..Default::default()
    };
    let names: Vec<String> = RAW_TOPICS.iter().map(|s| s.to_string()).collect();
    hl7bridge::log::kafka::create_topics(&cfg, &names, 6, 1)
        .await
        .expect("create topics");
    cfg
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(limits(), IntakeConfig::default(), |l| l).await
    }

    /// Starts a server on the embedded store; `wrap` may decorate the log
    /// (fault injection) before the server gets it.
    pub async fn start_with(
        limits: ConnectionLimits,
        intake: IntakeConfig,
        wrap: impl FnOnce(Arc<dyn Log>) -> Arc<dyn Log>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            Arc::new(EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap());
        Self::start_on(log, None, dir, limits, intake, wrap).await
    }

    /// A server on the Kafka backend.
    pub async fn start_kafka(cfg: KafkaConfig, limits: ConnectionLimits) -> Self {
        let log: Arc<dyn Log> = Arc::new(KafkaLog::new(&cfg, limits.ack_timeout).unwrap());
        Self::start_on(
            log,
            Some(cfg),
            tempfile::tempdir().unwrap(),
            limits,
            IntakeConfig::default(),
            |l| l,
        )
        .await
    }

    async fn start_on(
        log: Arc<dyn Log>,
        kafka: Option<KafkaConfig>,
        dir: tempfile::TempDir,
        limits: ConnectionLimits,
        intake: IntakeConfig,
        wrap: impl FnOnce(Arc<dyn Log>) -> Arc<dyn Log>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server {
            listener,
            intake: Arc::new(Intake::new(intake)),
            log: wrap(log),
            limits,
            max_connections: 64,
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server.run(shutdown.clone()));
        Self {
            addr,
            dir,
            shutdown,
            handle,
            kafka,
        }
    }

    pub fn reader(&self) -> EmbeddedReader {
        EmbeddedReader::open(self.dir.path()).unwrap()
    }

    /// Every record of a topic, from whichever backend the server runs on.
    pub fn records(&self, topic: &str) -> Vec<StoredRecord> {
        match &self.kafka {
            None => self.reader().read(topic, 0, 1_000_000).unwrap(),
            Some(cfg) => tokio::task::block_in_place(|| read_kafka_topic(cfg, topic)),
        }
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// A plain MLLP client: frame out, frame in.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, payload: &[u8]) {
        self.stream.write_all(&mllp::frame(payload)).await.unwrap();
    }

    /// Like `connect`, but None when nothing listens (a peer that is down).
    pub async fn try_connect(addr: std::net::SocketAddr) -> Option<Self> {
        let stream = TcpStream::connect(addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        Some(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// Like `send`, but false when the connection is broken.
    pub async fn try_send(&mut self, payload: &[u8]) -> bool {
        self.stream.write_all(&mllp::frame(payload)).await.is_ok()
    }

    /// Reads one MLLP frame; None on EOF or after `wait` without a frame.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        read_frame(&mut self.stream, &mut self.buf, wait).await
    }

    pub async fn recv(&mut self) -> Vec<u8> {
        self.recv_within(Duration::from_secs(15))
            .await
            .expect("an ACK within 15 s")
    }

    pub async fn roundtrip(&mut self, payload: &[u8]) -> Ack {
        self.send(payload).await;
        Ack::parse(&self.recv().await)
    }

    /// True when the server has closed the connection (EOF within `wait`).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// An ACK as segments of fields (field separator taken from its MSH).
#[derive(Debug, Clone)]
pub struct Ack {
    pub text: String,
    pub segments: Vec<Vec<String>>,
}

impl Ack {
    pub fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let fs = text.chars().nth(3).unwrap_or('|');
        let segments = text
            .split('\r')
            .filter(|s| !s.is_empty())
            .map(|s| s.split(fs).map(str::to_owned).collect())
            .collect();
        Self { text, segments }
    }

    pub fn segment(&self, name: &str) -> Option<&Vec<String>> {
        self.segments.iter().find(|s| s[0] == name)
    }

    pub fn all(&self, name: &str) -> Vec<&Vec<String>> {
        self.segments.iter().filter(|s| s[0] == name).collect()
    }

    /// MSA-1.
    pub fn code(&self) -> &str {
        self.segment("MSA").map(|m| m[1].as_str()).unwrap_or("")
    }

    /// MSA-2.
    pub fn control_id(&self) -> &str {
        self.segment("MSA")
            .and_then(|m| m.get(2))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Whether `text` holds `value` as a whole, not inside a longer run of
/// letters or digits. A search for PHI must match a field or component: a
/// generated ACK control ID such as `B1796604029000000010` holds the digits
/// of the fixture SSN `900000001` by chance on some seconds, and that is not
/// a leak.
pub fn contains_whole(text: &str, value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    text.match_indices(value).any(|(at, _)| {
        !word(text[..at].chars().next_back()) && !word(text[at + value.len()..].chars().next())
    })
}

/// A minimal valid message with a given control ID and patient.
pub fn adt(control_id: &str, mrn: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|TESTAPP|TESTFAC|HL7BRIDGE|INT|20261122120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\rEVN|A01|20261122120000\rPID|1||{mrn}^^^GENHOSP^MR||TESTPATIENT^ALPHA\rPV1|1|I|4WEST^401^A\r"
    )
    .into_bytes()
}
pub mod member;
pub mod process;
pub mod tansu;

/// Reads a whole Kafka topic with a consumer that commits nothing.
pub fn read_kafka_topic(cfg: &KafkaConfig, topic: &str) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    hl7bridge::log::kafka::tail(cfg, topic, true, false, |r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}
pub mod proxy;
pub mod rng;

/// An ORU^R01 with `obx` numeric results, a visit, and a given control ID and patient.
pub fn oru(control_id: &str, mrn: &str, obx: usize) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|LABAPP|TESTFAC|HL7BRIDGE|INT|20261122120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1\rPID|1||{mrn}^^^GENHOSP^MR||TESTPATIENT^ALPHA\rPV1|1|I|4WEST^401^A|||||||||||||||V-{mrn}^^^GENHOSP^VN\rOBR|1|PLC-{control_id}|FIL-{control_id}|24331-1^Lipid panel^LN||20261122070000|20261122081500\r"
    );
    for i in 1..=obx {
        m.push_str(&format!(
            "OBX|{i}|NM|2345-{i}^Analyte {i}^LN||{i}.5|mg/dL^mg/dL^UCUM|1-9|N|||F|||20261122081500\r"
        ));
    }
    m.into_bytes()
}
pub mod secure;
pub mod stage;
pub mod synthetic;

/// Reads one MLLP frame from `stream`, keeping unread bytes in `buf`;
/// None on EOF, error, or nothing within `wait`. For TCP and TLS clients alike.
pub async fn read_frame<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    wait: Duration,
) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(start) = buf.iter().position(|&b| b == mllp::START) {
            if let Some(end) = buf[start..]
                .windows(2)
                .position(|w| w == [mllp::END, mllp::TRAILER])
            {
                let payload = buf[start + 1..start + end].to_vec();
                buf.drain(..start + end + 2);
                return Some(payload);
            }
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
