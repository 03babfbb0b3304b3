//! Streaming stage per-message CPU work: parse + map (v2 to FHIR R4 JSON),
//! Avro encode and Confluent wire framing, i.e. `Stage::process`. Separate
//! groups time the mapper alone and the Avro encoder alone (on pre-mapped
//! resources), so the split between them can be read off directly.
//!
//! Run: `cargo bench --bench stage`. Throughput is reported per element
//! (messages/s) and, in the `*_bytes` groups, per input byte (MB/s).

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

// The allocator the `hl7bridge` binary ships with (src/main.rs), so these
// figures are those of the product's transform, not of glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use criterion::{black_box, criterion_group, Criterion, Throughput};
use hl7bridge::avro::{self, FhirSchemas};
use hl7bridge::headers as h;
use hl7bridge::registry::store::RegistryStore;
use hl7bridge::registry::SchemaRegistry;
use hl7bridge::stage::{Outcome, Source, Stage, StageConfig};
use hl7bridge::transform::{Mapped, Mapper};
use serde_json::Value;

const MSH_ADT: &str = "MSH|^~\\&|ADTAPP|GENHOSP|HL7BRIDGE|INTEGRATION|20261101083000||ADT^A01^ADT_A01|BENCH-ADT-A01-0001|P|2.5.1|||AL|NE|USA|UNICODE UTF-8";
const MSH_ORU: &str = "MSH|^~\\&|LABAPP|GENHOSP|HL7BRIDGE|INTEGRATION|20261117110000||ORU^R01^ORU_R01|BENCH-ORU-R01-0001|P|2.5.1|||AL|NE|USA|UNICODE UTF-8";
const PID: &str = "PID|1||MRN50010^^^GENHOSP^MR~900000010^^^SSA^SS~PI50010^^^GENHOSP^PI||TESTPATIENT^WHISKEY^Q^JR^^^L~TESTNAME^WHISKY^^^^^M||19720420|M||2106-3^White^CDCREC|50010 SYNTHETIC WAY^APT 61^TESTVILLE^ZZ^00010^USA^H~PO BOX 10^^TESTVILLE^ZZ^00010^USA^M||^PRN^PH^^1^555^5550010~^NET^Internet^whiskey@example.invalid|^WPN^PH^^1^555^5559010|eng^English^ISO6392|M^Married^HL70002|CHR^Christian^HL70006|ACCT50010^^^GENHOSP^AN|||N^Not Hispanic or Latino^HL70189||||||||N";
const PV1: &str = "PV1|1|I|4WEST^401^A^GENHOSP^^^^^4 West Medical|E|||12345^DOCTOR^ALPHA^A^^DR^^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI|23456^DOCTOR^BRAVO^B^^DR^^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI|34567^DOCTOR^CHARLIE^C^^DR^^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI|MED||||7|||45678^DOCTOR^DELTA^D^^DR^^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI|IN|V5010^^^GENHOSP^VN|SP^Self pay^HL70064|||||||||||||||||||GENHOSP|||||20261117060000";

/// ADT^A01, about 1.5 KB: full PID, PV1 with attending/referring/consulting/
/// admitting doctors and a visit number (PV1-19), plus NK1, PV2, OBX, AL1, DG1.
fn adt_a01() -> Vec<u8> {
    let segs = [
        MSH_ADT,
        "EVN|A01|20261101083000|||90001^REGCLERK^ECHO^^^^|20261101083000|GENHOSP",
        PID,
        "NK1|1|TESTRELATIVE^BRAVO^^^^^L|SPO^Spouse^HL70063|50010 SYNTHETIC WAY^APT 61^TESTVILLE^ZZ^00010^USA^H|^PRN^PH^^1^555^5550102||EC^Emergency Contact^HL70131",
        PV1,
        "PV2|||R07.9^Chest pain, unspecified^I10|||||20261105",
        "OBX|1|NM|29463-7^Body weight^LN||82.5|kg^kg^UCUM|||||F|||20261101083000||66601^NURSE^GOLF^^^^RN",
        "AL1|1|DA^Drug allergy^HL70127|7980^Penicillin G^RXNORM|MO^Moderate^HL70128|Hives",
        "DG1|1||R07.9^Chest pain, unspecified^I10||20261101083000|A",
    ];
    join(&segs)
}

/// (LOINC code, name, value, UCUM unit, reference range, interpretation)
#[rustfmt::skip]
const ANALYTES: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "98", "mg/dL", "70-99", "N"),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "24", "mg/dL", "7-20", "H"),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "1.1", "mg/dL", "0.6-1.3", "N"),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "141", "mmol/L", "136-145", "N"),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "3.3", "mmol/L", "3.5-5.1", "L"),
    ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "103", "mmol/L", "98-107", "N"),
    ("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "26", "mmol/L", "22-29", "N"),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "9.4", "mg/dL", "8.6-10.3", "N"),
    ("2885-2", "Protein [Mass/volume] in Serum or Plasma", "7.1", "g/dL", "6.0-8.3", "N"),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "4.2", "g/dL", "3.5-5.2", "N"),
    ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "0.8", "mg/dL", "0.1-1.2", "N"),
    ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "131", "U/L", "44-121", "H"),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "28", "U/L", "0-44", "N"),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "31", "U/L", "0-40", "N"),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "212", "mg/dL", "0-199", "H"),
    ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "148", "mg/dL", "0-149", "N"),
    ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "52", "mg/dL", "39-200", "N"),
    ("13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "130", "mg/dL", "0-99", "H"),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "7.4", "10*3/uL", "3.4-10.8", "N"),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "13.9", "g/dL", "13.0-17.7", "N"),
];

/// ORU^R01 v2.5.1 with `n_obx` NM results (LOINC, UCUM units, reference
/// range, interpretation, OBX-14, OBX-15, OBX-16), an NTE after every 5th.
fn oru_r01(n_obx: usize) -> Vec<u8> {
    let mut segs: Vec<String> = vec![
        MSH_ORU.into(),
        PID.into(),
        PV1.into(),
        "ORC|RE|PLC50010^ORDERAPP|FIL50010^LABAPP||CM||||20261117110000|90002^ORDERCLERK^FOXTROT^^^^||12345^DOCTOR^ALPHA^^^DR|4WEST^^^GENHOSP".into(),
        "OBR|1|PLC50010^ORDERAPP|FIL50010^LABAPP|24323-8^Comprehensive metabolic and lipid panel^LN||20261117060000|20261117063000|||||||20261117063000||12345^DOCTOR^ALPHA^^^DR||||||20261117110000||CH|F".into(),
    ];
    for i in 0..n_obx {
        let (code, name, value, unit, range, flag) = ANALYTES[i % ANALYTES.len()];
        let tech = if i % 2 == 0 {
            "55501^LABTECH^ALPHA^^^^"
        } else {
            "55502^LABTECH^BRAVO^^^^"
        };
        segs.push(format!(
            "OBX|{}|NM|{code}^{name}^LN|{}|{value}|{unit}^{unit}^UCUM|{range}|{flag}|||F|||20261117063000|GENLAB^General Hospital Laboratory^L|{tech}",
            i + 1,
            i / ANALYTES.len() + 1,
        ));
        if i % 5 == 4 {
            segs.push(format!(
                "NTE|1|L|Synthetic note {}: specimen slightly hemolyzed, interpret with caution.",
                i + 1
            ));
        }
    }
    let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    join(&refs)
}

fn join(segs: &[&str]) -> Vec<u8> {
    let mut m = segs.join("\r");
    m.push('\r');
    m.into_bytes()
}

struct Case {
    name: String,
    raw: Vec<u8>,
    headers: Vec<(String, String)>,
}

fn cases() -> Vec<Case> {
    let adt = adt_a01();
    let mut out = vec![Case {
        name: "adt_a01".into(),
        headers: headers("BENCH-ADT-A01-0001", "ADTAPP", "ADT", "A01"),
        raw: adt,
    }];
    for n in [1, 5, 20, 50] {
        out.push(Case {
            name: format!("oru_r01_{n}obx"),
            headers: headers("BENCH-ORU-R01-0001", "LABAPP", "ORU", "R01"),
            raw: oru_r01(n),
        });
    }
    // An order with its OBX (the fixture: ORC, OBR, two OBX).
    let orm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/orm_o01_v251.hl7");
    out.push(Case {
        name: "orm_o01".into(),
        headers: headers("FX-ORM-O01-251", "ORDERAPP", "ORM", "O01"),
        raw: std::fs::read(orm).expect("fixtures/orm_o01_v251.hl7"),
    });
    out
}

/// What the intake stamps on a raw record (the stage carries these over).
fn headers(control_id: &str, app: &str, ty: &str, trigger: &str) -> Vec<(String, String)> {
    [
        (h::CONTROL_ID, control_id),
        (h::SENDING_APPLICATION, app),
        (h::SENDING_FACILITY, "GENHOSP"),
        (h::MESSAGE_TYPE, ty),
        (h::TRIGGER_EVENT, trigger),
        (h::RECEIVED_AT, "2026-11-17T11:00:00.123456Z"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn source<'a>(c: &'a Case) -> Source<'a> {
    Source {
        topic: "hl7v2.oru",
        partition: 3,
        offset: 1_234_567,
        key: Some("GENHOSP|MRN50010"),
        headers: &c.headers,
        value: &c.raw,
    }
}

fn stage() -> Stage {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let registry = SchemaRegistry::Embedded(Arc::new(RegistryStore::open_in_memory().unwrap()));
    let cfg = StageConfig::new("hl7v2.");
    rt.block_on(Stage::new(&cfg, Mapper::default(), &registry))
        .unwrap()
}

fn mapped(mapper: &Mapper, raw: &[u8]) -> Vec<Value> {
    match mapper.map(raw) {
        Ok(Mapped::Resources(r)) => r,
        other => panic!("bench message does not map to resources: {other:?}"),
    }
}

/// parse + map + Avro encode + wire framing + output headers, per message.
fn process(c: &mut Criterion) {
    let stage = stage();
    let cases = cases();
    for c0 in &cases {
        // Fail loudly if a case would measure the dead-letter path.
        match stage.process(&source(c0)) {
            Outcome::Resources(r) => assert!(!r.is_empty()),
            other => panic!("{}: expected resources, got {}", c0.name, other.name()),
        }
    }
    let mut g = c.benchmark_group("stage_process");
    g.throughput(Throughput::Elements(1));
    for case in &cases {
        let src = source(case);
        g.bench_function(&case.name, |b| b.iter(|| stage.process(black_box(&src))));
    }
    g.finish();

    let mut g = c.benchmark_group("stage_process_bytes");
    for case in &cases {
        let src = source(case);
        g.throughput(Throughput::Bytes(case.raw.len() as u64));
        g.bench_function(&case.name, |b| b.iter(|| stage.process(black_box(&src))));
    }
    g.finish();
}

/// parse + map only (HL7 v2 bytes to FHIR JSON values).
fn map(c: &mut Criterion) {
    let mapper = Mapper::default();
    let mut g = c.benchmark_group("map");
    g.throughput(Throughput::Elements(1));
    for case in cases() {
        mapped(&mapper, &case.raw);
        g.bench_function(&case.name, |b| b.iter(|| mapper.map(black_box(&case.raw))));
    }
    g.finish();
}

/// Avro encode only: every resource of one message, already mapped, with
/// the schemas compiled once (as the stage does).
fn encode(c: &mut Criterion) {
    let mapper = Mapper::default();
    let schemas = FhirSchemas::builtin();
    let mut g = c.benchmark_group("avro_encode");
    g.throughput(Throughput::Elements(1));
    for case in cases() {
        let resources: Vec<(avro::Encoder<'_>, Value)> = mapped(&mapper, &case.raw)
            .into_iter()
            .map(|r| {
                let kind = r["resourceType"].as_str().unwrap().to_owned();
                (schemas.encoder(&kind).unwrap(), r)
            })
            .collect();
        g.bench_function(&case.name, |b| {
            b.iter(|| {
                resources
                    .iter()
                    .map(|(e, r)| e.encode(black_box(r)).unwrap())
                    .collect::<Vec<_>>()
            })
        });
    }
    g.finish();
}

/// One Observation id as the mapper derives it (`transform::resource_id`:
/// SHA-256 over the parts, each followed by 0x1f; the first 20 bytes in
/// hex), for the first OBX of the bench ORU^R01: two SHA-256 blocks. Under
/// valgrind `sha2` runs its software rounds; here it runs what the CPU
/// offers (SHA-NI where present), which is what the product runs.
fn sha256_id(c: &mut Criterion) {
    use sha2::{Digest, Sha256};
    let parts = [
        "Observation",
        "GENHOSP",
        "FIL50010",
        "1",
        "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN",
        "1",
    ];
    let mut g = c.benchmark_group("sha256_id");
    g.throughput(Throughput::Elements(1));
    g.bench_function("observation", |b| {
        b.iter(|| {
            let mut h = Sha256::new();
            for p in black_box(&parts) {
                h.update(p.as_bytes());
                h.update([0x1f]);
            }
            h.finalize()
        })
    });
    g.finish();
}

criterion_group!(benches, process, map, encode, sha256_id);

/// `STAGE_PROFILE=<case|all> [STAGE_PROFILE_ITERS=n] cargo bench --bench stage`
/// skips criterion and calls `Stage::process` n times (default 1000) per case
/// inside [`profile_loop`], for instruction counts that do not depend on the
/// machine's noise, e.g. `valgrind --tool=callgrind --collect-atstart=no
/// --toggle-collect='*profile_loop*' target/release/deps/stage-…`; total
/// instructions / n is the per-message cost.
fn main() {
    if std::env::var_os("STAGE_DUMP").is_some() {
        dump();
        return;
    }
    if let Ok(which) = std::env::var("INTAKE_PROFILE") {
        intake_profile(&which);
        return;
    }
    if let Ok(which) = std::env::var("STAGE_PROFILE") {
        let iters: usize = std::env::var("STAGE_PROFILE_ITERS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000);
        let stage = stage();
        for case in cases() {
            if which != "all" && which != case.name {
                continue;
            }
            let src = source(&case);
            // Warm up lazily initialised state outside the measured loop.
            black_box(stage.process(&src));
            let t = std::time::Instant::now();
            profile_loop(&stage, &src, iters);
            let el = t.elapsed();
            println!(
                "{}: {iters} msgs in {el:?}: {:.1} us/msg",
                case.name,
                el.as_secs_f64() * 1e6 / iters as f64
            );
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

/// `INTAKE_PROFILE=<fixture file|all> [STAGE_PROFILE_ITERS=n]`: the ingest
/// parse + route + key + headers path (`Intake::frame`, as benches/ingest.rs
/// times it) n times inside [`intake_loop`], for callgrind like `STAGE_PROFILE`.
fn intake_profile(which: &str) {
    use hl7bridge::intake::{Intake, IntakeConfig, Origin};
    let iters: usize = std::env::var("STAGE_PROFILE_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let intake = Intake::new(IntakeConfig::default());
    let origin = Origin {
        listener: "127.0.0.1:2575".into(),
        peer: "127.0.0.1:40000".into(),
        received_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    for name in ["adt_a01_v251.hl7", "bench/adt_a01.hl7", "oru_r01_20obx.hl7"] {
        if which != "all" && which != name {
            continue;
        }
        let raw = bytes::Bytes::from(
            std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
        );
        black_box(intake.frame(raw.clone(), &origin));
        let t = std::time::Instant::now();
        intake_loop(&intake, &raw, &origin, iters);
        let el = t.elapsed();
        println!(
            "{name}: {iters} msgs in {el:?}: {:.2} us/msg",
            el.as_secs_f64() * 1e6 / iters as f64
        );
    }
}

#[inline(never)]
fn intake_loop(
    intake: &hl7bridge::intake::Intake,
    raw: &bytes::Bytes,
    origin: &hl7bridge::intake::Origin,
    iters: usize,
) {
    for _ in 0..iters {
        black_box(intake.frame(black_box(raw.clone()), origin));
    }
}

#[inline(never)]
fn profile_loop(stage: &Stage, src: &Source<'_>, iters: usize) {
    for _ in 0..iters {
        black_box(stage.process(black_box(src)));
    }
}

/// `STAGE_DUMP=1`: prints, for the fixtures, the bench messages and
/// thousands of seeded random variants of them, what the mapper and the
/// stage make of each (JSON text, error reason, headers, wire bytes in hex;
/// no timestamps), so two builds can be diffed for identical output.
fn dump() {
    let stage = stage();
    let mapper = Mapper::default();
    let mut base: Vec<Vec<u8>> = cases().into_iter().map(|c| c.raw).collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .collect();
    paths.sort();
    for p in paths {
        let raw = std::fs::read(p).unwrap();
        if hl7bridge::hl7::batch::is_batch(&raw) {
            let b = hl7bridge::hl7::batch::split(&bytes::Bytes::from(raw));
            base.extend(b.messages.iter().map(|m| m.to_vec()));
        } else {
            base.push(raw);
        }
    }
    const PIECES: &[&str] = &[
        "A",
        "b",
        "12",
        "3.5",
        "-",
        "^",
        "~",
        "&",
        "\\F\\",
        "\\S\\",
        "\\H\\",
        "\\N\\",
        "\\X41\\",
        "\\XC3A9\\",
        "\\.br\\",
        "\\E\\",
        "\\",
        " ",
        "  ",
        "\t",
        "é",
        "\u{a0}",
        "\u{feff}",
        "\u{1}",
        "\u{2028}",
        "\"\"",
        "20261101",
        "20261101123015",
        "+0500",
        "-1400",
        ".25",
        "LN",
        "lN",
        "HL70078",
        "hl70078",
        "UCUM",
        "L",
        "http://x.org/a",
        "urn:x",
        "1.2.840",
        "ISO",
        "ST",
        "NM",
        "CWE",
        "SN",
        "NR",
        "TM",
        "DT",
        "DTM",
        "TX",
        "<",
        ">",
        "=",
        ":",
        "/",
        "F",
        "f",
        "C",
        "X",
        "0830",
        "1.50",
        "0.000120",
        "VN",
        "MR",
        "I",
        "O",
        "E",
        "P",
        "A01",
        "A13",
        "A11",
        "^>^200",
        "^1^:^160",
        "^1.5^/^3.0",
        "^1^-^5",
        "<=^2",
        "0830",
        "123045.25",
        "1230+0100",
        "C1^Code^SCT^C2^Two^L^v1^v2^Text",
        "mg/dL^mg/dL^UCUM",
        "^mg",
        "NPI&2.16.840.1.113883.4.6&ISO",
        "V1^^^H^VN",
    ];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    base.push(synthetic::oru_every_value_type());
    let originals = base.len();
    let texts: Vec<String> = base
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    for _ in 0..6000 {
        let text = &texts[next(originals)];
        let sep = if text.contains('\r') { '\r' } else { '\n' };
        let mut segs: Vec<String> = text.split(sep).map(str::to_owned).collect();
        for _ in 0..1 + next(4) {
            let si = 1 + next(segs.len().max(2) - 1);
            let Some(seg) = segs.get_mut(si) else {
                continue;
            };
            if seg.len() < 4 {
                continue;
            }
            let mut fields: Vec<String> = seg.split('|').map(str::to_owned).collect();
            let fi = if seg.starts_with("OBX") && next(2) == 0 {
                [2, 5, 5, 6, 8, 11, 14, 16][next(8)]
            } else {
                1 + next(fields.len().max(2) + 3)
            };
            while fields.len() <= fi {
                fields.push(String::new());
            }
            let mut v = String::new();
            for _ in 0..next(6) {
                if next(5) == 0 {
                    // a field from another message
                    let other = &texts[next(originals)];
                    let f: Vec<&str> = other.split(['|', '\r', '\n']).collect();
                    v.push_str(f[next(f.len())]);
                } else {
                    v.push_str(PIECES[next(PIECES.len())]);
                }
            }
            fields[fi] = v;
            *seg = fields.join("|");
        }
        base.push(segs.join(&sep.to_string()).into_bytes());
    }
    let headers = headers("DUMP-1", "LABAPP", "ORU", "R01");
    for (i, raw) in base.iter().enumerate() {
        let mapped = match mapper.map(raw) {
            Ok(Mapped::Resources(r)) => serde_json::to_string(&r).unwrap(),
            Ok(Mapped::NoContent) => "no content".to_owned(),
            Ok(Mapped::Partial { resources, skipped }) => format!(
                "partial: {} skipped: {}",
                serde_json::to_string(&resources).unwrap(),
                skipped.len()
            ),
            Err(e) => format!("error: {}", e.reason),
        };
        println!("{i} map {mapped}");
        let src = Source {
            topic: "hl7v2.oru",
            partition: 3,
            offset: i as i64,
            key: Some("GENHOSP|MRN50010"),
            headers: &headers,
            value: raw,
        };
        let outcome = stage.process(&src);
        let name = outcome.name();
        for r in outcome.into_records() {
            let hex: String = r.value.iter().map(|b| format!("{b:02x}")).collect();
            println!(
                "{i} {name} {} {:?} {:?} {:?} {hex}",
                r.topic, r.key, r.partition, r.headers
            );
        }
    }
}
