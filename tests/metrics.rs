//! The operator's view: Prometheus metrics and health endpoints on a real
//! `serve` process.

mod common;

use std::time::Duration;

use common::process::Bridge;
use common::stage::wait_for_stage;
use common::{adt, oru, Client};

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of a metric line starting with `prefix` (name and labels).
fn value(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_messages_acks_naks_and_the_stage_and_health_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (bridge, url) = Bridge::serve_with_metrics(dir.path(), &[]);
    let mut c = Client::connect(bridge.addr).await;
    for i in 0..3 {
        assert_eq!(
            c.roundtrip(&adt(&format!("M-{i}"), "P1")).await.code(),
            "AA"
        );
    }
    assert_eq!(c.roundtrip(&oru("M-ORU", "P2", 4)).await.code(), "AA");
    // Not HL7 at all: AR with ERR 100, dead-lettered.
    assert_eq!(c.roundtrip(b"hello").await.code(), "AR");
    wait_for_stage(dir.path(), "hl7bridge-transform", Duration::from_secs(60));

    let (status, health) = get(&format!("{url}/healthz")).await;
    assert_eq!((status, health.trim()), (200, "ok"));
    let (status, ready) = get(&format!("{url}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        ready.contains(r#""store":"ok""#) && ready.contains(r#""registry":"ok""#),
        "{ready}"
    );

    // The stage's counters land after its commit: poll briefly.
    let mut m = String::new();
    for _ in 0..100 {
        m = get(&format!("{url}/metrics")).await.1;
        if m.contains("hl7bridge_end_to_end_seconds_count")
            && m.contains("hl7bridge_transform_lag_records 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        value(
            &m,
            r#"hl7bridge_messages_received_total{type="ADT",trigger="A01"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            r#"hl7bridge_messages_received_total{type="ORU",trigger="R01"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"hl7bridge_messages_received_total{type="rejected",trigger="other"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, r#"hl7bridge_acks_total{code="AA"}"#), 4.0);
    assert_eq!(value(&m, r#"hl7bridge_acks_total{code="AR"}"#), 1.0);
    assert_eq!(value(&m, r#"hl7bridge_naks_total{error_code="100"}"#), 1.0);
    assert_eq!(
        value(&m, r#"hl7bridge_dlq_records_total{topic="hl7v2.dlq"}"#),
        1.0
    );
    assert_eq!(value(&m, "hl7bridge_ack_latency_seconds_count"), 5.0);
    assert_eq!(
        value(
            &m,
            r#"hl7bridge_store_commit_seconds_count{backend="embedded"}"#
        ),
        5.0
    );
    // Every stored message, the rejected one's DLQ record included, went
    // through a group commit; sent one at a time, each had its own fsync.
    assert_eq!(value(&m, "hl7bridge_store_group_appends_total"), 5.0);
    assert_eq!(value(&m, "hl7bridge_store_group_commits_total"), 5.0);
    assert_eq!(
        value(
            &m,
            r#"hl7bridge_transform_records_in_total{outcome="resources"}"#
        ),
        4.0
    );
    // 3 ADTs: an Encounter and a Patient each; then the ORU: an Encounter,
    // 4 Observations, its Patient and the OBR's DiagnosticReport.
    assert_eq!(value(&m, "hl7bridge_transform_records_out_total"), 13.0);
    assert_eq!(value(&m, "hl7bridge_end_to_end_seconds_count"), 4.0);
    assert_eq!(value(&m, "hl7bridge_open_connections"), 1.0);
    assert_eq!(
        value(&m, "hl7bridge_transform_lag_records"),
        0.0,
        "the stage has caught up"
    );
    for secret in ["TESTPATIENT", "P1", "P2"] {
        assert!(
            !m.contains(secret),
            "metrics must not carry content: {secret}"
        );
    }
    drop(bridge);
}

/// `/readyz` follows the broker: 200 while it answers, 503 once it is
/// stopped, 200 again after it is back. `/healthz` stays 200 throughout.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_flips_to_503_when_the_kafka_broker_stops_and_back_when_it_returns() {
    let Some(mut broker) = common::tansu::Tansu::memory() else {
        return;
    };
    let brokers = broker.brokers();
    let dir = tempfile::tempdir().unwrap();
    let (bridge, url) = Bridge::serve_with_metrics(dir.path(), &["--kafka-brokers", &brokers]);
    let ready = || async { get(&format!("{url}/readyz")).await };
    let wait_for = |want: u16| {
        let ready = &ready;
        async move {
            for _ in 0..60 {
                let (status, body) = ready().await;
                if status == want {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            panic!("/readyz never answered {want}");
        }
    };
    let body = wait_for(200).await;
    assert!(body.contains(r#""kafka":"ok""#), "{body}");
    broker.stop();
    let body = wait_for(503).await;
    assert!(body.contains("broker not reachable"), "{body}");
    assert_eq!(
        get(&format!("{url}/healthz")).await.0,
        200,
        "alive though not ready"
    );
    broker.restart();
    wait_for(200).await;
    drop(bridge);
}
