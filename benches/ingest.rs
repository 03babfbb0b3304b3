//! Ingest hot path: MLLP decode, parse + route + key + headers, ACK build,
//! and the embedded store's append (one at a time vs group-committed).
//!
//! Run: `cargo bench --bench ingest`. Throughput is reported per element
//! (messages/s) and, for the codec, per byte (MB/s).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hl7bridge::intake::{Intake, IntakeConfig, Origin};
use hl7bridge::log::embedded::{EmbeddedConfig, EmbeddedLog};
use hl7bridge::log::Log;
use hl7bridge::mllp::{frame, MllpCodec};
use tokio_util::codec::Decoder;

fn adt_of_size(target: usize) -> Vec<u8> {
    let mut m = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/adt_a01_v251.hl7"
    ))
    .unwrap();
    let mut i = 0;
    while m.len() < target {
        m.extend_from_slice(
            format!("NTE|{i}||synthetic padding text for benchmark sizing\r").as_bytes(),
        );
        i += 1;
    }
    m
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("mllp_decode");
    for (name, size) in [("1KB", 1024), ("64KB", 64 * 1024)] {
        let framed = frame(&adt_of_size(size));
        g.throughput(Throughput::Bytes(framed.len() as u64));
        g.bench_function(name, |b| {
            let mut codec = MllpCodec::new(1 << 20);
            b.iter_batched(
                || BytesMut::from(&framed[..]),
                |mut buf| codec.decode(&mut buf).unwrap().unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn intake(c: &mut Criterion) {
    let intake = Intake::new(IntakeConfig::default());
    let origin = Origin {
        listener: "127.0.0.1:2575".into(),
        peer: "127.0.0.1:40000".into(),
        received_at: time::OffsetDateTime::now_utc(),
    };
    let mut g = c.benchmark_group("intake");
    g.throughput(Throughput::Elements(1));
    for name in ["adt_a01_v251.hl7", "bench/adt_a01.hl7", "oru_r01_20obx.hl7"] {
        let raw = Bytes::from(
            std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
        );
        g.bench_function(format!("parse_route_key/{name}"), |b| {
            b.iter(|| intake.frame(raw.clone(), &origin))
        });
        let work = intake.frame(raw.clone(), &origin);
        g.bench_function(format!("ack_build/{name}"), |b| {
            b.iter(|| intake.reply(&work, true))
        });
    }
    g.finish();
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedConfig::new(dir.path())).unwrap());
    let intake = Intake::new(IntakeConfig::default());
    let origin = Origin {
        listener: "l".into(),
        peer: "p".into(),
        received_at: time::OffsetDateTime::now_utc(),
    };
    let raw = Bytes::from(adt_of_size(1500));
    let record = intake.frame(raw, &origin).records.remove(0);
    let mut g = c.benchmark_group("store_append");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("single (one fsync per message)", |b| {
        b.to_async(&rt).iter(|| log.append(vec![record.clone()]))
    });
    // 8 and 64 concurrent appends, as from 8 or 64 connections: they share commits.
    for n in [8, 64] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("group_commit ({n} concurrent appends)"), |b| {
            b.to_async(&rt).iter(|| {
                let futs: Vec<_> = (0..n).map(|_| log.append(vec![record.clone()])).collect();
                futures::future::join_all(futs)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec, intake, store);
criterion_main!(benches);
