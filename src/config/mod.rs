//! Settings: TOML file, then `HL7BRIDGE_*` environment variables, then flags.
//!
//! clap reads each flag's environment variable itself, so a flag value is
//! "flag, else env"; it overrides the file, which overrides the defaults here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod args;
mod retention;

pub use retention::{ByteCap, Keep, RetentionConfig};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// MLLP listen address.
    pub listen: SocketAddr,
    /// Where the embedded store lives.
    pub data_dir: PathBuf,
    /// Prefix of raw topics (`hl7v2.` gives `hl7v2.adt`, `hl7v2.dlq`).
    pub topic_prefix: String,
    /// Message types accepted besides ADT, ORU and ORM.
    pub accept_types: Vec<String>,
    /// Partitions of each new topic.
    pub partitions: u32,
    /// CX-5 identifier types, in order of preference, for the patient key.
    pub patient_id_types: Vec<String>,
    /// Charset for undeclared non-UTF-8 bytes (`windows-1252`, `8859/1`, or `none` to reject).
    pub charset_fallback: String,
    /// Largest MLLP payload accepted.
    pub max_message_bytes: usize,
    pub max_connections: usize,
    /// Open connections per source IP address; 0: no per-IP cap.
    pub max_connections_per_ip: usize,
    /// Source addresses allowed to connect (`10.1.2.3`, `10.0.0.0/8`, `fd00::/8`); empty: any.
    pub allow_ips: Vec<String>,
    /// Frames per connection being stored/answered at once (pipelining depth).
    pub max_in_flight: usize,
    /// Longest time from a start block to its end block.
    #[serde(with = "humantime_serde")]
    pub frame_timeout: Duration,
    /// A connection with nothing in flight and no traffic is closed after this.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest wait for a durable append before answering AE/CE.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// `text` or `json`.
    pub log_format: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; empty: nowhere.
    pub metrics_listen: String,
    /// The Kafka backend; used instead of the embedded store when `brokers` is set.
    pub kafka: crate::log::kafka::KafkaConfig,
    /// The streaming stage (v2 -> FHIR R4 Avro).
    pub transform: TransformConfig,
    /// TLS (and mTLS with a sender allowlist) on the MLLP listener.
    pub tls: TlsConfig,
    /// `[retention]` (embedded store only).
    pub retention: RetentionConfig,
}

/// `[tls]` in the config file. TLS is on when `cert` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM, leaf first).
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA bundle (PEM); when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
    /// A client that has not finished its handshake by then is disconnected.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Which MSH-4 sending facilities each client certificate may send as.
    /// Empty: any certificate the CA signed may send as any facility.
    pub allow: Vec<SenderAllow>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            client_ca: None,
            handshake_timeout: Duration::from_secs(10),
            allow: Vec::new(),
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// `[[tls.allow]]`: a client certificate, by subject CN or by one of its
/// SANs (DNS name, IP address, e-mail or URI), and the MSH-4 values it may
/// send as (the whole field or its first component; `*` for any).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SenderAllow {
    #[serde(default)]
    pub cn: Option<String>,
    #[serde(default)]
    pub san: Option<String>,
    pub facilities: Vec<String>,
}

/// `[transform]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TransformConfig {
    /// Run the stage inside `serve` (embedded store only; on Kafka run `hl7bridge transform`).
    pub enabled: bool,
    /// Output topic prefix: `fhir.` gives fhir.encounter, fhir.observation, fhir.dlq.
    pub output_prefix: String,
    /// Mapping file replacing the built-in `mappings/tables.toml`.
    pub mappings: Option<PathBuf>,
    /// How long a (sending facility, MSH-10, bytes) triple is remembered.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Consumer group (Kafka) or cursor name (embedded).
    pub group: String,
    /// An external Confluent-compatible registry; empty uses the embedded one.
    pub schema_registry_url: String,
    /// Where the embedded registry serves its HTTP API; empty turns it off.
    pub registry_listen: String,
    /// Write to partition = murmur2(key) when input and output partition counts
    /// differ, giving up exactly-once (ids stay deterministic).
    pub at_least_once: bool,
    /// Where `hl7bridge transform` serves /metrics, /healthz and /readyz: a
    /// port of its own, so it runs beside `serve --no-transform` on one host
    /// with the defaults.
    pub metrics_listen: String,
    /// Embedded store: while the stage is fewer input records than this
    /// behind, it yields to a busy ingest (ACKs first); beyond, it runs flat
    /// out. 0: never yield.
    pub max_lag: u64,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            output_prefix: "fhir.".into(),
            mappings: None,
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            group: "hl7bridge-transform".into(),
            schema_registry_url: String::new(),
            registry_listen: "127.0.0.1:2576".into(),
            at_least_once: false,
            metrics_listen: "127.0.0.1:9465".into(),
            max_lag: 50_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2575)),
            data_dir: PathBuf::from("./hl7bridge-data"),
            topic_prefix: "hl7v2.".into(),
            accept_types: Vec::new(),
            partitions: 6,
            patient_id_types: crate::hl7::patient_key::default_priority(),
            charset_fallback: "windows-1252".into(),
            max_message_bytes: 1024 * 1024,
            max_connections: 1024,
            max_connections_per_ip: 0,
            allow_ips: Vec::new(),
            max_in_flight: 16,
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15 * 60),
            ack_timeout: Duration::from_secs(10),
            log_format: "text".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            kafka: Default::default(),
            transform: Default::default(),
            tls: Default::default(),
            retention: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        Ok(cfg)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, reason: &str| {
            Err(ConfigError::Invalid {
                name,
                reason: reason.into(),
            })
        };
        if self.partitions == 0 {
            return invalid("partitions", "must be at least 1");
        }
        if self.max_message_bytes < 64 {
            return invalid("max_message_bytes", "must be at least 64 bytes");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight", "must be at least 1");
        }
        for (name, d) in [
            ("frame_timeout", self.frame_timeout),
            ("idle_timeout", self.idle_timeout),
            ("ack_timeout", self.ack_timeout),
        ] {
            if d.is_zero() {
                return invalid(name, "must be greater than zero");
            }
        }
        let topic_safe = |p: &str| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        for (name, prefix) in [
            ("topic_prefix", &self.topic_prefix),
            ("transform.output_prefix", &self.transform.output_prefix),
        ] {
            if !topic_safe(prefix) {
                return invalid(
                    name,
                    "may contain only ASCII letters, digits, '.', '_' and '-'",
                );
            }
        }
        if crate::hl7::Charset::fallback_from_config(&self.charset_fallback).is_err() {
            return invalid(
                "charset_fallback",
                "unknown character set (try windows-1252, 8859/1 or none)",
            );
        }

        for (name, addr) in [
            ("metrics_listen", &self.metrics_listen),
            ("transform.metrics_listen", &self.transform.metrics_listen),
        ] {
            if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
                return invalid(name, "must be host:port, or empty for none");
            }
        }
        if !self.transform.registry_listen.is_empty()
            && self
                .transform
                .registry_listen
                .parse::<SocketAddr>()
                .is_err()
        {
            return invalid(
                "transform.registry_listen",
                "must be host:port, or empty for none",
            );
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return invalid("log_format", "must be text or json");
        }
        if let Err(e) = crate::server::admission::IpAllowlist::parse(&self.allow_ips) {
            return Err(ConfigError::Invalid {
                name: "allow_ips",
                reason: e.to_string(),
            });
        }
        self.validate_tls()
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let invalid = |name, reason: &str| {
            Err(ConfigError::Invalid {
                name,
                reason: reason.into(),
            })
        };
        let t = &self.tls;
        if t.handshake_timeout.is_zero() {
            return invalid("tls.handshake_timeout", "must be greater than zero");
        }
        match (&t.cert, &t.key) {
            (Some(_), None) => return invalid("tls.key", "is required when tls.cert is set"),
            (None, Some(_)) => return invalid("tls.cert", "is required when tls.key is set"),
            _ => {}
        }
        if t.client_ca.is_some() && t.cert.is_none() {
            return invalid("tls.client_ca", "needs tls.cert and tls.key (TLS) as well");
        }
        if !t.allow.is_empty() && t.client_ca.is_none() {
            return invalid(
                "tls.allow",
                "needs tls.client_ca: only verified client certificates can be matched",
            );
        }
        for a in &t.allow {
            match (&a.cn, &a.san) {
                (Some(v), None) | (None, Some(v)) if !v.trim().is_empty() => {}
                _ => {
                    return invalid(
                        "tls.allow",
                        "each entry needs exactly one non-empty `cn` or `san`",
                    )
                }
            }
            if a.facilities.is_empty() || a.facilities.iter().any(|f| f.trim().is_empty()) {
                return invalid(
                    "tls.allow",
                    "each entry needs a non-empty list of `facilities` (\"*\" for any)",
                );
            }
        }
        Ok(())
    }
}

/// Parses a point in time given as an age (`10m`, `2h`, `7d`: that long
/// ago) or an RFC 3339 time, into milliseconds since the Unix epoch: what
/// `--since` and `--until` take.
pub fn parse_instant(s: &str) -> Result<i64, String> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(s) {
        Ok(age) => now.checked_sub(age).ok_or("age reaches before 1970")?,
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|_| {
            format!("expected an age like 10m or 2h, or an RFC 3339 time, got {s:?}")
        })?,
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| "time before 1970".to_owned())
}

/// Parses a byte size: `1048576`, `512KiB`, `1MiB`, `2MB`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid byte size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => {
            return Err(format!(
                "invalid byte size unit in {s:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("byte size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_contract() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:2575");
        assert_eq!(c.max_message_bytes, 1 << 20);
        assert_eq!(c.ack_timeout, Duration::from_secs(10));
        assert_eq!(c.frame_timeout, Duration::from_secs(30));
        assert_eq!(c.max_connections, 1024);
        c.validate().unwrap();
    }

    #[test]
    fn toml_durations_are_human_readable_and_typos_are_errors() {
        let c: Config = toml::from_str("ack_timeout = \"250ms\"\nidle_timeout = \"2m\"").unwrap();
        assert_eq!(c.ack_timeout, Duration::from_millis(250));
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        assert!(toml::from_str::<Config>("ack_timout = \"1s\"").is_err());
    }

    #[test]
    fn tls_and_admission_settings_are_checked() {
        let ok: Config = toml::from_str(
            "allow_ips = [\"10.0.0.0/8\", \"127.0.0.1\"]\nmax_connections_per_ip = 4\n[tls]\ncert = \"s.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n[[tls.allow]]\ncn = \"lab-gw\"\nfacilities = [\"LAB\"]\n",
        )
        .unwrap();
        ok.validate().unwrap();
        assert!(ok.tls.enabled());
        let bad = |text: &str| {
            toml::from_str::<Config>(text)
                .unwrap()
                .validate()
                .unwrap_err()
        };
        assert!(bad("allow_ips = [\"10.0.0.0/33\"]")
            .to_string()
            .contains("allow_ips"));
        assert!(bad("[tls]\ncert = \"s.pem\"")
            .to_string()
            .contains("tls.key"));
        assert!(bad(
            "[tls]\ncert = \"s\"\nkey = \"k\"\n[[tls.allow]]\ncn = \"x\"\nfacilities = [\"A\"]"
        )
        .to_string()
        .contains("tls.client_ca"));
        assert!(bad("[tls]\ncert = \"s\"\nkey = \"k\"\nclient_ca = \"c\"\n[[tls.allow]]\ncn = \"x\"\nsan = \"y\"\nfacilities = [\"A\"]")
            .to_string()
            .contains("tls.allow"));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("2000"), Ok(2000));
        assert!(parse_bytes("1XB").is_err());
    }
}
