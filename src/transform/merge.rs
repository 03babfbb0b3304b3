//! The message's Patients: one per PID, and for the ADT events that carry
//! MRG, the prior patient of each PID/MRG pair, linked both ways.
//!
//! Patient ids come from the patient key (`<authority>|<id>`, the record key
//! the bridge partitions by), so every message about a patient upserts the
//! same Patient, and a merge names the prior record by the id every earlier
//! message gave it.

use std::borrow::Cow;

use super::datatypes::identifier;
use super::demographics::{human_name, literal};
use super::fhir::{Identifier, Patient, PatientLink, Resource};
use super::{patient, resource_id, Context};
use crate::hl7::message::{patient_identifiers, MessageView, PatientIdentifier, SegmentView};
use crate::hl7::patient_key::patient_key;

/// Events whose MRG names a prior patient identity that the PID's patient
/// replaces: the merges (A18, A30, A34, A35, A36, A39, A40, A41, A42),
/// A44 (move account to another patient: the prior identity is merged too
/// when its key differs) and the identifier changes A46 and A47 (v2.3.1
/// retains A46 as the older form of A47: the old identifier is a retired
/// record of the same person). Moves that keep both identities (A43, A45)
/// and account/visit renumbering (A49, A50, A51) are not merges.
pub(super) const MERGE_EVENTS: &[&str] = &[
    "A18", "A30", "A34", "A35", "A36", "A39", "A40", "A41", "A42", "A44", "A46", "A47",
];

/// The Patient id for a patient identified by `ids` (PID-3 or MRG-1), or by
/// `fallback` (the message and the segment's position) when it has none.
pub(super) fn patient_id(
    ids: &[PatientIdentifier],
    priority: &[String],
    fallback: &[&str],
) -> String {
    match patient_key(ids, priority) {
        Some(key) => resource_id(&["Patient", &key]),
        None => {
            let mut parts = vec!["Patient", "message"];
            parts.extend_from_slice(fallback);
            resource_id(&parts)
        }
    }
}

/// Appends the message's Patients to `out`. The first PID's Patient has
/// `first_id` (the id the subject references already use).
pub(super) fn map_all<'a>(
    msg: &'a MessageView<'a>,
    ctx: &'a Context<'a>,
    priority: &[String],
    first_id: &str,
    out: &mut Vec<Resource<'a>>,
) {
    let d = &ctx.header.delimiters;
    let segs: Vec<SegmentView<'a>> = msg.segments().collect();
    let merging = MERGE_EVENTS.contains(&ctx.header.trigger_event.to_ascii_uppercase().as_str());
    let mut patients: Vec<Patient<'a>> = Vec::new();
    let starts: Vec<usize> = (0..segs.len()).filter(|&i| segs[i].name == "PID").collect();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(segs.len());
        let group = &segs[start + 1..end];
        let find = |name: &str| group.iter().find(|s| s.name == name);
        let pid = &segs[start];
        let id = if k == 0 {
            first_id.to_owned()
        } else {
            let ids = patient_identifiers(pid.field(3).unwrap_or(""), d);
            let n = k.to_string();
            patient_id(
                &ids,
                priority,
                &[&ctx.header.sending_facility, &ctx.header.control_id, &n],
            )
        };
        let survivor = patient::map(pid, find("PD1"), find("PV1"), id, ctx);
        let prior = find("MRG")
            .filter(|_| merging)
            .and_then(|mrg| prior_patient(mrg, priority, ctx))
            .filter(|p| p.id != survivor.id);
        match prior {
            Some(mut prior) => {
                let mut survivor = survivor;
                survivor.link.push(PatientLink {
                    other: literal("Patient", &prior.id, prior.identifier.first().cloned()),
                    type_: "replaces",
                });
                prior.link.push(PatientLink {
                    other: literal(
                        "Patient",
                        &survivor.id,
                        survivor.identifier.first().cloned(),
                    ),
                    type_: "replaced-by",
                });
                add(&mut patients, survivor);
                add(&mut patients, prior);
            }
            None => add(&mut patients, survivor),
        }
    }
    out.extend(patients.into_iter().map(Resource::Patient));
}

/// One Patient per id: a patient named twice (the survivor of two merges)
/// is one record carrying every link.
fn add<'a>(patients: &mut Vec<Patient<'a>>, p: Patient<'a>) {
    match patients.iter_mut().find(|q| q.id == p.id) {
        Some(q) => {
            q.link.extend(p.link);
            if p.active == Some(false) {
                q.active = Some(false);
            }
        }
        None => patients.push(p),
    }
}

/// The prior patient of a merge: MRG-1 (and MRG-4) identifiers, MRG-7 name,
/// inactive. `None` when MRG-1 has no identifier to key it by.
fn prior_patient<'a>(
    mrg: &SegmentView<'a>,
    priority: &[String],
    ctx: &'a Context<'a>,
) -> Option<Patient<'a>> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    let mrg1 = mrg.field(1).unwrap_or("");
    let ids = patient_identifiers(mrg1, d);
    if ids.is_empty() {
        tracing::warn!(
            field = "MRG-1",
            "no prior patient identifier: merge not linked"
        );
        return None;
    }
    let reps = |n: usize| mrg.field(n).unwrap_or("").split(d.repetition);
    let identifier: Vec<Identifier<'a>> = [1, 4]
        .into_iter()
        .flat_map(|n| reps(n).filter_map(|cx| identifier(cx, d, t)))
        .collect();
    let name = reps(7)
        .filter_map(|x| human_name(x, d, &t.default_timezone))
        .collect();
    Some(Patient {
        resource_type: "Patient",
        id: Cow::Owned(patient_id(&ids, priority, &[])),
        meta: &ctx.meta,
        extension: Vec::new(),
        identifier,
        active: Some(false),
        name,
        telecom: Vec::new(),
        gender: None,
        birth_date: None,
        birth_date_ext: None,
        deceased_boolean: None,
        deceased_date_time: None,
        address: Vec::new(),
        marital_status: None,
        multiple_birth_boolean: None,
        multiple_birth_integer: None,
        communication: Vec::new(),
        general_practitioner: Vec::new(),
        link: Vec::new(),
    })
}
