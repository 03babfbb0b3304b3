//! The `hl7bridge` command.

mod convert;
mod inspect;
mod reconcile;
mod replay;
mod serve;
mod tail;
mod topics;
mod transform;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{parse_bytes, Config};

#[derive(Debug, Parser)]
#[command(
    name = "hl7bridge",
    version,
    about = "HL7 v2 over MLLP, ACKed only after durable storage"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Listen for MLLP and store every message before ACKing it.
    Serve(Box<ServeArgs>),
    /// List topics with their partitions and record counts, or create them on Kafka.
    Topics(topics::TopicsArgs),
    /// Print records of a topic as JSON Lines (or raw HL7).
    Tail(tail::TailArgs),
    /// Send files of HL7 messages over MLLP and check every ACK (also the load generator).
    Replay(replay::ReplayArgs),
    /// Run the streaming stage (v2 -> FHIR R4 Avro) on its own: a Kafka
    /// consumer group, or the embedded store in --data-dir.
    Transform(transform::TransformArgs),
    /// Print FHIR R4 resources mapped from HL7 v2 files, offline.
    Convert(convert::ConvertArgs),
    /// Print HL7 v2 files as a readable tree (named fields, components,
    /// decoded escapes) and flag structural problems; exits 1 if any.
    Inspect(inspect::InspectArgs),
    /// Check that every raw record has its outcome on the FHIR topics (or is a
    /// counted no-content or sender duplicate); exit 1 on any finding.
    Reconcile(reconcile::ReconcileArgs),
    /// Check mapping files.
    Mappings {
        #[command(subcommand)]
        action: MappingsAction,
    },
}

#[derive(Debug, Subcommand)]
enum MappingsAction {
    /// Validate code tables (the built-in ones, or --mappings FILE).
    Check {
        #[arg(long)]
        mappings: Option<PathBuf>,
    },
}

/// Settings shared by every command that opens the store.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// TOML config file.
    #[arg(long, env = "HL7BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Embedded store directory [default: ./hl7bridge-data].
    #[arg(long, env = "HL7BRIDGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "HL7BRIDGE_LOG_FORMAT")]
    pub log_format: Option<String>,

    /// Kafka bootstrap servers (host:port,...); selects the Kafka backend.
    #[arg(long, env = "HL7BRIDGE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// A librdkafka property, KEY=VALUE (repeatable), e.g. -X security.protocol=SSL.
    #[arg(short = 'X', long = "kafka-property", value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stage: transform::StageArgs,
    /// Do not run the streaming stage inside serve (run `hl7bridge transform` instead).
    #[arg(long)]
    no_transform: bool,
    /// MLLP listen address [default: 127.0.0.1:2575].
    #[arg(long, env = "HL7BRIDGE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Partitions of each new topic [default: 6].
    #[arg(long, env = "HL7BRIDGE_PARTITIONS")]
    partitions: Option<u32>,
    /// Raw topic prefix [default: hl7v2.].
    #[arg(long, env = "HL7BRIDGE_TOPIC_PREFIX")]
    topic_prefix: Option<String>,
    /// Extra message types to accept (comma-separated, e.g. SIU,MDM).
    #[arg(long, env = "HL7BRIDGE_ACCEPT_TYPES", value_delimiter = ',')]
    accept_types: Option<Vec<String>>,
    /// CX-5 identifier types for the patient key, in order [default: MR,PI].
    #[arg(long, env = "HL7BRIDGE_PATIENT_ID_TYPES", value_delimiter = ',')]
    patient_id_types: Option<Vec<String>>,
    /// Charset for undeclared non-UTF-8 input: windows-1252, 8859/1 or none [default: windows-1252].
    #[arg(long, env = "HL7BRIDGE_CHARSET_FALLBACK")]
    charset_fallback: Option<String>,
    /// Largest MLLP payload, e.g. 1MiB [default: 1MiB].
    #[arg(long, env = "HL7BRIDGE_MAX_MESSAGE_BYTES", value_parser = parse_bytes)]
    max_message_bytes: Option<usize>,
    /// Concurrent connections [default: 1024].
    #[arg(long, env = "HL7BRIDGE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Frames in flight per connection (pipelining) [default: 16].
    #[arg(long, env = "HL7BRIDGE_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Longest time to receive one frame, e.g. 30s [default: 30s].
    #[arg(long, env = "HL7BRIDGE_FRAME_TIMEOUT", value_parser = humantime::parse_duration)]
    frame_timeout: Option<Duration>,
    /// Close connections idle this long, e.g. 15m [default: 15m].
    #[arg(long, env = "HL7BRIDGE_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Answer AE/CE if storage has not confirmed within this, e.g. 10s [default: 10s].
    #[arg(long, env = "HL7BRIDGE_ACK_TIMEOUT", value_parser = humantime::parse_duration)]
    ack_timeout: Option<Duration>,
    /// Source addresses allowed to connect, IP or CIDR (repeatable or comma-separated) [default: any].
    #[arg(long = "allow-ip", env = "HL7BRIDGE_ALLOW_IPS", value_delimiter = ',')]
    allow_ips: Option<Vec<String>>,
    /// Open connections per source IP; 0 for no cap [default: 0].
    #[arg(long, env = "HL7BRIDGE_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Server certificate chain (PEM); turns TLS on, with --tls-key.
    #[arg(long, env = "HL7BRIDGE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "HL7BRIDGE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM): require client certificates it signed (mTLS).
    #[arg(long, env = "HL7BRIDGE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Disconnect clients that have not finished the TLS handshake by then [default: 10s].
    #[arg(long, env = "HL7BRIDGE_TLS_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration)]
    tls_handshake_timeout: Option<Duration>,
}

impl StoreArgs {
    /// File config with this command's overrides applied.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref())?;
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.log_format {
            c.log_format = v.clone();
        }

        if let Some(v) = &self.kafka_brokers {
            c.kafka.brokers = v.clone();
        }
        for (k, v) in &self.kafka_properties {
            c.kafka.properties.insert(k.clone(), v.clone());
        }
        Ok(c)
    }
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = self.store.config()?;
        self.stage.apply(&mut c);
        if self.no_transform {
            c.transform.enabled = false;
        }
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        set!(
            listen,
            partitions,
            topic_prefix,
            accept_types,
            patient_id_types,
            charset_fallback,
            max_message_bytes,
            max_connections,
            max_in_flight,
            frame_timeout,
            idle_timeout,
            ack_timeout,
            allow_ips,
            max_connections_per_ip
        );
        if let Some(v) = &self.tls_cert {
            c.tls.cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            c.tls.key = Some(v.clone());
        }
        if let Some(v) = &self.tls_client_ca {
            c.tls.client_ca = Some(v.clone());
        }
        if let Some(v) = self.tls_handshake_timeout {
            c.tls.handshake_timeout = v;
        }
        c.validate()?;
        Ok(c)
    }
}

fn check_mappings(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (tables, name) = match &path {
        Some(p) => (crate::transform::Tables::load(p)?, p.display().to_string()),
        None => (
            crate::transform::Tables::builtin(),
            "built-in mappings/tables.toml".to_owned(),
        ),
    };
    println!(
        "{name}: ok ({} event, {} patient-class, {} observation-status codes; default timezone {}; visit number PV1-{}; {} sender override(s))",
        tables.event_encounter_status.len(),
        tables.patient_class_status.len(),
        tables.observation_status.len(),
        tables.default_timezone,
        tables.visit_number_field,
        tables.senders.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Topics(args) => topics::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Transform(args) => transform::run(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Mappings {
            action: MappingsAction::Check { mappings },
        } => check_mappings(mappings),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hl7bridge: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
