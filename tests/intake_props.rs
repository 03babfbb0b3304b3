//! Whatever arrives, the intake never panics, always keeps exactly one record
//! per message it found, and always produces an ACK plan: arbitrary bytes and
//! mutated fixtures are the inputs a hostile or broken sender would produce.

use bytes::Bytes;
use hl7bridge::intake::{Intake, IntakeConfig, Origin};
use proptest::prelude::*;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    v.sort();
    v
}

fn origin() -> Origin {
    Origin {
        listener: "l".into(),
        peer: "p".into(),
        received_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

fn check(intake: &Intake, raw: Vec<u8>) -> Result<(), TestCaseError> {
    let work = intake.frame(Bytes::from(raw.clone()), &origin());
    prop_assert_eq!(work.records.len(), work.items.len());
    prop_assert!(
        !work.records.is_empty() || work.batch.is_some(),
        "a non-batch frame always yields a record"
    );
    for r in &work.records {
        prop_assert!(
            raw.windows(r.value.len().max(1)).any(|w| w == &r.value[..])
                || r.value.is_empty() && raw.is_empty(),
            "every stored value is a slice of what arrived"
        );
    }
    // Both outcomes of storage produce a well-formed reply (or none, for NE/ER/SU).
    for stored in [true, false] {
        if let Some(reply) = intake.reply(&work, stored) {
            prop_assert!(
                reply.starts_with(b"MSH") || reply.starts_with(b"FHS") || reply.starts_with(b"BHS")
            );
            if !stored {
                prop_assert!(
                    !reply.windows(6).any(|w| w == b"MSA|AA" || w == b"MSA|CA"),
                    "never an accept without storage"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&Intake::new(IntakeConfig::default()), raw)?;
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12),
    ) {
        let all = fixtures();
        let mut raw = all[which.index(all.len())].clone();
        for (at, byte, op) in edits {
            if raw.is_empty() { break; }
            let i = at.index(raw.len());
            match op {
                0 => raw[i] = byte,
                1 => { raw.remove(i); }
                _ => raw.insert(i, [b'|', b'^', b'~', b'\\', b'&', b'\r', b'\n', byte][usize::from(byte % 8)]),
            }
        }
        check(&Intake::new(IntakeConfig::default()), raw)?;
    }
}
