//! Sender duplicates: interface engines resend a message when an ACK is lost,
//! and the bridge stores both copies (it cannot know the first ACK was lost).
//! The stage emits a message only once per (sending facility, MSH-10, exact
//! bytes) within the dedup window. A resend with other bytes is a correction,
//! not a duplicate, and is emitted.

use sha2::{Digest, Sha256};

use super::Source;
use crate::intake::headers as h;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub sender: String,
    pub control_id: String,
    pub digest: [u8; 32],
}

/// The dedup key of an input record; `None` when it has no control ID
/// (nothing then identifies a resend).
pub fn key(src: &Source<'_>) -> Option<DedupKey> {
    let control_id = src.header(h::CONTROL_ID).filter(|c| !c.is_empty())?;
    Some(DedupKey {
        sender: src.header(h::SENDING_FACILITY).unwrap_or("").to_owned(),
        control_id: control_id.to_owned(),
        digest: Sha256::digest(src.value).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src<'a>(headers: &'a [(String, String)], value: &'a [u8]) -> Source<'a> {
        Source {
            topic: "hl7v2.adt",
            partition: 0,
            offset: 0,
            key: None,
            headers,
            value,
        }
    }

    fn hs(fac: &str, cid: &str) -> Vec<(String, String)> {
        vec![
            (h::SENDING_FACILITY.into(), fac.into()),
            (h::CONTROL_ID.into(), cid.into()),
        ]
    }

    #[test]
    fn same_sender_control_id_and_bytes_is_the_same_key() {
        let a = hs("F", "1");
        assert_eq!(key(&src(&a, b"x")), key(&src(&a, b"x")));
    }

    #[test]
    fn other_bytes_other_facility_or_other_control_id_is_another_key() {
        let a = hs("F", "1");
        assert_ne!(key(&src(&a, b"x")), key(&src(&a, b"y")));
        assert_ne!(key(&src(&a, b"x")), key(&src(&hs("G", "1"), b"x")));
        assert_ne!(key(&src(&a, b"x")), key(&src(&hs("F", "2"), b"x")));
    }

    #[test]
    fn no_control_id_means_no_dedup() {
        assert_eq!(key(&src(&hs("F", ""), b"x")), None);
        assert_eq!(key(&src(&[], b"x")), None);
    }
}
