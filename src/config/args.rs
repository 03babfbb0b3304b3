//! Command-line flags for settings, one group per component. Each flag is
//! declared once, with its `HL7BRIDGE_*` variable (clap reads it) and the
//! [`Config`] field it overrides; a command flattens the groups it needs.
//! Precedence: flag, else environment, else file, else default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{parse_bytes, ByteCap, Config, Keep};

/// Declares a group of optional flags and its `apply`, which writes each
/// flag given into its config field.
macro_rules! flag_group {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty => $($path:ident).+
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, clap::Args)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: Option<$ty>, )*
        }

        impl $name {
            /// Writes every flag given (or its variable) into `c`.
            pub fn apply(&self, c: &mut Config) {
                $( if let Some(v) = &self.$field { c.$($path).+ = v.clone().into(); } )*
            }
        }
    };
}

flag_group! {
    /// The intake: which topics raw messages go to, and how they are read.
    pub struct IntakeArgs {
        /// Raw topic prefix [default: hl7v2.].
        #[arg(long, env = "HL7BRIDGE_TOPIC_PREFIX")]
        topic_prefix: String => topic_prefix,
        /// Extra message types to accept (comma-separated, e.g. SIU,MDM).
        #[arg(long, env = "HL7BRIDGE_ACCEPT_TYPES", value_delimiter = ',')]
        accept_types: Vec<String> => accept_types,
        /// CX-5 identifier types for the patient key, in order [default: MR,PI].
        #[arg(long, env = "HL7BRIDGE_PATIENT_ID_TYPES", value_delimiter = ',')]
        patient_id_types: Vec<String> => patient_id_types,
        /// Charset for undeclared non-UTF-8 input: windows-1252, 8859/1 or none [default: windows-1252].
        #[arg(long, env = "HL7BRIDGE_CHARSET_FALLBACK")]
        charset_fallback: String => charset_fallback,
    }
}

flag_group! {
    /// The MLLP listener: address, bounds, timeouts, admission and TLS.
    pub struct ListenerArgs {
        /// MLLP listen address [default: 127.0.0.1:2575].
        #[arg(long, env = "HL7BRIDGE_LISTEN")]
        listen: SocketAddr => listen,
        /// Largest MLLP payload, e.g. 1MiB [default: 1MiB].
        #[arg(long, env = "HL7BRIDGE_MAX_MESSAGE_BYTES", value_parser = parse_bytes)]
        max_message_bytes: usize => max_message_bytes,
        /// Concurrent connections [default: 1024].
        #[arg(long, env = "HL7BRIDGE_MAX_CONNECTIONS")]
        max_connections: usize => max_connections,
        /// Frames in flight per connection (pipelining) [default: 16].
        #[arg(long, env = "HL7BRIDGE_MAX_IN_FLIGHT")]
        max_in_flight: usize => max_in_flight,
        /// Longest time to receive one frame, e.g. 30s [default: 30s].
        #[arg(long, env = "HL7BRIDGE_FRAME_TIMEOUT", value_parser = humantime::parse_duration)]
        frame_timeout: Duration => frame_timeout,
        /// Close connections idle this long, e.g. 15m [default: 15m].
        #[arg(long, env = "HL7BRIDGE_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
        idle_timeout: Duration => idle_timeout,
        /// Answer AE/CE if storage has not confirmed within this, e.g. 10s [default: 10s].
        #[arg(long, env = "HL7BRIDGE_ACK_TIMEOUT", value_parser = humantime::parse_duration)]
        ack_timeout: Duration => ack_timeout,
        /// Source addresses allowed to connect, IP or CIDR (repeatable or comma-separated) [default: any].
        #[arg(long = "allow-ip", env = "HL7BRIDGE_ALLOW_IPS", value_delimiter = ',')]
        allow_ips: Vec<String> => allow_ips,
        /// Open connections per source IP; 0 for no cap [default: 0].
        #[arg(long, env = "HL7BRIDGE_MAX_CONNECTIONS_PER_IP")]
        max_connections_per_ip: usize => max_connections_per_ip,
        /// Server certificate chain (PEM); turns TLS on, with --tls-key.
        #[arg(long, env = "HL7BRIDGE_TLS_CERT")]
        tls_cert: PathBuf => tls.cert,
        /// Private key of --tls-cert (PEM).
        #[arg(long, env = "HL7BRIDGE_TLS_KEY")]
        tls_key: PathBuf => tls.key,
        /// CA bundle (PEM): require client certificates it signed (mTLS).
        #[arg(long, env = "HL7BRIDGE_TLS_CLIENT_CA")]
        tls_client_ca: PathBuf => tls.client_ca,
        /// Disconnect clients that have not finished the TLS handshake by then [default: 10s].
        #[arg(long, env = "HL7BRIDGE_TLS_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration)]
        tls_handshake_timeout: Duration => tls.handshake_timeout,
    }
}

flag_group! {
    /// The streaming stage, its registry and the operator's endpoints.
    pub struct StageArgs {
        /// Output topic prefix [default: fhir.].
        #[arg(long, env = "HL7BRIDGE_OUTPUT_PREFIX")]
        output_prefix: String => transform.output_prefix,
        /// Mapping file replacing the built-in mappings/tables.toml.
        #[arg(long, env = "HL7BRIDGE_MAPPINGS")]
        mappings: PathBuf => transform.mappings,
        /// Consumer group (Kafka) or cursor name (embedded) [default: hl7bridge-transform].
        #[arg(long, env = "HL7BRIDGE_TRANSFORM_GROUP")]
        group: String => transform.group,
        /// Confluent-compatible schema registry URL; without it the embedded registry is used.
        #[arg(long, env = "HL7BRIDGE_SCHEMA_REGISTRY_URL")]
        schema_registry_url: String => transform.schema_registry_url,
        /// Where the embedded registry serves its HTTP API ("" for nowhere) [default: 127.0.0.1:2576].
        #[arg(long, env = "HL7BRIDGE_REGISTRY_LISTEN")]
        registry_listen: String => transform.registry_listen,
        /// Where /metrics, /healthz and /readyz are served ("" for nowhere) [default: 127.0.0.1:9464 for serve, 127.0.0.1:9465 for transform].
        #[arg(long, env = "HL7BRIDGE_METRICS_LISTEN")]
        metrics_listen: String => metrics_listen,
        /// Sender duplicates are emitted once within this window, e.g. 7d [default: 7d].
        #[arg(long, env = "HL7BRIDGE_DEDUP_WINDOW", value_parser = humantime::parse_duration)]
        dedup_window: Duration => transform.dedup_window,
        /// Embedded store: the stage yields to busy ingest while fewer records than this wait; 0 never [default: 50000].
        #[arg(long, env = "HL7BRIDGE_MAX_LAG")]
        max_lag: u64 => transform.max_lag,
    }
}

flag_group! {
    /// Retention on the embedded store, per topic class (`[retention]`).
    pub struct RetentionArgs {
        /// Keep raw records this long once the stage has processed them, e.g. 7d, or forever [default: 7d].
        #[arg(long, env = "HL7BRIDGE_RETENTION_RAW")]
        retention_raw: Keep => retention.raw,
        /// Cap on raw record bytes, e.g. 20GiB, or none [default: none].
        #[arg(long, env = "HL7BRIDGE_RETENTION_RAW_BYTES")]
        retention_raw_bytes: ByteCap => retention.raw_bytes,
        /// Keep FHIR records this long, e.g. 7d, or forever [default: 7d].
        #[arg(long, env = "HL7BRIDGE_RETENTION_FHIR")]
        retention_fhir: Keep => retention.fhir,
        /// Cap on FHIR record bytes, e.g. 20GiB, or none [default: none].
        #[arg(long, env = "HL7BRIDGE_RETENTION_FHIR_BYTES")]
        retention_fhir_bytes: ByteCap => retention.fhir_bytes,
        /// Keep dead letters this long (no byte cap), e.g. 30d, or forever [default: 30d].
        #[arg(long, env = "HL7BRIDGE_RETENTION_DLQ")]
        retention_dlq: Keep => retention.dlq,
    }
}

/// Where records are kept, and the config file: every command that opens
/// the log takes these.
#[derive(Debug, Clone, clap::Args)]
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

impl StoreArgs {
    /// The config file (or the defaults) with these flags applied.
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
