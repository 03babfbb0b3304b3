//! From a received frame to records and an ACK plan.
//!
//! This is the pure middle of the spine: no I/O. The connection hands it a
//! frame, appends the records it returns to the log, and then asks it for the
//! ACK bytes, telling it whether the append was durable. Keeping the decision
//! "what to answer" here, separate from sockets and storage, is what lets the
//! ACK rules be tested against the spec directly.

use bytes::Bytes;
use time::OffsetDateTime;

use crate::headers;
use crate::hl7::ack::{ack_text, fallback_header, ControlIds, STORE_FAILED};
use crate::hl7::batch::{self, Batch};
use crate::hl7::message::{read, read_header_only, MessageHeader, ReadOptions};
use crate::hl7::patient_key::{default_priority, patient_key};
use crate::hl7::{AckCode, AckMode, Charset, Disposition, ErrorCode, Reject};
use crate::record::Record;

#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// Prefix of the raw topics: `hl7v2.` gives `hl7v2.adt`.
    pub topic_prefix: String,
    /// Message types accepted besides ADT, ORU and ORM (MSH-9.1, any case).
    pub accept_types: Vec<String>,
    /// CX-5 identifier types in order of preference for the patient key.
    pub patient_id_types: Vec<String>,
    pub read: ReadOptions,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            topic_prefix: "hl7v2.".into(),
            accept_types: Vec::new(),
            patient_id_types: default_priority(),
            read: ReadOptions::default(),
        }
    }
}

impl IntakeConfig {
    /// The intake settings of a bridge config.
    pub fn from_config(
        cfg: &crate::config::Config,
    ) -> Result<Self, crate::hl7::charset::CharsetError> {
        Ok(Self {
            topic_prefix: cfg.topic_prefix.clone(),
            accept_types: cfg.accept_types.clone(),
            patient_id_types: cfg.patient_id_types.clone(),
            read: ReadOptions {
                charset_fallback: Charset::fallback_from_config(&cfg.charset_fallback)?,
            },
        })
    }

    pub fn dlq_topic(&self) -> String {
        crate::topics::raw(&self.topic_prefix, crate::topics::DLQ)
    }
}

/// Who sent a frame and when.
#[derive(Debug, Clone)]
pub struct Origin {
    pub listener: String,
    pub peer: String,
    pub received_at: OffsetDateTime,
}

/// What the transport proved about a sender (a verified client certificate)
/// and which MSH-4 sending facilities it may send as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderPolicy {
    /// The certificate's subject: for logs and the `bridge.client_cert` header.
    pub identity: String,
    /// None: any facility.
    pub facilities: Option<FacilitySet>,
}

/// MSH-4 values a sender may use. A name matches MSH-4 as a whole or its
/// first component (HD-1, the namespace ID); `*` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FacilitySet {
    any: bool,
    names: std::collections::BTreeSet<String>,
}

impl FacilitySet {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        let mut set = Self::default();
        set.extend(names);
        set
    }

    pub fn extend<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, names: I) {
        for n in names {
            let n: String = n.into();
            if n.trim() == "*" {
                self.any = true;
            } else {
                self.names.insert(n.trim().to_owned());
            }
        }
    }

    /// True when no facility at all is allowed.
    pub fn is_empty(&self) -> bool {
        !self.any && self.names.is_empty()
    }

    /// Whether `msh4` (raw, with components separated by `component`) is allowed.
    pub fn allows(&self, msh4: &str, component: char) -> bool {
        if self.any {
            return true;
        }
        let whole = msh4.trim();
        let first = whole.split(component).next().unwrap_or("").trim();
        !whole.is_empty() && (self.names.contains(whole) || self.names.contains(first))
    }
}

/// The reject for a message whose MSH-4 the sender's certificate may not use.
fn facility_not_allowed() -> Reject {
    Reject::new(
        ErrorCode::TableValueNotFound,
        "sending facility (MSH-4) is not allowed for this client certificate",
    )
    .at_field("MSH", 4)
}

/// The verdict on one message and what its ACK needs.
#[derive(Debug, Clone)]
pub struct Item {
    pub header: Option<MessageHeader>,
    pub charset: Charset,
    pub verdict: Result<(), Reject>,
}

impl Item {
    /// The ACK code for this item, or None when MSH-15 asks for no ACK.
    pub fn ack_code(&self, stored: bool) -> Option<AckCode> {
        let mode = self
            .header
            .as_ref()
            .map(AckMode::of)
            .unwrap_or(AckMode::Original);
        mode.code(self.disposition(stored))
    }

    fn disposition(&self, stored: bool) -> Disposition<'_> {
        match (&self.verdict, stored) {
            (_, false) => Disposition::Failed,
            (Ok(()), true) => Disposition::Accepted,
            (Err(r), true) => Disposition::Rejected(r),
        }
    }

    pub fn control_id(&self) -> &str {
        self.header
            .as_ref()
            .map(|h| h.control_id.as_str())
            .unwrap_or("")
    }
}

/// Everything decided about a frame before storage.
#[derive(Debug)]
pub struct FrameWork {
    /// One record per message (to its topic, or to the dead-letter topic).
    pub records: Vec<Record>,
    pub items: Vec<Item>,
    /// The batch envelope, when the frame was an FHS/BHS batch.
    pub batch: Option<Batch>,
}

pub struct Intake {
    cfg: IntakeConfig,
    dlq_topic: String,
    ids: ControlIds,
}

impl Intake {
    pub fn new(cfg: IntakeConfig) -> Self {
        Self {
            dlq_topic: cfg.dlq_topic(),
            cfg,
            ids: ControlIds::default(),
        }
    }

    /// Decides what to store for a complete frame.
    pub fn frame(&self, frame: Bytes, origin: &Origin) -> FrameWork {
        self.frame_from(frame, origin, None)
    }

    /// Like [`Intake::frame`], for a sender identified by a client
    /// certificate: each message whose MSH-4 the policy does not allow is
    /// rejected (AR/CR, ERR 103 at MSH-4) and only dead-lettered, and every
    /// record carries the certificate subject.
    pub fn frame_from(
        &self,
        frame: Bytes,
        origin: &Origin,
        sender: Option<&SenderPolicy>,
    ) -> FrameWork {
        let mut work = if batch::is_batch(&frame) {
            let mut b = batch::split(&frame);
            let messages = std::mem::take(&mut b.messages);
            let (records, items) = messages
                .into_iter()
                .map(|m| self.message(m, origin, sender))
                .unzip();
            FrameWork {
                records,
                items,
                batch: Some(b),
            }
        } else {
            let (record, item) = self.message(frame, origin, sender);
            FrameWork {
                records: vec![record],
                items: vec![item],
                batch: None,
            }
        };
        if let Some(s) = sender {
            for r in &mut work.records {
                r.headers
                    .push((headers::CLIENT_CERT.into(), s.identity.clone()));
            }
        }
        work
    }

    /// Decides what to store for a frame that passed `max_message_bytes`:
    /// its head goes to the dead-letter topic, marked truncated.
    pub fn oversize(&self, head: Bytes, limit: usize, origin: &Origin) -> FrameWork {
        let header = read_header_only(&head, self.cfg.read);
        let reject = Reject::new(
            ErrorCode::ValueTooLong,
            "message exceeds the configured max_message_bytes",
        );
        let mut record = self.dead_letter(head, header.as_ref(), Charset::Ascii, &reject, origin);
        record.headers.push((
            headers::TRUNCATED.into(),
            format!("true; limit {limit} bytes"),
        ));
        FrameWork {
            records: vec![record],
            items: vec![Item {
                header,
                charset: Charset::Ascii,
                verdict: Err(reject),
            }],
            batch: None,
        }
    }

    fn message(
        &self,
        raw: Bytes,
        origin: &Origin,
        sender: Option<&SenderPolicy>,
    ) -> (Record, Item) {
        let parsed = match read(&raw, self.cfg.read) {
            Ok(p) => p,
            Err(reject) => {
                let header = read_header_only(&raw, self.cfg.read);
                return self.rejected(raw, header, Charset::Ascii, reject, origin);
            }
        };
        // Who may send as which facility is checked before anything else
        // about the message is looked at.
        let allowed = sender.and_then(|s| s.facilities.as_ref()).is_none_or(|f| {
            f.allows(
                &parsed.header.sending_facility,
                parsed.header.delimiters.component,
            )
        });
        if !allowed {
            let reject = facility_not_allowed();
            return self.rejected(raw, Some(parsed.header), parsed.charset, reject, origin);
        }
        let Some(topic) = self.route(&parsed.header.message_type) else {
            let reject = Reject::new(
                ErrorCode::UnsupportedMessageType,
                "message type is not accepted by this bridge",
            )
            .at_field("MSH", 9);
            return self.rejected(raw, Some(parsed.header), parsed.charset, reject, origin);
        };
        let key = patient_key(&parsed.patient_identifiers, &self.cfg.patient_id_types);
        let mut hs = record_headers(Some(&parsed.header), parsed.charset, origin);
        if key.is_none() {
            hs.push((headers::PATIENT_KEY_MISSING.into(), "true".into()));
        }
        let record = Record {
            topic,
            key,
            partition: None,
            headers: hs,
            timestamp_ms: (origin.received_at.unix_timestamp_nanos() / 1_000_000) as i64,
            value: raw,
        };
        (
            record,
            Item {
                header: Some(parsed.header),
                charset: parsed.charset,
                verdict: Ok(()),
            },
        )
    }

    /// MSH-9.1 to topic: ADT/ORU/ORM always, others only when configured.
    pub fn route(&self, message_type: &str) -> Option<String> {
        let t = message_type.trim().to_ascii_lowercase();
        let builtin = crate::topics::BUILTIN_TYPES.contains(&t.as_str());
        let configured = self
            .cfg
            .accept_types
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&t));
        // "dlq" is never a message type's topic, even if configured.
        (builtin || configured)
            .then_some(t)
            .filter(|t| {
                !t.is_empty()
                    && t != crate::topics::DLQ
                    && t.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .map(|t| crate::topics::raw(&self.cfg.topic_prefix, &t))
    }

    /// A message that will not be accepted: its dead-letter record, and the
    /// item that answers it with AR/CR.
    fn rejected(
        &self,
        raw: Bytes,
        header: Option<MessageHeader>,
        charset: Charset,
        reject: Reject,
        origin: &Origin,
    ) -> (Record, Item) {
        let record = self.dead_letter(raw, header.as_ref(), charset, &reject, origin);
        let item = Item {
            header,
            charset,
            verdict: Err(reject),
        };
        (record, item)
    }

    fn dead_letter(
        &self,
        raw: Bytes,
        header: Option<&MessageHeader>,
        charset: Charset,
        reject: &Reject,
        origin: &Origin,
    ) -> Record {
        let mut hs = record_headers(header, charset, origin);
        hs.push((headers::ERROR_CODE.into(), reject.code.code().to_string()));
        hs.push((headers::ERROR_REASON.into(), reject.reason.to_owned()));
        Record {
            topic: self.dlq_topic.clone(),
            key: None,
            partition: None,
            headers: hs,
            timestamp_ms: (origin.received_at.unix_timestamp_nanos() / 1_000_000) as i64,
            value: raw,
        }
    }

    /// The bytes to send back (unframed), or None when nothing is to be sent.
    /// `stored` says whether the records were durably appended.
    pub fn reply(&self, work: &FrameWork, stored: bool) -> Option<Vec<u8>> {
        let fallback = fallback_header();
        let mut acks = Vec::with_capacity(work.items.len());
        let mut charset = None;
        for item in &work.items {
            let Some(code) = item.ack_code(stored) else {
                continue;
            };
            let error = match (&item.verdict, stored) {
                (_, false) => Some(&STORE_FAILED),
                (Err(r), true) => Some(r),
                (Ok(()), true) => None,
            };
            let header = item.header.as_ref().unwrap_or(&fallback);
            charset.get_or_insert(item.charset);
            acks.push(ack_text(
                header,
                code,
                error,
                &self.ids.next(),
                &crate::hl7::ack::hl7_now(),
            ));
        }
        let charset = charset.unwrap_or(Charset::Ascii);
        match &work.batch {
            Some(b) => Some(charset.encode(&batch::reply_text(b, &acks, &self.ids))),
            None => acks.pop().map(|a| charset.encode(&a)),
        }
    }
}

/// The headers every record carries.
fn record_headers(
    h: Option<&MessageHeader>,
    charset: Charset,
    origin: &Origin,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(15);
    if let Some(h) = h {
        for (k, v) in [
            (headers::MESSAGE_TYPE, &h.message_type),
            (headers::TRIGGER_EVENT, &h.trigger_event),
            (headers::MESSAGE_STRUCTURE, &h.message_structure),
            (headers::CONTROL_ID, &h.control_id),
            (headers::VERSION, &h.version),
            (headers::PROCESSING_ID, &h.processing_id),
            (headers::SENDING_APPLICATION, &h.sending_application),
            (headers::SENDING_FACILITY, &h.sending_facility),
            (headers::RECEIVING_APPLICATION, &h.receiving_application),
            (headers::RECEIVING_FACILITY, &h.receiving_facility),
        ] {
            out.push((k.to_owned(), v.clone()));
        }
        out.push((headers::CHARSET.into(), charset.label().into()));
    }
    out.push((
        headers::RECEIVED_AT.into(),
        rfc3339_micros(origin.received_at),
    ));
    out.push((headers::LISTENER.into(), origin.listener.clone()));
    out.push((headers::PEER.into(), origin.peer.clone()));
    out
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-22T21:55:30.123456Z`.
pub fn rfc3339_micros(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
