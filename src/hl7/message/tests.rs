//! Reading messages as HL7 v2 chapter 2 describes them.

use super::normalise::split_lines;
use super::*;

#[test]
fn lines_split_as_str_split_does() {
    for t in [
        "",
        "\r",
        "a\rb",
        "a\r\nb\n",
        "\n\né\r",
        "x",
        "MSH|^~\\&|0123456789abcdef\rPID|é\n0123456789\r\n\r\n",
        "0123456\r01234567\n012345678",
    ] {
        let ours: Vec<_> = split_lines(t).map(|(_, l)| l).collect();
        for (at, l) in split_lines(t) {
            assert_eq!(t.get(at..at + l.len()), Some(l), "{t:?}");
        }
        let std: Vec<_> = t.split(['\r', '\n']).collect();
        assert_eq!(ours, std, "{t:?}");
    }
}

/// The mapper reads messages through [`MessageView`]; it must see exactly
/// the segments, fields, header and PID-3 hl7-parser's tree gives.
#[test]
fn the_view_splits_exactly_as_hl7_parser() {
    let messages = [
        A01.to_owned(),
        "MSH|^~\\&\rPID|\rNTE\rZZ1|||\r".to_owned(),
        "MSH|^~\\&|\rOBX|1|ST|a^b&c~d^e||x\\F\\y| |\r".to_owned(),
        "MSH|^~\\&||||||||ORU^R01|C|P\rOBX|1|ST|a^b&c~d^e||x\\F\\y| |\rNTE\r".to_owned(),
        "MSH|^~\\&#|A|F|||2026||ORU^R01^ORU_R01~X^Y|C1 |P|2.7||||||8859/1~UNICODE UTF-8\nPID|||1^^^H&2.16&ISO^MR~~^^^X^PI~7^^^&u^SS||é\r\n\r\nPV1|1|I|||||||||||||||||V1~V2\t \r".to_owned(),
        "MSH#$%!@#A#F###2026##ADT$A01#C2#P#2.5\rPID###M1$$$H@x@ISO$MR%M2$$$H$PI\rOBX#1#NM#A$B##1!S!#\r".to_owned(),
        "MSH|^~\\&|||||||ORU^R01|C3|P|2.5.1\rOBR|1||F1^X|A^B^L\rOBX||ST|X^T^L||~one~||||||F|||20261115\rNTE|1|L|a~b\rNTE|2\r".to_owned(),
    ];
    for text in &messages {
        let p = prepare(text.as_bytes(), ReadOptions::default(), Keep::All).unwrap();
        let (msg, tree, view, spans) = match (p.parse(), p.view()) {
            (Ok((msg, tree)), Ok((view, spans))) => (msg, tree, view, spans),
            (Err(a), Err(b)) => {
                assert_eq!(a.reason, b.reason, "{text:?}");
                continue;
            }
            (a, b) => panic!("{text:?}: {:?} vs {:?}", a.err(), b.err()),
        };
        assert_eq!(tree.header, spans.header, "{text:?}");
        assert_eq!(
            tree.patient_identifiers, spans.patient_identifiers,
            "{text:?}"
        );
        let segments: Vec<_> = view.segments().collect();
        assert_eq!(msg.segments().count(), segments.len(), "{text:?}");
        for (s, v) in msg.segments().zip(&segments) {
            assert_eq!(s.name, v.name, "{text:?}");
            for n in 1..s.fields.len() + 3 {
                assert_eq!(
                    s.field(n).map(|f| f.raw_value()),
                    v.field(n),
                    "{text:?} {} field {n}",
                    s.name
                );
            }
        }
        assert_eq!(
            view.segment("PID").map(|s| s.name),
            msg.segment("PID").map(|s| s.name)
        );
    }
}

const A01: &str = "MSH|^~\\&|APP|FAC|RAPP|RFAC|20261101120000||ADT^A01^ADT_A01|CID1|P|2.5.1|||AL|NE||UNICODE UTF-8\rPID|||MRN1^^^HOSP^MR~99^^^SSA^SS||DOE^JANE\r";

#[test]
fn reads_msh_fields_the_bridge_needs() {
    let m = read(A01.as_bytes(), ReadOptions::default()).unwrap();
    let h = &m.header;
    assert_eq!(
        (h.sending_application.as_str(), h.sending_facility.as_str()),
        ("APP", "FAC")
    );
    assert_eq!(
        (
            h.message_type.as_str(),
            h.trigger_event.as_str(),
            h.message_structure.as_str()
        ),
        ("ADT", "A01", "ADT_A01")
    );
    assert_eq!(h.control_id, "CID1");
    assert_eq!(h.version_number(), Some((2, 5)));
    assert_eq!(
        (h.accept_ack_type.as_str(), h.application_ack_type.as_str()),
        ("AL", "NE")
    );
    assert_eq!(h.charset, "UNICODE UTF-8");
    assert_eq!(m.patient_identifiers.len(), 2);
    assert_eq!(m.patient_identifiers[0].type_code, "MR");
}

#[test]
fn lf_crlf_bom_and_blank_lines_read_the_same() {
    let lf = A01.replace('\r', "\n");
    let crlf = A01.replace('\r', "\r\n");
    let bom = format!("\u{feff}{}", A01.replace('\r', "\r\r"));
    for v in [lf, crlf, bom] {
        let m = read(v.as_bytes(), ReadOptions::default()).unwrap();
        assert_eq!(m.header.control_id, "CID1");
        assert_eq!(m.patient_identifiers.len(), 2);
    }
}

#[test]
fn whitespace_before_msh_inside_the_frame_is_tolerated() {
    let v = format!("\r\n  {A01}");
    assert_eq!(
        read(v.as_bytes(), ReadOptions::default())
            .unwrap()
            .header
            .control_id,
        "CID1"
    );
}

#[test]
fn a_truncation_character_in_msh2_does_not_shift_fields() {
    let v28 = A01
        .replacen("^~\\&", "^~\\&#", 1)
        .replacen("2.5.1", "2.8", 1);
    let m = read(v28.as_bytes(), ReadOptions::default()).unwrap();
    assert_eq!(m.header.control_id, "CID1");
    assert_eq!(m.header.sending_application, "APP");
    assert_eq!(m.header.delimiters.encoding_characters, "^~\\&#");
}

#[test]
fn a_line_that_is_not_a_segment_is_rejected_with_its_line_number() {
    let bad = A01.replace("PID|", "P!D|");
    let e = read(bad.as_bytes(), ReadOptions::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::SegmentSequence);
    assert_eq!(e.segment_line, Some(2));
}

#[test]
fn bad_encoding_characters_are_rejected() {
    for msh in [
        "MSH|^~|A|B",
        "MSH|^^\\&|A",
        "MSH",
        "MSHX^~\\&X",
        "MSH|^~\\&abc|",
    ] {
        let e = read(msh.as_bytes(), ReadOptions::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::DataType, "{msh}");
    }
}

#[test]
fn missing_control_id_is_a_required_field_error() {
    let e = read(
        b"MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\r",
        ReadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::RequiredFieldMissing);
}

#[test]
fn header_only_survives_a_broken_body() {
    let bad = A01.replace("PID|", "P!D|");
    let h = read_header_only(bad.as_bytes(), ReadOptions::default()).unwrap();
    assert_eq!(h.control_id, "CID1");
}

#[test]
fn authority_from_cx4_universal_id() {
    let m = read(
        b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|X|P|2.5\rPID|||M3^^^&1.2.3&ISO^MR\r",
        ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(m.patient_identifiers[0].authority_namespace, "");
    assert_eq!(m.patient_identifiers[0].authority_universal_id, "1.2.3");
}
