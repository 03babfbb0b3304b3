//! The fuzz corpus as tests: every committed input of each cargo-fuzz target
//! (`fuzz/corpus/<target>/`, minimized) and every crash it found
//! (`fuzz/regressions/<target>/`) goes through the same checks the targets
//! run (`hl7bridge::fuzzing`). This is what CI runs instead of a timed fuzz
//! smoke: deterministic, and a few seconds.
//!
//! Besides "no check failed", each test asserts that the corpus still reaches
//! the outcomes it is meant to cover, so that an emptied or stale corpus fails.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hl7bridge::avro::FhirSchemas;
use hl7bridge::fuzzing::{self, IntakeSummary, MapSummary, MllpSummary};
use hl7bridge::transform::Mapper;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.expect("corpus dir entry").path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("read corpus file");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 10,
        "fuzz/corpus/{target} has {} inputs: the corpus is missing",
        out.len()
    );
    out
}

/// Runs `check` over every input; fails listing the files whose check failed.
fn run_all<T>(target: &str, mut check: impl FnMut(&[u8]) -> T) -> Vec<T> {
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for (path, bytes) in inputs(target) {
        match catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
            Ok(r) => results.push(r),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(failed.is_empty(), "{target} checks failed on: {failed:#?}");
    results
}

#[test]
fn mllp_decoder_corpus() {
    let rs: Vec<MllpSummary> = run_all("mllp_decoder", fuzzing::mllp_decoder);
    assert!(
        rs.iter().any(|r| r.frames > 0 && r.oversize == 0),
        "frames decoded"
    );
    assert!(rs.iter().any(|r| r.frames > 1), "pipelined frames");
    assert!(rs.iter().any(|r| r.oversize > 0), "oversize frames");
    assert!(rs.iter().any(|r| r.junk_bytes > 0), "junk between frames");
}

#[test]
fn parse_route_ack_corpus() {
    let rs: Vec<IntakeSummary> = run_all("parse_route_ack", fuzzing::parse_route_ack);
    assert!(
        rs.iter().any(|r| r.accepted > 0 && r.keyed > 0),
        "keyed accepts"
    );
    assert!(
        rs.iter().any(|r| r.accepted > r.keyed),
        "accepts without a key"
    );
    assert!(rs.iter().any(|r| r.rejected > 0 && !r.batch), "rejects");
    assert!(rs.iter().any(|r| r.batch && r.messages > 1), "batches");
}

#[test]
fn map_avro_corpus() {
    let mapper = Mapper::default();
    let schemas = FhirSchemas::builtin();
    let rs: Vec<MapSummary> = run_all("map_avro", |b| {
        fuzzing::map_avro(&mapper, &schemas, b, true)
    });
    assert!(
        rs.iter().filter(|r| r.mapped).count() >= 5,
        "resources mapped and round-tripped through Avro"
    );
    assert!(
        rs.iter().any(|r| r.resources > 5),
        "a message with many Observations"
    );
    assert!(
        rs.iter().any(|r| r.no_content),
        "a message with no FHIR content"
    );
    assert!(rs.iter().any(|r| !r.mapped && !r.no_content), "a map error");
}

#[test]
fn the_checks_report_what_known_inputs_do() {
    // An MLLP stream whose chunking would matter: FS and CR in separate reads.
    let s = fuzzing::mllp_decoder(b"\x20\x02\x03\x01\x0bMSH\x1c\x0d\x0bX\x1c\x0d");
    assert_eq!((s.frames, s.oversize), (2, 0));
    // Limit 1 (byte 0): a 3-byte payload is oversize and never returned.
    let s = fuzzing::mllp_decoder(b"\x00\x00\x0bMSH\x1c\x0d");
    assert_eq!((s.frames, s.oversize), (0, 1));
    let s =
        fuzzing::parse_route_ack(b"MSH|^~\\&|A|F|B|G|2026||ADT^A01|C1|P|2.5\rPID|||M1^^^H^MR\r");
    assert_eq!((s.accepted, s.keyed, s.rejected), (1, 1, 0));
    let s = fuzzing::parse_route_ack(b"not hl7");
    assert_eq!((s.accepted, s.rejected), (0, 1));
}
