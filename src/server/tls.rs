//! TLS on the MLLP listener (rustls), optional mTLS, and the sender
//! allowlist that ties a client certificate to the MSH-4 sending
//! facilities it may send as.
//!
//! The crypto provider is aws-lc-rs, chosen explicitly so that another
//! provider compiled into the binary cannot make the choice ambiguous.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{SenderAllow, TlsConfig};
use crate::intake::{FacilitySet, SenderPolicy};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path}: no PEM {kind} found")]
    Empty {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("client CA {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })
}

/// Every certificate in a PEM file.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.into(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1). Errors
/// never quote the file's content.
pub fn load_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what,
            path: path.into(),
            kind: "private key",
        },
        _ => TlsError::Pem {
            what,
            path: path.into(),
            reason: "not a readable PEM private key".into(),
        },
    })
}

fn root_store(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(what, path)? {
        roots.add(c).map_err(|e| TlsError::ClientCa {
            path: path.into(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// What a verified client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerIdentity {
    /// The subject DN, e.g. `CN=lab-gateway, O=General Hospital`.
    pub subject: String,
    /// The subject's first common name.
    pub cn: Option<String>,
    /// Subject alternative names: DNS names, IP addresses, e-mail addresses, URIs.
    pub sans: Vec<String>,
}

impl PeerIdentity {
    /// Reads a DER certificate; None if it cannot be parsed (rustls has
    /// verified it by then, so that does not happen in practice).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let cn = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned);
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                        sans.push((*s).to_owned())
                    }
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            sans.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(Self {
            subject: subject.to_string(),
            cn,
            sans,
        })
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.subject)
    }
}

/// `[[tls.allow]]` entries, matched against a peer's CN and SANs.
#[derive(Debug, Clone, Default)]
pub struct SenderAllowlist {
    entries: Vec<SenderAllow>,
}

impl SenderAllowlist {
    pub fn new(entries: Vec<SenderAllow>) -> Self {
        Self { entries }
    }

    /// The facilities `peer` may send as: the union over every entry whose
    /// `cn` equals its common name or whose `san` equals one of its SANs
    /// (DNS names without regard to case). No matching entry: none at all.
    pub fn facilities_for(&self, peer: &PeerIdentity) -> FacilitySet {
        let mut set = FacilitySet::default();
        for e in &self.entries {
            let by_cn =
                e.cn.as_deref()
                    .is_some_and(|cn| peer.cn.as_deref() == Some(cn.trim()));
            let by_san = e
                .san
                .as_deref()
                .is_some_and(|san| peer.sans.iter().any(|s| s.eq_ignore_ascii_case(san.trim())));
            if by_cn || by_san {
                set.extend(e.facilities.iter().cloned());
            }
        }
        set
    }
}

/// The listener's TLS side: the acceptor, the handshake bound, and what a
/// client certificate may send as.
pub struct TlsListener {
    acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
    mutual: bool,
    allowlist: Option<SenderAllowlist>,
}

impl TlsListener {
    /// Builds the acceptor from `[tls]`; None when TLS is off (no `cert`).
    pub fn from_config(cfg: &TlsConfig) -> Result<Option<Self>, TlsError> {
        let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
            return Ok(None);
        };
        let chain = load_certs("TLS certificate", cert)?;
        let key = load_key("TLS key", key)?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let server = match &cfg.client_ca {
            Some(ca) => {
                let roots = root_store("client CA", ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: ca.clone(),
                            reason: e.to_string(),
                        })?;
                builder
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)?
            }
            None => builder.with_no_client_auth().with_single_cert(chain, key)?,
        };
        Ok(Some(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            handshake_timeout: cfg.handshake_timeout,
            mutual: cfg.client_ca.is_some(),
            allowlist: (!cfg.allow.is_empty()).then(|| SenderAllowlist::new(cfg.allow.clone())),
        }))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub fn mutual(&self) -> bool {
        self.mutual
    }

    pub fn has_allowlist(&self) -> bool {
        self.allowlist.is_some()
    }

    /// The policy for a connection whose handshake presented `chain` (leaf
    /// first). None without mTLS. With mTLS but no allowlist, the identity
    /// is recorded and any facility is allowed.
    pub fn policy_for(&self, chain: Option<&[CertificateDer<'_>]>) -> Option<SenderPolicy> {
        if !self.mutual {
            return None;
        }
        let identity = chain
            .and_then(|c| c.first())
            .and_then(|leaf| PeerIdentity::from_der(leaf))
            .unwrap_or_default();
        let facilities = self.allowlist.as_ref().map(|a| a.facilities_for(&identity));
        Some(SenderPolicy {
            identity: identity.subject,
            facilities,
        })
    }
}

/// Client side (for `replay`): trust anchors, an optional client
/// certificate, and the name to verify the server against.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsOptions {
    /// CA bundle to verify the server with.
    pub ca: Option<PathBuf>,
    /// Client certificate chain (mTLS), with `key`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name the server certificate must carry; default: the host connected to.
    pub server_name: Option<String>,
}

/// A ready TLS client: connector and the server name to verify.
#[derive(Clone)]
pub struct TlsClient {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl TlsClient {
    /// `host` is what the user typed (the default server name).
    pub fn new(opts: &ClientTlsOptions, host: &str) -> Result<Self, TlsError> {
        let Some(ca) = &opts.ca else {
            return Err(TlsError::ClientCa {
                path: PathBuf::new(),
                reason: "a CA bundle (--tls-ca) is required to verify the server".into(),
            });
        };
        let roots = root_store("CA bundle", ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match (&opts.cert, &opts.key) {
            (Some(cert), Some(key)) => builder.with_client_auth_cert(
                load_certs("client certificate", cert)?,
                load_key("client key", key)?,
            )?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) | (None, Some(_)) => {
                return Err(TlsError::Pem {
                    what: "client certificate",
                    path: PathBuf::new(),
                    reason: "--tls-cert and --tls-key go together".into(),
                })
            }
        };
        let name = opts.server_name.clone().unwrap_or_else(|| host.to_owned());
        let server_name =
            ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(cn: Option<&str>, san: Option<&str>, f: &[&str]) -> SenderAllow {
        SenderAllow {
            cn: cn.map(Into::into),
            san: san.map(Into::into),
            facilities: f.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn allowlist_unions_matching_entries_by_cn_or_san() {
        let list = SenderAllowlist::new(vec![
            allow(Some("lab-gw"), None, &["LAB"]),
            allow(None, Some("lab.example.org"), &["LAB2"]),
            allow(Some("adt-gw"), None, &["ADT"]),
        ]);
        let peer = PeerIdentity {
            subject: "CN=lab-gw".into(),
            cn: Some("lab-gw".into()),
            sans: vec!["LAB.example.org".into()],
        };
        let f = list.facilities_for(&peer);
        assert!(f.allows("LAB", '^') && f.allows("LAB2", '^'));
        assert!(!f.allows("ADT", '^'));
        let stranger = PeerIdentity {
            cn: Some("other".into()),
            ..Default::default()
        };
        assert!(list.facilities_for(&stranger).is_empty());
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let cfg = TlsConfig {
            cert: Some("/nonexistent/server.pem".into()),
            key: Some("/nonexistent/server.key".into()),
            ..Default::default()
        };
        let e = TlsListener::from_config(&cfg).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/server.pem"), "{e}");
        assert!(TlsListener::from_config(&TlsConfig::default())
            .unwrap()
            .is_none());
    }
}
