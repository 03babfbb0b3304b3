//! The record key: which patient a message is about.
//!
//! Kafka keys decide partitions, and partitions decide per-patient order, so
//! the rule must be stable: pick the PID-3 repetition by identifier type
//! (CX-5) in a configured priority order, then `<authority>|<id>`.

use super::message::PatientIdentifier;

/// Default CX-5 priority: medical record number, then patient internal id.
pub fn default_priority() -> Vec<String> {
    vec!["MR".to_owned(), "PI".to_owned()]
}

/// The PID-3 repetition that identifies the patient: the first whose CX-5
/// comes earliest in `priority`, else the first. Used for the record key and
/// for FHIR `subject`, so the two always name the same identifier.
pub fn choose<'a>(
    ids: &'a [PatientIdentifier],
    priority: &[String],
) -> Option<&'a PatientIdentifier> {
    priority
        .iter()
        .find_map(|t| ids.iter().find(|cx| cx.type_code.eq_ignore_ascii_case(t)))
        .or_else(|| ids.first())
}

/// Chooses the identifier and builds the key. `None` when PID-3 is empty.
pub fn patient_key(ids: &[PatientIdentifier], priority: &[String]) -> Option<String> {
    let chosen = choose(ids, priority)?;
    let authority = if chosen.authority_namespace.is_empty() {
        &chosen.authority_universal_id
    } else {
        &chosen.authority_namespace
    };
    Some(if authority.is_empty() {
        chosen.id.clone()
    } else {
        format!("{authority}|{}", chosen.id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(id: &str, ns: &str, uid: &str, ty: &str) -> PatientIdentifier {
        PatientIdentifier {
            raw: String::new(),
            id: id.into(),
            authority_namespace: ns.into(),
            authority_universal_id: uid.into(),
            type_code: ty.into(),
        }
    }

    #[test]
    fn medical_record_number_wins_wherever_it_is() {
        let ids = [cx("P1", "H", "", "PI"), cx("M1", "H", "", "MR")];
        assert_eq!(
            patient_key(&ids, &default_priority()).as_deref(),
            Some("H|M1")
        );
    }

    #[test]
    fn patient_internal_id_when_no_mr() {
        let ids = [cx("S1", "SSA", "", "SS"), cx("P1", "H", "", "PI")];
        assert_eq!(
            patient_key(&ids, &default_priority()).as_deref(),
            Some("H|P1")
        );
    }

    #[test]
    fn first_repetition_when_no_preferred_type() {
        let ids = [cx("S1", "SSA", "", "SS"), cx("X", "H", "", "")];
        assert_eq!(
            patient_key(&ids, &default_priority()).as_deref(),
            Some("SSA|S1")
        );
    }

    #[test]
    fn universal_id_when_namespace_is_empty_and_bare_id_without_authority() {
        assert_eq!(
            patient_key(&[cx("M", "", "1.2.3", "MR")], &default_priority()).as_deref(),
            Some("1.2.3|M")
        );
        assert_eq!(
            patient_key(&[cx("M", "", "", "MR")], &default_priority()).as_deref(),
            Some("M")
        );
    }

    #[test]
    fn no_identifier_no_key() {
        assert_eq!(patient_key(&[], &default_priority()), None);
    }

    #[test]
    fn priority_is_configurable() {
        let ids = [cx("M1", "H", "", "MR"), cx("E1", "H", "", "PE")];
        assert_eq!(
            patient_key(&ids, &["PE".to_owned()]).as_deref(),
            Some("H|E1")
        );
    }
}
