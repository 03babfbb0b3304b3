//! TLS on the MLLP listener, over real sockets with real certificates
//! (a throwaway PKI made with rcgen): plain TLS, mTLS, the sender
//! allowlist, the handshake bound, and `replay` as a TLS client.

mod common;

use hl7bridge::record::WithHeaders;
use std::sync::Arc;
use std::time::Duration;

use common::process::{bin, Bridge};
use common::secure::*;
use common::*;
use hl7bridge::config::{SenderAllow, TlsConfig};
use hl7bridge::server::{Security, TlsListener};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(10);

struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    other_ca: TestCa,
    server: Issued,
    /// CN lab-gw, SAN lab-gw.hospital.test
    lab: Issued,
    /// CN adt-gw, SAN adt.hospital.test: allowed only by SAN
    adt: Issued,
    /// Signed by the CA, in no allowlist entry
    stranger: Issued,
    /// Signed by another CA
    rogue: Issued,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "hospital-ca");
    let other_ca = TestCa::new(dir.path(), "other-ca");
    Pki {
        server: ca.server("server"),
        lab: ca.client("lab", "lab-gw", &["lab-gw.hospital.test"]),
        adt: ca.client("adt", "adt-gw", &["adt.hospital.test"]),
        stranger: ca.client("stranger", "stranger", &[]),
        rogue: other_ca.client("rogue", "lab-gw", &["lab-gw.hospital.test"]),
        dir,
        ca,
        other_ca,
    }
}

fn tls_config(p: &Pki, mutual: bool, allow: Vec<SenderAllow>) -> TlsConfig {
    TlsConfig {
        cert: Some(p.server.cert_pem.clone()),
        key: Some(p.server.key_pem.clone()),
        client_ca: mutual.then(|| p.ca.cert_pem.clone()),
        handshake_timeout: Duration::from_secs(5),
        allow,
    }
}

fn allow_cn(cn: &str, facilities: &[&str]) -> SenderAllow {
    SenderAllow {
        cn: Some(cn.into()),
        san: None,
        facilities: facilities.iter().map(|s| s.to_string()).collect(),
    }
}

fn allow_san(san: &str, facilities: &[&str]) -> SenderAllow {
    SenderAllow {
        cn: None,
        san: Some(san.into()),
        facilities: facilities.iter().map(|s| s.to_string()).collect(),
    }
}

async fn tls_server(cfg: &TlsConfig) -> TestServer {
    let tls = TlsListener::from_config(cfg).unwrap().expect("TLS is on");
    start_secure(
        Security {
            tls: Some(Arc::new(tls)),
            ..Default::default()
        },
        64,
        limits(),
    )
    .await
}

/// A client whose handshake was refused either sees the handshake fail, or
/// (TLS 1.3, where the client finishes first) gets no ACK and a closed
/// stream. Either way nothing may be stored.
async fn assert_refused(server: &TestServer, connector: &tokio_rustls::TlsConnector, id: &str) {
    if let Ok(stream) = tls_connect(server.addr, connector).await {
        let mut c = StreamClient::new(stream);
        let _ = c.send(&adt_from("LAB", id)).await;
        assert_eq!(c.recv_within(WAIT).await, None, "no ACK for {id}");
    }
    for topic in RAW_TOPICS {
        assert!(
            server.records(topic).is_empty(),
            "{topic} is empty after {id}"
        );
    }
}

#[tokio::test]
async fn plain_tls_end_to_end_and_plaintext_is_not_served() {
    let p = pki();
    let server = tls_server(&tls_config(&p, false, vec![])).await;
    let stream = tls_connect(server.addr, &connector(&p.ca, None))
        .await
        .expect("handshake");
    let mut c = StreamClient::new(stream);
    let ack = c.roundtrip(&adt("TLS1", "M1")).await.expect("an ACK");
    assert_eq!((ack.code(), ack.control_id()), ("AA", "TLS1"));
    let stored = server.records("hl7v2.adt");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].value, adt("TLS1", "M1"), "exact bytes");
    assert_eq!(
        stored[0].header("bridge.client_cert"),
        None,
        "no client certificate without mTLS"
    );

    // A plaintext MLLP sender on the TLS port gets nothing and is closed.
    let mut plain = Client::connect(server.addr).await;
    plain.send(&adt("PLAIN1", "M1")).await;
    assert_eq!(plain.recv_within(WAIT).await, None);
    assert_eq!(server.records("hl7v2.adt").len(), 1);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_server_cannot_connect() {
    let p = pki();
    let server = tls_server(&tls_config(&p, false, vec![])).await;
    assert!(
        tls_connect(server.addr, &connector(&p.other_ca, None))
            .await
            .is_err(),
        "server certificate from an untrusted CA"
    );
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate() {
    let p = pki();
    let server = tls_server(&tls_config(&p, true, vec![])).await;
    assert_refused(&server, &connector(&p.ca, None), "NOCERT1").await;
}

#[tokio::test]
async fn mtls_refuses_a_certificate_from_another_ca() {
    let p = pki();
    let server = tls_server(&tls_config(&p, true, vec![])).await;
    // Same CN and SAN as an allowed client: only the issuer differs.
    assert_refused(&server, &connector(&p.ca, Some(&p.rogue)), "ROGUE1").await;
}

#[tokio::test]
async fn mtls_without_an_allowlist_accepts_any_facility_and_records_the_subject() {
    let p = pki();
    let server = tls_server(&tls_config(&p, true, vec![])).await;
    let stream = tls_connect(server.addr, &connector(&p.ca, Some(&p.stranger)))
        .await
        .unwrap();
    let mut c = StreamClient::new(stream);
    let ack = c.roundtrip(&adt_from("ANYFAC", "MT1")).await.unwrap();
    assert_eq!(ack.code(), "AA");
    let stored = server.records("hl7v2.adt");
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0]
            .header("bridge.client_cert")
            .is_some_and(|s| s.contains("CN=stranger")),
        "{:?}",
        stored[0].headers
    );
}

#[tokio::test]
async fn the_allowlist_decides_which_facilities_a_certificate_may_send_as() {
    let p = pki();
    let allow = vec![
        allow_cn("lab-gw", &["LAB", "LAB2"]),
        allow_san("adt.hospital.test", &["ADT"]),
    ];
    let server = tls_server(&tls_config(&p, true, allow)).await;

    // lab-gw: LAB is allowed (AA, stored), ADT is not (AR 103, DLQ only).
    let stream = tls_connect(server.addr, &connector(&p.ca, Some(&p.lab)))
        .await
        .unwrap();
    let mut lab = StreamClient::new(stream);
    let ack = lab.roundtrip(&adt_from("LAB", "OK1")).await.unwrap();
    assert_eq!((ack.code(), ack.control_id()), ("AA", "OK1"));
    // MSH-4 as a full HD: its first component is what is listed.
    let ack = lab
        .roundtrip(&adt_from("LAB2^1.2.3.4^ISO", "OK2"))
        .await
        .unwrap();
    assert_eq!(ack.code(), "AA");
    let forged = adt_from("ADT", "FORGED1");
    let ack = lab.roundtrip(&forged).await.unwrap();
    assert_eq!((ack.code(), ack.control_id()), ("AR", "FORGED1"));
    let err = ack.segment("ERR").expect("an ERR segment");
    assert_eq!(err[2], "MSH^1^4", "ERR-2 points at MSH-4");
    assert_eq!(err[3], "103^Table value not found^HL70357");
    assert_eq!(err[4], "E");
    assert!(
        err.iter()
            .any(|f| f.contains("not allowed for this client certificate")),
        "{err:?}"
    );
    // Enhanced mode: CR.
    let enhanced = b"MSH|^~\\&|LABAPP|ADT|HL7BRIDGE|INT|20261122120000||ADT^A01|FORGED2|P|2.5.1|||AL|NE\rPID|1||M1^^^H^MR\r";
    let ack = lab.roundtrip(enhanced).await.unwrap();
    assert_eq!((ack.code(), ack.control_id()), ("CR", "FORGED2"));

    // adt-gw is allowed by its SAN.
    let stream = tls_connect(server.addr, &connector(&p.ca, Some(&p.adt)))
        .await
        .unwrap();
    let mut adt_gw = StreamClient::new(stream);
    assert_eq!(
        adt_gw
            .roundtrip(&adt_from("ADT", "OK3"))
            .await
            .unwrap()
            .code(),
        "AA"
    );
    assert_eq!(
        adt_gw
            .roundtrip(&adt_from("LAB", "FORGED3"))
            .await
            .unwrap()
            .code(),
        "AR"
    );

    // A certificate the CA signed but no entry names may send as nothing.
    let stream = tls_connect(server.addr, &connector(&p.ca, Some(&p.stranger)))
        .await
        .unwrap();
    let mut stranger = StreamClient::new(stream);
    assert_eq!(
        stranger
            .roundtrip(&adt_from("LAB", "FORGED4"))
            .await
            .unwrap()
            .code(),
        "AR"
    );

    let accepted: Vec<String> = server
        .records("hl7v2.adt")
        .iter()
        .map(|r| r.header("hl7.control_id").unwrap().to_owned())
        .collect();
    assert_eq!(
        accepted,
        ["OK1", "OK2", "OK3"],
        "only allowed messages stored as accepted"
    );
    let dlq = server.records("hl7v2.dlq");
    let rejected: Vec<&str> = dlq
        .iter()
        .map(|r| r.header("hl7.control_id").unwrap())
        .collect();
    assert_eq!(rejected, ["FORGED1", "FORGED2", "FORGED3", "FORGED4"]);
    assert_eq!(dlq[0].value, forged, "raw bytes kept");
    for r in &dlq {
        assert_eq!(r.header("error.code"), Some("103"));
        assert!(r.header("bridge.client_cert").is_some());
    }
    assert!(dlq[0]
        .header("bridge.client_cert")
        .unwrap()
        .contains("CN=lab-gw"));
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_cut_off_and_frees_its_slot() {
    let p = pki();
    let mut cfg = tls_config(&p, false, vec![]);
    cfg.handshake_timeout = Duration::from_millis(300);
    let tls = TlsListener::from_config(&cfg).unwrap().unwrap();
    let server = start_secure(
        Security {
            tls: Some(Arc::new(tls)),
            ..Default::default()
        },
        1,
        limits(),
    )
    .await;
    // Takes the only slot, then sends half a TLS record header and stalls.
    let mut stall = Client::connect(server.addr).await;
    stall.stream.write_all(&[0x16, 0x03]).await.unwrap();
    assert!(
        stall.closed_within(WAIT).await,
        "closed by tls.handshake_timeout"
    );
    // The slot is free again for a real client.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(s) = tls_connect(server.addr, &connector(&p.ca, None)).await {
            let mut c = StreamClient::new(s);
            if let Some(ack) = c.roundtrip(&adt("AFTER1", "M1")).await {
                ok = Some(ack);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ok.expect("served after the stalled handshake").code(), "AA");
}

#[test]
fn replay_speaks_tls_and_mtls_to_the_real_binary() {
    let p = pki();
    let config = p.dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n[[tls.allow]]\ncn = \"lab-gw\"\nfacilities = [\"GENHOSP\"]\n",
            p.server.cert_pem, p.server.key_pem, p.ca.cert_pem
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let bridge = Bridge::serve(data.path(), &["--config", config.to_str().unwrap()]);
    let to = bridge.addr.to_string();
    let input = fixtures_dir().join("adt_a04_v251.hl7"); // MSH-4 GENHOSP
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let replay = |extra: &[String]| {
        let report = p.dir.path().join("report.json");
        let out = std::process::Command::new(bin())
            .args([
                "replay",
                input.to_str().unwrap(),
                "--to",
                &to,
                "--timeout",
                "10s",
            ])
            .arg("--report")
            .arg(&report)
            .args(extra)
            .output()
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (out, report)
    };
    let ca = path(&p.ca.cert_pem);

    // Allowed certificate: AA.
    let (out, report) = replay(&[
        "--tls-ca".into(),
        ca.clone(),
        "--tls-cert".into(),
        path(&p.lab.cert_pem),
        "--tls-key".into(),
        path(&p.lab.key_pem),
        "--tls-server-name".into(),
        "localhost".into(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(report["outcomes"]["AA"], 1, "{report}");

    // Verified by IP SAN when no server name is given.
    let (out, report) = replay(&[
        "--tls-ca".into(),
        ca.clone(),
        "--tls-cert".into(),
        path(&p.lab.cert_pem),
        "--tls-key".into(),
        path(&p.lab.key_pem),
        "--unique-control-ids".into(),
    ]);
    assert!(out.status.success(), "{report}");

    // A certificate the allowlist does not cover for GENHOSP: AR, exit 1.
    let (out, report) = replay(&[
        "--tls-ca".into(),
        ca.clone(),
        "--tls-cert".into(),
        path(&p.stranger.cert_pem),
        "--tls-key".into(),
        path(&p.stranger.key_pem),
        "--unique-control-ids".into(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["outcomes"]["AR"], 1, "{report}");

    // No client certificate: the connection fails, nothing is ACKed.
    let (out, report) = replay(&["--tls-ca".into(), ca, "--unique-control-ids".into()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["accepted"], 0, "{report}");
    // TLS 1.3 finishes the client's side of the handshake before the server
    // checks for a certificate: the refusal shows as a closed connection
    // (or a failed handshake), attempt after attempt.
    let failed = &report["failed"][0];
    assert!(
        ["closed", "unsent"].contains(&failed["outcome"].as_str().unwrap()),
        "{report}"
    );
    assert_eq!(failed["attempts"], 3, "{report}");

    drop(bridge);
    let reader = hl7bridge::log::embedded::EmbeddedReader::open(data.path()).unwrap();
    assert_eq!(reader.read("hl7v2.adt", 0, 100).unwrap().len(), 2);
    let dlq = reader.read("hl7v2.dlq", 0, 100).unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].header("error.code"), Some("103"));
}

#[test]
fn serve_fails_at_start_on_a_missing_certificate() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
            "--registry-listen",
            "",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--tls-cert", "/nonexistent/cert.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls.key"));
}
