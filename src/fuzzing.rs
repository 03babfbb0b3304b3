//! The checks behind the cargo-fuzz targets (`fuzz/fuzz_targets/*`), kept in
//! the library so that `tests/fuzz_corpus.rs` runs exactly the same checks
//! over the committed corpus and the regression inputs.
//!
//! Each check takes arbitrary bytes and panics when an invariant does not
//! hold: a panic is how libFuzzer learns of a failure. Panic messages carry
//! lengths, counts and codes only, never input bytes (inputs may be HL7
//! messages, so they may be patient data). Not part of the public API.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::avro::{self, FhirSchemas};
use crate::headers;
use crate::hl7::message::read;
use crate::hl7::{Charset, ErrorCode};
use crate::intake::{FrameWork, Intake, IntakeConfig, Origin};
use crate::mllp::{frame, MllpCodec, MllpError, END, START, TRAILER};
use crate::record::WithHeaders;
use crate::transform::{Mapped, Mapper};

/// What an MLLP input exercised (for corpus tests to assert coverage).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MllpSummary {
    pub frames: usize,
    pub oversize: usize,
    pub junk_bytes: u64,
}

/// Largest `max_message_bytes` the MLLP check uses: small, so the fuzzer
/// reaches the oversize paths with short inputs.
pub const MLLP_MAX_LIMIT: usize = 128;

/// Input layout: byte 0 picks the frame limit (1..=128), byte 1 (mod 16)
/// says how many of the next bytes are chunk sizes (each 1..=64, cycled;
/// none means one read), the rest is the byte stream.
///
/// Checks: no panic; no frame longer than the limit; after every `Ok(None)`
/// the buffer holds at most the limit (memory is bounded whatever arrives);
/// an oversize head is bounded; every frame re-encodes and decodes to itself;
/// and when nothing was oversize, the frames and the junk count are those of
/// a one-pass reference decoder over the whole stream, so the chunking never
/// changes the result.
pub fn mllp_decoder(data: &[u8]) -> MllpSummary {
    let (limit, chunks, stream) = match data {
        [l, n, rest @ ..] => {
            let n = usize::from(*n % 16).min(rest.len());
            let (sizes, stream) = rest.split_at(n);
            let chunks: Vec<usize> = sizes.iter().map(|s| usize::from(s % 64) + 1).collect();
            (usize::from(*l) % MLLP_MAX_LIMIT + 1, chunks, stream)
        }
        _ => (MLLP_MAX_LIMIT, Vec::new(), data),
    };
    let mut codec = MllpCodec::new(limit);
    let mut buf = BytesMut::new();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut summary = MllpSummary::default();
    let mut pos = 0;
    let mut i = 0;
    while pos < stream.len() {
        let n = if chunks.is_empty() {
            stream.len()
        } else {
            chunks[i % chunks.len()]
        };
        i += 1;
        let end = (pos + n).min(stream.len());
        buf.extend_from_slice(&stream[pos..end]);
        pos = end;
        drain(
            &mut codec,
            &mut buf,
            limit,
            &mut frames,
            &mut summary,
            false,
        );
    }
    drain(&mut codec, &mut buf, limit, &mut frames, &mut summary, true);
    assert!(buf.is_empty(), "decode_eof leaves no bytes behind");
    assert!(!codec.in_partial_frame(), "no partial frame after EOF");
    summary.frames = frames.len();
    summary.junk_bytes = codec.take_junk_bytes();

    for f in &frames {
        let mut c = MllpCodec::new(limit);
        let mut b = BytesMut::from(&frame(f)[..]);
        match c.decode(&mut b) {
            Ok(Some(back)) => assert!(back == *f, "a decoded frame re-encodes to itself"),
            _ => panic!("a decoded frame of {} bytes does not decode again", f.len()),
        }
        assert!(b.is_empty(), "re-encoded frame leaves no bytes");
    }

    if summary.oversize == 0 {
        let (want, junk) = reference_decode(stream);
        assert!(
            frames.len() == want.len(),
            "chunked decode gave {} frames, one pass {}",
            frames.len(),
            want.len()
        );
        for (k, (got, want)) in frames.iter().zip(&want).enumerate() {
            assert!(
                got[..] == **want,
                "frame {k} differs from the one-pass decode"
            );
        }
        assert!(
            summary.junk_bytes == junk,
            "junk count {} differs from the one-pass count {junk}",
            summary.junk_bytes
        );
    }
    summary
}

fn drain(
    codec: &mut MllpCodec,
    buf: &mut BytesMut,
    limit: usize,
    frames: &mut Vec<Bytes>,
    summary: &mut MllpSummary,
    eof: bool,
) {
    loop {
        let before = buf.len();
        let r = if eof {
            codec.decode_eof(buf)
        } else {
            codec.decode(buf)
        };
        match r {
            Ok(Some(f)) => {
                assert!(
                    f.len() <= limit,
                    "frame of {} bytes passed the limit {limit}",
                    f.len()
                );
                frames.push(f);
            }
            Ok(None) => {
                assert!(
                    buf.len() <= limit,
                    "{} bytes buffered with a limit of {limit}",
                    buf.len()
                );
                return;
            }
            Err(MllpError::Oversize { limit: l, head }) => {
                assert!(l == limit, "the error reports the configured limit");
                assert!(
                    head.len() > limit && head.len() <= crate::mllp::OVERSIZE_HEAD_BYTES,
                    "oversize head of {} bytes (limit {limit})",
                    head.len()
                );
                assert!(buf.len() < before, "an error consumes input");
                summary.oversize += 1;
            }
            Err(MllpError::Io(_)) => panic!("the decoder never reports I/O errors itself"),
        }
    }
}

/// The MLLP r2 rules in one pass over a whole stream: skip to `<VT>`, the
/// payload runs to the first `<FS><CR>`; an unterminated frame at the end is
/// dropped. Returns the frames and the bytes skipped outside frames.
fn reference_decode(stream: &[u8]) -> (Vec<&[u8]>, u64) {
    let mut frames = Vec::new();
    let mut junk = 0u64;
    let mut rest = stream;
    while let Some(vt) = rest.iter().position(|&b| b == START) {
        junk += vt as u64;
        let body = &rest[vt + 1..];
        match body.windows(2).position(|w| w == [END, TRAILER]) {
            Some(end) => {
                frames.push(&body[..end]);
                rest = &body[end + 2..];
            }
            None => return (frames, junk),
        }
    }
    junk += rest.len() as u64;
    (frames, junk)
}

/// What an intake input exercised.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IntakeSummary {
    pub messages: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub batch: bool,
    pub keyed: usize,
}

fn origin() -> Origin {
    Origin {
        listener: "fuzz-listener".into(),
        peer: "fuzz-peer".into(),
        received_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

/// The parse and routing step as the listener runs it ([`Intake::frame`]:
/// batch split, read, route, patient key, record headers), then the ACK
/// builder ([`Intake::reply`]) for both storage outcomes, and the oversize
/// path ([`Intake::oversize`]) on the same bytes.
///
/// Checks: no panic; one record per message, each the exact bytes received
/// (a slice of the frame); a record goes to its type's topic only when
/// accepted, with a non-empty key or the key-missing header, and to the
/// dead-letter topic with a table 0357 code otherwise; no header value
/// holds a line break; every reply is well formed (see [`check_reply`]),
/// never accepts an unstored message, and quotes each message's MSH-10;
/// the ACK to an accepted message is itself readable by the bridge's reader.
pub fn parse_route_ack(data: &[u8]) -> IntakeSummary {
    let intake = Intake::new(IntakeConfig::default());
    let input = Bytes::copy_from_slice(data);
    let work = intake.frame(input.clone(), &origin());
    let summary = check_work(&intake, &work, &input);

    let head = input.slice(..input.len().min(crate::mllp::OVERSIZE_HEAD_BYTES));
    let over = intake.oversize(head.clone(), 1, &origin());
    assert!(over.records.len() == 1 && over.items.len() == 1);
    assert!(
        over.records[0].value == head,
        "oversize head stored as received"
    );
    assert!(over.records[0].header(headers::TRUNCATED).is_some());
    match &over.items[0].verdict {
        Err(r) => assert!(r.code == ErrorCode::ValueTooLong),
        Ok(()) => panic!("an oversize frame is never accepted"),
    }
    check_work(&intake, &over, &head);
    summary
}

fn check_work(intake: &Intake, work: &FrameWork, input: &Bytes) -> IntakeSummary {
    assert!(
        work.records.len() == work.items.len(),
        "one item per record"
    );
    if work.batch.is_none() {
        assert!(work.records.len() == 1, "a single frame is one record");
    }
    let mut s = IntakeSummary {
        messages: work.records.len(),
        batch: work.batch.is_some(),
        ..IntakeSummary::default()
    };
    let base = input.as_ptr() as usize;
    for (r, item) in work.records.iter().zip(&work.items) {
        if work.batch.is_none() {
            assert!(r.value == *input, "the stored value is the frame");
        } else {
            let at = (r.value.as_ptr() as usize).wrapping_sub(base);
            assert!(
                !r.value.is_empty() && at + r.value.len() <= input.len(),
                "a batch message is a slice of the frame"
            );
            assert!(r.value.starts_with(b"MSH"), "a batch message starts at MSH");
        }
        for (k, v) in &r.headers {
            assert!(!v.contains(['\r', '\n']), "header {k} holds a line break");
        }
        match &item.verdict {
            Ok(()) => {
                s.accepted += 1;
                let h = item
                    .header
                    .as_ref()
                    .expect("an accepted message has a header");
                assert!(!h.message_type.is_empty() && !h.control_id.is_empty());
                assert!(r.topic != "hl7v2.dlq", "accepted but dead-lettered");
                let t = r.topic.strip_prefix("hl7v2.").unwrap_or("");
                assert!(
                    !t.is_empty()
                        && t.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                    "topic is the prefix and a lower-case alphanumeric type"
                );
                assert!(t == h.message_type.trim().to_ascii_lowercase());
                match &r.key {
                    Some(k) => {
                        s.keyed += 1;
                        assert!(!k.is_empty(), "a patient key is never empty");
                        assert!(r.header(headers::PATIENT_KEY_MISSING).is_none());
                    }
                    None => assert!(r.header(headers::PATIENT_KEY_MISSING) == Some("true")),
                }
                assert!(r.header(headers::CONTROL_ID) == Some(h.control_id.as_str()));
            }
            Err(reject) => {
                s.rejected += 1;
                assert!(r.topic == "hl7v2.dlq", "rejected but routed");
                assert!(r.key.is_none(), "dead letters are not keyed");
                let code = reject.code.code().to_string();
                assert!(r.header(headers::ERROR_CODE) == Some(code.as_str()));
                assert!(r.header(headers::ERROR_REASON) == Some(reject.reason));
            }
        }
    }
    for stored in [true, false] {
        check_reply(intake, work, stored);
    }
    s
}

/// A reply is well formed when, decoded in the charset it was encoded in,
/// it is CR-terminated segments: per answered message `MSH`, `MSA` and an
/// `ERR` exactly when it is not an accept, with MSA-1 the code the rules
/// give (never AA/CA when not stored) and MSA-2 the inbound MSH-10; a batch
/// wraps them in `[FHS] BHS ... BTS [FTS]` with the counts.
fn check_reply(intake: &Intake, work: &FrameWork, stored: bool) {
    let answered: Vec<_> = work
        .items
        .iter()
        .filter_map(|i| i.ack_code(stored).map(|c| (i, c)))
        .collect();
    let Some(bytes) = intake.reply(work, stored) else {
        assert!(
            work.batch.is_none() && answered.is_empty(),
            "no reply only when no single message asks for one"
        );
        return;
    };
    let charset = answered
        .first()
        .map(|(i, _)| i.charset)
        .unwrap_or(Charset::Ascii);
    let text = decode_reply(charset, &bytes);
    assert!(text.ends_with('\r'), "a reply ends with CR");
    let segs: Vec<&str> = text[..text.len() - 1].split('\r').collect();
    let mut k = 0;
    if work.batch.is_some() {
        if segs.first().is_some_and(|s| s.starts_with("FHS")) {
            k += 1;
        }
        assert!(
            segs.get(k).is_some_and(|s| s.starts_with("BHS")),
            "batch reply has BHS"
        );
        k += 1;
    }
    for (item, code) in &answered {
        let msh = segs.get(k).copied().unwrap_or("");
        assert!(
            msh.starts_with("MSH") && msh.len() >= 8,
            "ACK starts with MSH"
        );
        let fs = msh[3..].chars().next().unwrap_or('|');
        assert!(
            fs.is_ascii() && !fs.is_ascii_alphanumeric(),
            "MSH-1 is a delimiter"
        );
        let msh_fields: Vec<&str> = msh.split(fs).collect();
        assert!(msh_fields.len() >= 10, "ACK MSH has fields up to MSH-10");
        assert!(msh_fields[8].starts_with("ACK"), "ACK MSH-9 is ACK");
        assert!(!msh_fields[9].is_empty(), "ACK has its own MSH-10");
        let msa: Vec<&str> = segs.get(k + 1).copied().unwrap_or("").split(fs).collect();
        assert!(msa.len() >= 3 && msa[0] == "MSA", "ACK has MSA after MSH");
        assert!(
            msa[1] == code.as_str(),
            "MSA-1 is the code the ACK rules give"
        );
        // A batch reply is in the first answered message's charset: another
        // message's MSH-10 comes back as that charset holds it (`?` for
        // what it cannot), never with characters added.
        let quoted = decode_reply(charset, &charset.encode(item.control_id()));
        assert!(msa[2] == quoted, "MSA-2 quotes the inbound MSH-10");
        assert!(
            quoted.chars().count() == item.control_id().chars().count(),
            "MSA-2 has as many characters as MSH-10"
        );
        if !stored {
            assert!(!code.is_accept(), "never an accept without storage");
        }
        let accepted = stored && item.verdict.is_ok();
        assert!(
            code.is_accept() == accepted,
            "accept exactly when stored and valid"
        );
        k += 2;
        let has_err = segs.get(k).is_some_and(|s| s.starts_with("ERR"));
        assert!(has_err != accepted, "ERR exactly when not accepted");
        if has_err {
            k += 1;
        }
        // Read back only when the charset was not guessed: an undeclared
        // charset read through the fallback (bytes not UTF-8) comes back as
        // the same bytes, which may then happen to be valid UTF-8.
        let guessed = item
            .header
            .as_ref()
            .is_some_and(|h| h.charset.trim().is_empty())
            && !matches!(item.charset, Charset::Ascii | Charset::Utf8);
        if accepted && work.batch.is_none() && !guessed {
            let back = read(&bytes, crate::hl7::ReadOptions::default())
                .unwrap_or_else(|r| panic!("the ACK to an accepted message is unreadable: {r}"));
            let h = item.header.as_ref().expect("accepted has a header");
            assert!(back.header.message_type == "ACK");
            assert!(back.header.sending_application == h.receiving_application);
            assert!(back.header.receiving_facility == h.sending_facility);
        }
    }
    if work.batch.is_some() {
        let bts = segs.get(k).copied().unwrap_or("");
        assert!(
            bts.starts_with("BTS") && bts.ends_with(&answered.len().to_string()),
            "BTS counts the ACKs"
        );
        k += 1;
        if segs.get(k).is_some_and(|s| s.starts_with("FTS")) {
            k += 1;
        }
    }
    assert!(k == segs.len(), "no segments after the reply's last");
}

fn decode_reply(charset: Charset, bytes: &[u8]) -> String {
    match charset {
        Charset::Ascii | Charset::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => panic!("an ASCII/UTF-8 reply is not UTF-8"),
        },
        Charset::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        Charset::Other(enc) => enc.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

/// What a mapper input exercised.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MapSummary {
    pub mapped: bool,
    pub no_content: bool,
    pub resources: usize,
}

/// The v2-to-FHIR mapper ([`Mapper::map`]) on arbitrary bytes, then every
/// resource it returns through the compiled Avro encoder.
///
/// Checks: no panic; errors are typed with a non-empty reason; every
/// resource is of a type the stage has a topic for (Encounter only first); the
/// schema accepts every resource the mapper makes (a mismatch would send a
/// valid message to the dead-letter topic); `decode(encode(r)) == r`, as a
/// value and as text (member order, number text); and the fast encoder
/// writes the same bytes as apache-avro's writer over [`avro::to_avro`].
///
/// `member_order`: also require the decoded text to equal the mapper's
/// (members in schema order). The fuzz target passes `false` until the
/// mapper puts `Encounter.identifier[0].type` in schema order when PV1-19
/// has no CX-5 (fuzz/regressions/map_avro/encounter_identifier_type_order);
/// the corpus tests pass `true`.
pub fn map_avro(
    mapper: &Mapper,
    schemas: &FhirSchemas,
    data: &[u8],
    member_order: bool,
) -> MapSummary {
    let resources = match mapper.map(data) {
        Err(e) => {
            assert!(!e.reason.is_empty(), "a map error has a reason");
            return MapSummary::default();
        }
        Ok(Mapped::NoContent) => {
            return MapSummary {
                no_content: true,
                ..MapSummary::default()
            }
        }
        Ok(Mapped::Resources(rs)) => rs,
        Ok(Mapped::Partial { resources, skipped }) => {
            assert!(
                !skipped.is_empty(),
                "a partial outcome names what it skipped"
            );
            assert!(
                skipped.iter().all(|s| !s.reason.is_empty() && s.index > 0),
                "a skipped segment has a position and a reason"
            );
            resources
        }
    };
    assert!(!resources.is_empty(), "Resources is never empty");
    for (i, r) in resources.iter().enumerate() {
        let rt = r.get("resourceType").and_then(|v| v.as_str()).unwrap_or("");
        let emitted = avro::RESOURCE_SCHEMAS.iter().any(|(t, _)| *t == rt);
        assert!(
            emitted && (rt != "Encounter" || i == 0),
            "resource {i} has an unexpected resourceType"
        );
        let Some(encoder) = schemas.encoder(rt) else {
            panic!("no Avro schema for {rt}");
        };
        let bytes = encoder
            .encode(r)
            .unwrap_or_else(|e| panic!("mapped {rt} does not fit its schema: {e}"));
        let back = avro::decode(encoder.schema(), &bytes)
            .unwrap_or_else(|e| panic!("encoded {rt} does not decode: {e}"));
        assert!(back == *r, "{rt} differs after the Avro round trip");
        if member_order {
            assert!(
                serde_json::to_string(&back).ok() == serde_json::to_string(r).ok(),
                "{rt} text (member order) differs after the Avro round trip"
            );
        }
        let value = avro::to_avro(encoder.schema(), r)
            .unwrap_or_else(|e| panic!("to_avro rejects a {rt} the encoder took: {e}"));
        let reference = apache_avro::writer::datum::GenericDatumWriter::builder(encoder.schema())
            .build()
            .and_then(|w| w.write_value_to_vec(value))
            .unwrap_or_else(|_| panic!("apache-avro cannot write a {rt} the encoder took"));
        assert!(
            reference == bytes,
            "fast encoder and apache-avro differ for {rt}"
        );
    }
    MapSummary {
        mapped: true,
        no_content: false,
        resources: resources.len(),
    }
}
