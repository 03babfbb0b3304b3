//! TLS and admission control in tests: a throwaway PKI (rcgen), a server
//! with `Security`, and an MLLP client over any stream.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hl7bridge::intake::{Intake, IntakeConfig};
use hl7bridge::log::embedded::{EmbeddedConfig, EmbeddedLog};
use hl7bridge::log::Log;
use hl7bridge::mllp;
use hl7bridge::server::{ConnectionLimits, Security, Server};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::TestServer;

/// A certificate and its key, in memory and as PEM files.
pub struct Issued {
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl Issued {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A test certificate authority writing its files under `dir`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub cert_pem: PathBuf,
    dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name
            .push(DnType::OrganizationName, "hl7bridge tests");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let cert_pem = dir.join(format!("{name}.ca.pem"));
        std::fs::write(&cert_pem, issuer.pem()).unwrap();
        Self {
            issuer,
            cert_pem,
            dir: dir.to_owned(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn issue(&self, file: &str, cn: &str, sans: &[&str], eku: ExtendedKeyUsagePurpose) -> Issued {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let cert_pem = self.dir.join(format!("{file}.pem"));
        let key_pem = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_pem, cert.pem()).unwrap();
        std::fs::write(&key_pem, key.serialize_pem()).unwrap();
        Issued {
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            cert_pem,
            key_pem,
        }
    }

    /// A server certificate for localhost and 127.0.0.1.
    pub fn server(&self, file: &str) -> Issued {
        self.issue(
            file,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with subject CN `cn` and the given SANs.
    pub fn client(&self, file: &str, cn: &str, sans: &[&str]) -> Issued {
        self.issue(file, cn, sans, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A rustls client trusting `ca`, presenting `identity` if given.
pub fn connector(ca: &TestCa, identity: Option<&Issued>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match identity {
        Some(i) => b
            .with_client_auth_cert(vec![i.cert_der.clone()], i.key())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// Starts a server on the embedded store with TLS/admission settings.
pub async fn start_secure(
    security: Security,
    max_connections: usize,
    limits: ConnectionLimits,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server {
        listener,
        intake: Arc::new(Intake::new(IntakeConfig::default())),
        log,
        limits,
        max_connections,
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(server.run_with(security, shutdown.clone()));
    TestServer {
        addr,
        dir,
        shutdown,
        handle,
        kafka: None,
    }
}

/// TCP from a chosen local address (127.0.0.2 and so on are all loopback on Linux).
pub async fn connect_from(local: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let s = sock.connect(to).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// An MLLP client over any stream (TCP or TLS).
pub struct StreamClient<S> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamClient<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a frame; false if the write failed (the server closed).
    pub async fn send(&mut self, payload: &[u8]) -> bool {
        self.stream.write_all(&mllp::frame(payload)).await.is_ok()
            && self.stream.flush().await.is_ok()
    }

    /// One MLLP frame; None on EOF, error, or nothing within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        super::read_frame(&mut self.stream, &mut self.buf, wait).await
    }

    pub async fn roundtrip(&mut self, payload: &[u8]) -> Option<super::Ack> {
        if !self.send(payload).await {
            return None;
        }
        self.recv_within(Duration::from_secs(15))
            .await
            .map(|b| super::Ack::parse(&b))
    }

    /// True when the server ends the stream (EOF or error) within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// TLS to a test server as `localhost`.
pub async fn tls_connect(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A message from a given sending facility (MSH-4).
pub fn adt_from(facility: &str, control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LABAPP|{facility}|HL7BRIDGE|INT|20261122120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\rEVN|A01|20261122120000\rPID|1||M77^^^GENHOSP^MR||TESTPATIENT^ALPHA\rPV1|1|I|4WEST^401^A\r"
    )
    .into_bytes()
}
