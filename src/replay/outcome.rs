//! How one message ended, and why, in words fit for a summary: control IDs,
//! ACK codes and HL7 table 0357 error codes, never message content.

use std::time::Duration;

/// Why a message was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The connection could not be opened (refused, unreachable, TLS).
    Connect(String),
    /// The connection closed or broke before the ACK came.
    Closed,
    /// No ACK within the time-out.
    Timeout(Duration),
    /// The run was interrupted (SIGINT/SIGTERM) before the ACK came.
    Interrupted,
}

impl Reason {
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Connect(_) => "unsent",
            Reason::Closed => "closed",
            Reason::Timeout(_) => "timeout",
            Reason::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Connect(e) => f.write_str(e),
            Reason::Closed => f.write_str("connection closed before the ACK"),
            Reason::Timeout(t) => write!(f, "no ACK within {}", humantime::format_duration(*t)),
            Reason::Interrupted => f.write_str("interrupted before the ACK"),
        }
    }
}

/// How one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// MSA-1 as received (AA, AE, AR, CA, CE, CR), with the ERR code for a
    /// negative one.
    Ack { code: String, error: Option<String> },
    /// MSA-2 was not the MSH-10 sent.
    Mismatch { got: String },
    /// Enhanced mode with MSH-15 NE (never), or ER (on errors only) and no
    /// error came back: chapter 2 says no accept ACK comes, so none is
    /// waited for.
    NoAckExpected,
    /// Never acknowledged, after every attempt.
    Failed(Reason),
}

impl Outcome {
    /// The summary column.
    pub fn label(&self) -> &str {
        match self {
            Outcome::Ack { code, .. } => code,
            Outcome::Mismatch { .. } => "mismatch",
            Outcome::NoAckExpected => "no-ack",
            Outcome::Failed(r) => r.label(),
        }
    }

    /// Accepted, or sent where the sender asked for no accept ACK.
    pub fn accepted(&self) -> bool {
        match self {
            Outcome::Ack { code, .. } => code == "AA" || code == "CA",
            Outcome::NoAckExpected => true,
            Outcome::Mismatch { .. } | Outcome::Failed(_) => false,
        }
    }

    /// AE/CE: the receiver could not take it now (engines resend these).
    pub fn is_error_ack(&self) -> bool {
        matches!(self, Outcome::Ack { code, .. } if code == "AE" || code == "CE")
    }

    /// What went wrong, for the list of failed messages.
    pub fn reason(&self) -> String {
        match self {
            Outcome::Ack { code, error } => match error {
                Some(e) => format!("{code}: {e}"),
                None => code.clone(),
            },
            Outcome::Mismatch { got } => format!("ACK for another message (MSA-2 {got:?})"),
            Outcome::NoAckExpected => "no ACK expected".into(),
            Outcome::Failed(r) => r.to_string(),
        }
    }
}

/// MSA-1, MSA-2 and the error code of an ACK (the first MSA and ERR, for a
/// batch reply).
pub fn read_ack(ack: &[u8]) -> Option<(String, String, Option<String>)> {
    let text = String::from_utf8_lossy(ack);
    let fs = text.chars().nth(3)?;
    let cs = text.chars().nth(4).unwrap_or('^');
    let ss = text.chars().nth(7).unwrap_or('&');
    let segment = |name: &str| {
        text.split(['\r', '\n'])
            .find(|l| l.starts_with(name))
            .map(|l| l.split(fs).map(str::to_owned).collect::<Vec<_>>())
    };
    let msa = segment("MSA")?;
    let code = msa.get(1)?.trim().to_owned();
    let id = msa.get(2).map(|s| s.trim().to_owned()).unwrap_or_default();
    let error = segment("ERR").and_then(|err| err_code(&err, cs, ss));
    Some((code, id, error))
}

/// The HL7 error code (table 0357) and where it applies: ERR-3 and ERR-2
/// from v2.5, ERR-1's fourth component before. Only the code and its table
/// text are shown; ERR-7/8 and MSA-3 are free text that may quote the
/// message, so they stay out of the summary.
fn err_code(err: &[String], cs: char, ss: char) -> Option<String> {
    let (code, location) = match err.get(3).filter(|f| !f.is_empty()) {
        Some(erl3) => (
            erl3.split(cs).next().unwrap_or("").to_owned(),
            err.get(2).cloned().unwrap_or_default(),
        ),
        None => {
            let eld: Vec<&str> = err.get(1)?.split(cs).collect();
            (
                eld.get(3)?.split(ss).next().unwrap_or("").to_owned(),
                eld.iter().take(3).copied().collect::<Vec<_>>().join("^"),
            )
        }
    };
    let code = code.trim();
    if code.is_empty() {
        return None;
    }
    let mut out = format!("ERR code {code}");
    if let Some(text) = table_0357(code) {
        out.push_str(&format!(" ({text})"));
    }
    let location = location.trim_matches(|c| c == cs || c == ' ');
    if !location.is_empty()
        && location.len() <= 32
        && location
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == cs)
    {
        out.push_str(&format!(" at {location}"));
    }
    Some(out)
}

/// HL7 table 0357, message error condition codes.
fn table_0357(code: &str) -> Option<&'static str> {
    Some(match code {
        "0" => "message accepted",
        "100" => "segment sequence error",
        "101" => "required field missing",
        "102" => "data type error",
        "103" => "table value not found",
        "104" => "value too long",
        "200" => "unsupported message type",
        "201" => "unsupported event code",
        "202" => "unsupported processing id",
        "203" => "unsupported version id",
        "204" => "unknown key identifier",
        "205" => "duplicate key identifier",
        "206" => "application record locked",
        "207" => "application internal error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ack_code_id_and_err_code_are_read_and_free_text_is_not() {
        assert_eq!(
            read_ack(b"MSH|^~\\&|x\rMSA|AE|C1|Smith is not a code\rERR||PID^1^3|101^Required field missing^HL70357|E||||John Smith\r"),
            Some((
                "AE".into(),
                "C1".into(),
                Some("ERR code 101 (required field missing) at PID^1^3".into())
            ))
        );
        assert_eq!(
            read_ack(b"MSH|^~\\&|x\rMSA|AR|C2|text\rERR|MSH^1^9^200&Unsupported&HL70357\r"),
            Some((
                "AR".into(),
                "C2".into(),
                Some("ERR code 200 (unsupported message type) at MSH^1^9".into())
            ))
        );
        assert_eq!(
            read_ack(b"MSH|^~\\&|x\rMSA|AA|C3\r"),
            Some(("AA".into(), "C3".into(), None))
        );
        assert_eq!(read_ack(b"garbage"), None);
    }
}
