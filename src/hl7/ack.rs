//! Acknowledgements per HL7 v2 chapter 2 (2.9.2 original mode, 2.9.3 enhanced mode).
//!
//! The bridge is the receiving *system*, not the receiving application, so it
//! only ever sends the accept-level answer: AA/AE/AR in original mode, CA/CE/CR
//! in enhanced mode as MSH-15 asks. It never sends MSH-16 application ACKs.

use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;

use super::error::{ErrorCode, Reject};
use super::message::{Delimiters, MessageHeader};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    AA,
    AE,
    AR,
    CA,
    CE,
    CR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// True for AA and CA: the sender may delete its copy.
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }
}

/// What happened to a message, as far as its ACK is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Disposition<'a> {
    /// Durably stored on its topic.
    Accepted,
    /// Refused for what it is (type, structure, size); stored in the dead-letter topic.
    Rejected(&'a Reject),
    /// Could not be stored (failure or timeout): the sender must retry.
    Failed,
}

/// MSH-15 accept acknowledgment type (HL7 table 0155).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// MSH-15 and MSH-16 both empty.
    Original,
    /// AL, or MSH-15 empty while MSH-16 is valued (enhanced mode, default AL).
    Always,
    Never,
    OnErrorOnly,
    OnSuccessOnly,
}

impl AckMode {
    pub fn of(header: &MessageHeader) -> Self {
        match header.accept_ack_type.to_ascii_uppercase().as_str() {
            "" if header.application_ack_type.is_empty() => AckMode::Original,
            "NE" => AckMode::Never,
            "ER" => AckMode::OnErrorOnly,
            "SU" => AckMode::OnSuccessOnly,
            _ => AckMode::Always,
        }
    }

    /// The code to send, or `None` when MSH-15 says not to answer.
    pub fn code(self, d: Disposition<'_>) -> Option<AckCode> {
        let (original, enhanced) = match d {
            Disposition::Accepted => (AckCode::AA, AckCode::CA),
            Disposition::Rejected(_) => (AckCode::AR, AckCode::CR),
            Disposition::Failed => (AckCode::AE, AckCode::CE),
        };
        let success = matches!(d, Disposition::Accepted);
        match self {
            AckMode::Original => Some(original),
            AckMode::Always => Some(enhanced),
            AckMode::Never => None,
            AckMode::OnErrorOnly => (!success).then_some(enhanced),
            AckMode::OnSuccessOnly => success.then_some(enhanced),
        }
    }
}

/// The error a Failed disposition reports.
pub const STORE_FAILED: Reject = Reject {
    code: ErrorCode::ApplicationInternal,
    reason: "message could not be stored durably in time; resend it",
    segment_line: None,
    field: None,
};

/// Generates ACK control IDs (MSH-10): unique across restarts, at most 20
/// characters (the v2.5 length of MSH-10).
#[derive(Debug)]
pub struct ControlIds {
    prefix: String,
    next: AtomicU64,
}

impl Default for ControlIds {
    fn default() -> Self {
        let secs = OffsetDateTime::now_utc().unix_timestamp();
        Self {
            prefix: format!("B{secs:010}"),
            next: AtomicU64::new(0),
        }
    }
}

impl ControlIds {
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % 1_000_000_000;
        let mut id = String::with_capacity(self.prefix.len() + 9);
        id.push_str(&self.prefix);
        push_digits(&mut id, n, 9);
        id
    }
}

/// HL7 DTM in UTC with milliseconds, e.g. `20261122215530.123+0000`.
///
/// Written digit by digit: it is built for every ACK, and `time`'s
/// formatter cost about ten times as many instructions.
pub fn hl7_now() -> String {
    dtm_millis(OffsetDateTime::now_utc())
}

fn dtm_millis(t: OffsetDateTime) -> String {
    let mut s = String::with_capacity(24);
    push_digits(&mut s, t.year().clamp(0, 9999) as u64, 4);
    push_digits(&mut s, u64::from(u8::from(t.month())), 2);
    push_digits(&mut s, u64::from(t.day()), 2);
    push_digits(&mut s, u64::from(t.hour()), 2);
    push_digits(&mut s, u64::from(t.minute()), 2);
    push_digits(&mut s, u64::from(t.second()), 2);
    s.push('.');
    push_digits(&mut s, u64::from(t.millisecond()), 3);
    s.push_str("+0000");
    s
}

/// Appends `n` in decimal, zero-padded to `width` digits (more if `n` needs them).
fn push_digits(s: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while n > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // Only ASCII digits were written.
    s.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Escapes text for a field, using the message's own delimiters.
pub fn escape(text: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let seq = if c == d.escape {
            "E"
        } else if c == d.field {
            "F"
        } else if c == d.component {
            "S"
        } else if c == d.repetition {
            "R"
        } else if c == d.subcomponent {
            "T"
        } else {
            out.push(c);
            continue;
        };
        out.push(d.escape);
        out.push_str(seq);
        out.push(d.escape);
    }
    out
}

/// Builds an ACK as text (segments separated by CR, trailing CR).
/// `header` is the inbound MSH, or a default for input with no readable MSH.
pub fn ack_text(
    header: &MessageHeader,
    code: AckCode,
    error: Option<&Reject>,
    control_id: &str,
    now: &str,
) -> String {
    let d = &header.delimiters;
    let f = d.field;
    let c = d.component;
    let mut trigger = String::with_capacity(header.trigger_event.len() + 8);
    trigger.push_str("ACK");
    if !header.trigger_event.is_empty() {
        trigger.push(c);
        trigger.push_str(&header.trigger_event);
        trigger.push(c);
        trigger.push_str("ACK");
    }
    let legacy = matches!(header.version_number(), Some((2, minor)) if minor < 5);
    let mut s = String::with_capacity(256);
    // MSH-1..MSH-18. MSH-15/16 stay empty: nobody acknowledges an ACK.
    let fields: [&str; 17] = [
        &d.encoding_characters,
        &header.receiving_application,
        &header.receiving_facility,
        &header.sending_application,
        &header.sending_facility,
        now,
        "",
        &trigger,
        control_id,
        &header.processing_id,
        &header.version,
        "",
        "",
        "",
        "",
        "",
        &header.charset,
    ];
    s.push_str("MSH");
    for v in fields {
        s.push(f);
        s.push_str(v);
    }
    while s.ends_with(f) {
        s.pop();
    }
    s.push('\r');
    s.push_str("MSA");
    s.push(f);
    s.push_str(code.as_str());
    s.push(f);
    s.push_str(&header.control_id);
    if let (Some(e), true) = (error, legacy) {
        s.push(f);
        s.push_str(&escape(e.reason, d));
    }
    s.push('\r');
    if let Some(e) = error {
        let (seg, field) = e
            .field
            .map(|(s, n)| (s, n.to_string()))
            .unwrap_or(("", String::new()));
        let seq = if seg.is_empty() { "" } else { "1" };
        if legacy {
            // v2.3/2.4: ERR-1 (ELD) = segment^sequence^field^code&text&HL70357
            let st = d.subcomponent;
            s.push_str(&format!(
                "ERR{f}{seg}{c}{seq}{c}{field}{c}{}{st}{}{st}HL70357\r",
                e.code.code(),
                e.code.name()
            ));
        } else {
            // v2.5+: ERR-2 location, ERR-3 code (CWE, table 0357), ERR-4 severity,
            // ERR-7 diagnostic information, ERR-8 user message.
            let location = if seg.is_empty() {
                String::new()
            } else {
                format!("{seg}{c}{seq}{c}{field}")
            };
            let diagnostic = e
                .segment_line
                .map(|l| format!("segment line {l}"))
                .unwrap_or_default();
            s.push_str(&format!(
                "ERR{f}{f}{location}{f}{}{c}{}{c}HL70357{f}E{f}{f}{f}{diagnostic}{f}{}\r",
                e.code.code(),
                e.code.name(),
                escape(e.reason, d)
            ));
        }
    }
    s
}

/// The header used to answer input that has no readable MSH.
pub fn fallback_header() -> MessageHeader {
    MessageHeader {
        processing_id: "P".to_owned(),
        version: "2.5.1".to_owned(),
        ..MessageHeader::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::message::{read, ReadOptions};

    fn header(msg: &str) -> MessageHeader {
        read(msg.as_bytes(), ReadOptions::default()).unwrap().header
    }

    const V251: &str = "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20261101120000||ORU^R01^ORU_R01|CTRL42|P|2.5.1||||||8859/1\r";
    const V23: &str =
        "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20261101120000||ADT^A01|CTRL23|T|2.3\r";

    fn segs(ack: &str) -> Vec<Vec<String>> {
        ack.trim_end_matches('\r')
            .split('\r')
            .map(|s| s.split('|').map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn msh_swaps_sender_and_receiver_and_copies_version_processing_and_charset() {
        let h = header(V251);
        let a = segs(&ack_text(&h, AckCode::AA, None, "ACKID1", "20261122000000"));
        let msh = &a[0];
        assert_eq!(msh[0], "MSH");
        assert_eq!(msh[1], "^~\\&");
        assert_eq!(
            (msh[2].as_str(), msh[3].as_str()),
            ("RECVAPP", "RECVFAC"),
            "MSH-3/4 from inbound MSH-5/6"
        );
        assert_eq!(
            (msh[4].as_str(), msh[5].as_str()),
            ("SENDAPP", "SENDFAC"),
            "MSH-5/6 from inbound MSH-3/4"
        );
        assert_eq!(msh[6], "20261122000000");
        assert_eq!(msh[8], "ACK^R01^ACK");
        assert_eq!(msh[9], "ACKID1");
        assert_eq!(msh[10], "P");
        assert_eq!(msh[11], "2.5.1");
        assert_eq!(msh[14], "", "MSH-15 empty in an ACK");
        assert_eq!(msh[15], "", "MSH-16 empty in an ACK");
        assert_eq!(msh[17], "8859/1");
        assert_eq!(a[1], vec!["MSA", "AA", "CTRL42"]);
        assert_eq!(a.len(), 2, "no ERR on success");
    }

    #[test]
    fn v25_errors_use_err3_table_0357_and_err4_severity() {
        let h = header(V251);
        let e = Reject::new(
            ErrorCode::UnsupportedMessageType,
            "message type is not routed by this bridge",
        )
        .at_field("MSH", 9);
        let a = segs(&ack_text(&h, AckCode::AR, Some(&e), "X", "T"));
        assert_eq!(a[1], vec!["MSA", "AR", "CTRL42"], "no MSA-3 from v2.5 on");
        let err = &a[2];
        assert_eq!(err[0], "ERR");
        assert_eq!(err[2], "MSH^1^9");
        assert_eq!(err[3], "200^Unsupported message type^HL70357");
        assert_eq!(err[4], "E");
        assert_eq!(err[8], "message type is not routed by this bridge");
    }

    #[test]
    fn v23_errors_use_msa3_text_and_err1() {
        let h = header(V23);
        let a = segs(&ack_text(&h, AckCode::AE, Some(&STORE_FAILED), "X", "T"));
        assert_eq!(a[0][8], "ACK^A01^ACK");
        assert_eq!(a[1][1], "AE");
        assert_eq!(a[1][2], "CTRL23");
        assert_eq!(a[1][3], STORE_FAILED.reason);
        assert_eq!(a[2][1], "^^^207&Application internal error&HL70357");
    }

    #[test]
    fn original_mode_codes() {
        let m = AckMode::of(&header(V251));
        assert_eq!(m, AckMode::Original);
        let r = Reject::new(ErrorCode::DataType, "x");
        assert_eq!(m.code(Disposition::Accepted), Some(AckCode::AA));
        assert_eq!(m.code(Disposition::Rejected(&r)), Some(AckCode::AR));
        assert_eq!(m.code(Disposition::Failed), Some(AckCode::AE));
    }

    #[test]
    fn enhanced_mode_follows_msh15() {
        let r = Reject::new(ErrorCode::DataType, "x");
        let with = |msh15: &str, msh16: &str| {
            let mut h = header(V251);
            h.accept_ack_type = msh15.into();
            h.application_ack_type = msh16.into();
            let m = AckMode::of(&h);
            [
                m.code(Disposition::Accepted),
                m.code(Disposition::Rejected(&r)),
                m.code(Disposition::Failed),
            ]
        };
        use AckCode::*;
        assert_eq!(with("AL", ""), [Some(CA), Some(CR), Some(CE)]);
        assert_eq!(with("NE", "AL"), [None, None, None]);
        assert_eq!(with("ER", ""), [None, Some(CR), Some(CE)]);
        assert_eq!(with("SU", ""), [Some(CA), None, None]);
        assert_eq!(
            with("", "AL"),
            [Some(CA), Some(CR), Some(CE)],
            "MSH-16 alone means enhanced mode"
        );
    }

    #[test]
    fn ack_uses_inbound_delimiters_and_escapes_text() {
        let h = header("MSH#*@!%#A#B#C#D#2026##ADT*A01#ID9#P#2.5\r");
        let e = Reject::new(ErrorCode::DataType, "a # b");
        let t = ack_text(&h, AckCode::AR, Some(&e), "X", "T");
        assert!(
            t.starts_with("MSH#*@!%#C#D#A#B#T##ACK*A01*ACK#X#P#2.5\r"),
            "{t}"
        );
        assert!(t.contains("MSA#AR#ID9\r"));
        assert!(t.contains("a !F! b"), "{t}");
    }

    #[test]
    fn hl7_now_matches_the_time_crate_formatter() {
        let fmt = time::macros::format_description!(
            "[year][month][day][hour][minute][second].[subsecond digits:3]+0000"
        );
        for unix_ms in [
            0_i64,
            1_795_000_000_123,
            1_795_000_000_007,
            253_402_300_799_999,
        ] {
            let t =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000).unwrap();
            assert_eq!(dtm_millis(t), t.format(fmt).unwrap());
        }
        assert_eq!(hl7_now().len(), "20261122215530.123+0000".len());
        let mut s = String::new();
        push_digits(&mut s, 0, 3);
        push_digits(&mut s, 42, 1);
        push_digits(&mut s, 123_456, 2);
        assert_eq!(s, "00042123456");
    }

    #[test]
    fn control_ids_are_unique_and_fit_msh10() {
        let ids = ControlIds::default();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert!(a.len() <= 20, "{a}");
    }
}
