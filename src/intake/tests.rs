//! The intake against HL7 v2 chapter 2: what is stored, and what is answered.

use super::*;
use crate::record::WithHeaders;

fn origin() -> Origin {
    Origin {
        listener: "127.0.0.1:2575".into(),
        peer: "127.0.0.1:50000".into(),
        received_at: OffsetDateTime::UNIX_EPOCH,
    }
}

fn reply_segments(intake: &Intake, work: &FrameWork, stored: bool) -> Vec<String> {
    let bytes = intake.reply(work, stored).unwrap();
    String::from_utf8(bytes)
        .unwrap()
        .trim_end()
        .split('\r')
        .map(str::to_owned)
        .collect()
}

const ADT: &[u8] = b"MSH|^~\\&|A|F|B|G|2026||ADT^A01^ADT_A01|C1|P|2.5.1\rPID|||M1^^^H^MR\r";

#[test]
fn accepted_message_goes_to_its_topic_with_key_and_headers() {
    let intake = Intake::new(IntakeConfig::default());
    let w = intake.frame(Bytes::from_static(ADT), &origin());
    let r = &w.records[0];
    assert_eq!(r.topic, "hl7v2.adt");
    assert_eq!(r.key.as_deref(), Some("H|M1"));
    assert_eq!(&r.value[..], ADT, "the exact bytes are stored");
    assert_eq!(r.header(headers::CONTROL_ID), Some("C1"));
    assert_eq!(r.header(headers::MESSAGE_STRUCTURE), Some("ADT_A01"));
    assert_eq!(
        r.header(headers::RECEIVED_AT),
        Some("1970-01-01T00:00:00.000000Z")
    );
    assert_eq!(r.header(headers::PATIENT_KEY_MISSING), None);
    let segs = reply_segments(&intake, &w, true);
    assert_eq!(segs[1], "MSA|AA|C1");
}

#[test]
fn a_message_that_was_not_stored_gets_ae_with_err_207_never_aa() {
    let intake = Intake::new(IntakeConfig::default());
    let w = intake.frame(Bytes::from_static(ADT), &origin());
    let segs = reply_segments(&intake, &w, false);
    assert_eq!(segs[1], "MSA|AE|C1");
    assert!(segs[2].starts_with("ERR||"), "{segs:?}");
    assert!(segs[2].contains("|207^Application internal error^HL70357|E|"));
}

#[test]
fn unsupported_type_is_dead_lettered_and_rejected_with_200() {
    let intake = Intake::new(IntakeConfig::default());
    let siu = b"MSH|^~\\&|A|F|B|G|2026||SIU^S12|C2|P|2.5.1\rPID|||M1^^^H^MR\r";
    let w = intake.frame(Bytes::from_static(siu), &origin());
    assert_eq!(w.records[0].topic, "hl7v2.dlq");
    assert_eq!(w.records[0].key, None);
    assert_eq!(w.records[0].header(headers::ERROR_CODE), Some("200"));
    let segs = reply_segments(&intake, &w, true);
    assert_eq!(segs[1], "MSA|AR|C2");
    assert!(segs[2].contains("|200^Unsupported message type^HL70357|"));
}

#[test]
fn accept_types_opens_a_topic_for_another_type() {
    let intake = Intake::new(IntakeConfig {
        accept_types: vec!["siu".into()],
        ..IntakeConfig::default()
    });
    assert_eq!(intake.route("SIU").as_deref(), Some("hl7v2.siu"));
    assert_eq!(intake.route("MDM"), None);
    assert_eq!(intake.route("ORU").as_deref(), Some("hl7v2.oru"));
}

#[test]
fn missing_pid3_gives_a_null_key_and_a_header() {
    let intake = Intake::new(IntakeConfig::default());
    let w = intake.frame(
        Bytes::from_static(b"MSH|^~\\&|A|F|B|G|2026||ADT^A01|C3|P|2.5\rPID|||\r"),
        &origin(),
    );
    assert_eq!(w.records[0].key, None);
    assert_eq!(
        w.records[0].header(headers::PATIENT_KEY_MISSING),
        Some("true")
    );
}

#[test]
fn garbage_gets_ar_with_empty_msa2_and_is_kept_in_the_dead_letter_topic() {
    let intake = Intake::new(IntakeConfig::default());
    let w = intake.frame(Bytes::from_static(b"hello"), &origin());
    assert_eq!(w.records[0].topic, "hl7v2.dlq");
    assert_eq!(&w.records[0].value[..], b"hello");
    let segs = reply_segments(&intake, &w, true);
    assert_eq!(segs[1], "MSA|AR|");
}

#[test]
fn error_reasons_do_not_echo_message_content() {
    let intake = Intake::new(IntakeConfig::default());
    let w = intake.frame(
        Bytes::from_static(
            b"MSH|^~\\&|A|F|B|G|2026||ADT^A01|C4|P|2.5\rP!D|||SECRETMRN^^^H^MR|DOE^JANE\r",
        ),
        &origin(),
    );
    let reply = String::from_utf8(intake.reply(&w, true).unwrap()).unwrap();
    assert!(reply.contains("MSA|AR|C4"));
    for h in &w.records[0].headers {
        assert!(!h.1.contains("SECRET") && !h.1.contains("DOE"), "{h:?}");
    }
    assert!(!reply.contains("SECRET") && !reply.contains("DOE"));
}

#[test]
fn batch_stores_each_message_and_rejects_only_the_bad_one() {
    let intake = Intake::new(IntakeConfig::default());
    let batch = b"BHS|^~\\&|BA|BF|RA|RF|2026||||B1\rMSH|^~\\&|A|F|B|G|2026||ADT^A04|M1|P|2.5\rPID|||1^^^H^MR\rMSH|^~\\&|A|F|B|G|2026||SIU^S12|M2|P|2.5\rBTS|2\r";
    let w = intake.frame(Bytes::from_static(batch), &origin());
    assert_eq!(w.records.len(), 2);
    assert_eq!(w.records[0].topic, "hl7v2.adt");
    assert_eq!(
        &w.records[0].value[..],
        b"MSH|^~\\&|A|F|B|G|2026||ADT^A04|M1|P|2.5\rPID|||1^^^H^MR\r"
    );
    assert_eq!(w.records[1].topic, "hl7v2.dlq");
    let segs = reply_segments(&intake, &w, true);
    assert!(segs[0].starts_with("BHS|^~\\&|RA|RF|BA|BF|"));
    assert!(segs.contains(&"MSA|AA|M1".to_owned()));
    assert!(segs.contains(&"MSA|AR|M2".to_owned()));
    assert_eq!(segs.last().unwrap(), "BTS|2");
}

#[test]
fn enhanced_mode_ne_sends_nothing() {
    let intake = Intake::new(IntakeConfig::default());
    let w = intake.frame(
        Bytes::from_static(b"MSH|^~\\&|A|F|B|G|2026||ORU^R01|C5|P|2.5|||NE|AL\rPID|||1\r"),
        &origin(),
    );
    assert!(intake.reply(&w, true).is_none());
    assert_eq!(w.records[0].topic, "hl7v2.oru", "still stored");
}

#[test]
fn a_facility_the_certificate_may_not_use_is_rejected_103_and_dead_lettered() {
    let intake = Intake::new(IntakeConfig::default());
    let policy = SenderPolicy {
        identity: "CN=lab-gw".into(),
        facilities: Some(FacilitySet::new(["LAB"])),
    };
    // ADT's MSH-4 is F: not allowed.
    let w = intake.frame_from(Bytes::from_static(ADT), &origin(), Some(&policy));
    assert_eq!(w.records[0].topic, "hl7v2.dlq");
    assert_eq!(&w.records[0].value[..], ADT);
    assert_eq!(w.records[0].header(headers::ERROR_CODE), Some("103"));
    assert_eq!(w.records[0].header(headers::CLIENT_CERT), Some("CN=lab-gw"));
    let segs = reply_segments(&intake, &w, true);
    assert_eq!(segs[1], "MSA|AR|C1");
    assert!(
        segs[2].starts_with("ERR||MSH^1^4|103^Table value not found^HL70357|E|"),
        "{segs:?}"
    );
    // Enhanced mode: CR.
    let enhanced = b"MSH|^~\\&|A|F^1.2.3^ISO|B|G|2026||ADT^A01|C9|P|2.5.1|||AL|NE\rPID|||1\r";
    let w = intake.frame_from(Bytes::from_static(enhanced), &origin(), Some(&policy));
    assert_eq!(reply_segments(&intake, &w, true)[1], "MSA|CR|C9");
    // HD-1 or the whole MSH-4 may be listed.
    let ok = SenderPolicy {
        identity: "CN=x".into(),
        facilities: Some(FacilitySet::new(["F"])),
    };
    let w = intake.frame_from(Bytes::from_static(enhanced), &origin(), Some(&ok));
    assert_eq!(w.records[0].topic, "hl7v2.adt");
    assert!(FacilitySet::new(["F^1.2.3^ISO"]).allows("F^1.2.3^ISO", '^'));
    assert!(FacilitySet::new(["*"]).allows("ANY", '^'));
    assert!(!FacilitySet::new(["F"]).allows("", '^'));
    assert!(FacilitySet::default().is_empty());
}

#[test]
fn oversize_head_is_dead_lettered_truncated_and_quoted_in_the_ar() {
    let intake = Intake::new(IntakeConfig::default());
    let w = intake.oversize(
        Bytes::from_static(b"MSH|^~\\&|A|F|B|G|2026||ORU^R01|BIG1|P|2.5\rOBX|1|ED|"),
        1024,
        &origin(),
    );
    assert_eq!(w.records[0].topic, "hl7v2.dlq");
    assert!(w.records[0].header(headers::TRUNCATED).is_some());
    let segs = reply_segments(&intake, &w, true);
    assert_eq!(segs[1], "MSA|AR|BIG1");
    assert!(segs[2].contains("104^Value too long"));
}
