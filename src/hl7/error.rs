//! Why a message was not accepted, in HL7 table 0357 terms.
//!
//! Reasons are fixed phrases about structure, never message content: they go
//! into ERR segments sent to peers, into logs and into dead-letter headers.

/// HL7 table 0357, Message error condition codes (the ones the bridge uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    ValueTooLong,
    /// 103: a coded value is not in its table. Used for an MSH-4 sending
    /// facility (HD-1, table 0362) that the sender's client certificate may
    /// not send as.
    TableValueNotFound,
    UnsupportedMessageType,
    ApplicationInternal,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::SegmentSequence => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataType => 102,
            ErrorCode::ValueTooLong => 104,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::ApplicationInternal => 207,
        }
    }

    /// The table 0357 display name, used as ERR-3.2 / ERR-1.4.2.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::ValueTooLong => "Value too long",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::ApplicationInternal => "Application internal error",
        }
    }
}

/// A reason to answer AR/CR (or AE/CE for internal errors), free of PHI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {reason}", .code.code(), .code.name())]
pub struct Reject {
    pub code: ErrorCode,
    pub reason: &'static str,
    /// 1-based line of the offending segment, when known.
    pub segment_line: Option<usize>,
    /// Segment ID and field number, when known (ERR-2).
    pub field: Option<(&'static str, u16)>,
}

impl Reject {
    pub fn new(code: ErrorCode, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            segment_line: None,
            field: None,
        }
    }

    pub fn at_segment(mut self, line: usize) -> Self {
        self.segment_line = Some(line);
        self
    }

    pub fn at_field(mut self, segment: &'static str, field: u16) -> Self {
        self.field = Some((segment, field));
        self.segment_line.get_or_insert(1);
        self
    }
}
