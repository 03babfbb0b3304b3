//! `[retention]`: how long, and how many bytes, the embedded store keeps
//! per topic class (raw, FHIR, dead letters). Kafka topics have their own
//! `retention.ms`/`retention.bytes`, set on the broker.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// An age limit: a duration such as `7d`, or `forever`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep(pub Option<Duration>);

impl FromStr for Keep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("forever") {
            return Ok(Keep(None));
        }
        let d = humantime::parse_duration(s)
            .map_err(|_| format!("expected an age like 7d or 12h, or \"forever\", got {s:?}"))?;
        if d.is_zero() {
            return Err(
                "an age of zero would delete records as they arrive; use \"forever\" to keep them"
                    .into(),
            );
        }
        Ok(Keep(Some(d)))
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A byte cap: `10GiB`, `500MB`, a number of bytes, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCap(pub Option<u64>);

impl FromStr for ByteCap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(ByteCap(None));
        }
        match super::parse_bytes(s)? {
            0 => Err(
                "a cap of zero would delete records as they arrive; use \"none\" for no cap".into(),
            ),
            n => Ok(ByteCap(Some(n as u64))),
        }
    }
}

impl<'de> Deserialize<'de> for ByteCap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string().parse(),
            Raw::Text(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Raw records, once the stage has processed them.
    pub raw: Keep,
    pub raw_bytes: ByteCap,
    /// FHIR records.
    pub fhir: Keep,
    pub fhir_bytes: ByteCap,
    /// Dead letters (`hl7v2.dlq`, `fhir.dlq`): an age only, never a byte
    /// cap, so a dead letter is never deleted before anyone could look.
    pub dlq: Keep,
    /// How often a sweep runs.
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
}

impl Default for RetentionConfig {
    /// Kafka's default `retention.ms` for data, a month for dead letters.
    fn default() -> Self {
        Self {
            raw: Keep(Some(Duration::from_secs(7 * 24 * 3600))),
            raw_bytes: ByteCap(None),
            fhir: Keep(Some(Duration::from_secs(7 * 24 * 3600))),
            fhir_bytes: ByteCap(None),
            dlq: Keep(Some(Duration::from_secs(30 * 24 * 3600))),
            check_every: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_caps_read_like_kafka_settings() {
        let r: RetentionConfig = toml::from_str(
            "raw = \"3d\"\nraw_bytes = \"20GiB\"\nfhir = \"forever\"\nfhir_bytes = 1048576\ndlq = \"90d\"\ncheck_every = \"10s\"",
        )
        .unwrap();
        assert_eq!(r.raw, Keep(Some(Duration::from_secs(3 * 86400))));
        assert_eq!(r.raw_bytes, ByteCap(Some(20 << 30)));
        assert_eq!(r.fhir, Keep(None));
        assert_eq!(r.fhir_bytes, ByteCap(Some(1 << 20)));
        assert_eq!(r.dlq, Keep(Some(Duration::from_secs(90 * 86400))));
        assert_eq!(r.check_every, Duration::from_secs(10));
    }

    #[test]
    fn zero_limits_and_dead_letter_caps_are_refused() {
        assert!(toml::from_str::<RetentionConfig>("raw = \"0s\"").is_err());
        assert!(toml::from_str::<RetentionConfig>("fhir_bytes = 0").is_err());
        // A byte cap on dead letters could delete one nobody has seen.
        assert!(toml::from_str::<RetentionConfig>("dlq_bytes = \"1GiB\"").is_err());
    }
}
