//! Order groups (ORC/OBR with their TQ1, NTE, OBX and SPM) and what they
//! become: Specimens, DiagnosticReports (ORU) and ServiceRequests (ORM, and
//! ORU when `service_request_from_results` is set), all referring to each
//! other and to the group's Observations by literal reference.

use std::borrow::Cow;

use super::datatypes::{first_part, is_null};
use super::demographics::literal;
use super::fhir::{Reference, Resource};
use super::{diagnostic_report, resource_id, service_request, specimen, Context};
use crate::hl7::message::{MessageView, SegmentView};

/// One ORC/OBR order group and the segments that belong to it.
pub(super) struct OrderGroup<'a> {
    /// 1-based position in the message (what error reasons and fallback ids use).
    pub n: usize,
    pub orc: Option<SegmentView<'a>>,
    pub obr: Option<SegmentView<'a>>,
    pub tq1: Option<SegmentView<'a>>,
    /// NTE after OBR (or ORC) and before the first OBX: the order's notes.
    pub notes: Vec<SegmentView<'a>>,
    /// The ordinals (0-based, in message order) of the group's OBX.
    pub obx: Vec<usize>,
    pub spm: Vec<SegmentView<'a>>,
}

impl<'a> OrderGroup<'a> {
    /// Field `n` of OBR, else of ORC (the IG's "IF OBR-x NOT VALUED" pairs
    /// run both ways; OBR is the richer segment), first repetition.
    pub fn obr_or_orc(&self, obr_field: usize, orc_field: usize, rep: char) -> &'a str {
        let get = |s: &Option<SegmentView<'a>>, n: usize| {
            s.as_ref()
                .and_then(|s| s.field(n))
                .map(|f| first_part(f, rep))
                .filter(|v| !v.trim().is_empty() && !is_null(v))
        };
        get(&self.obr, obr_field)
            .or_else(|| get(&self.orc, orc_field))
            .unwrap_or("")
    }
}

/// Splits the message into order groups. An ORC always starts a group; an
/// OBR starts one unless it completes an ORC that has no OBR yet.
pub(super) fn groups<'a>(msg: &'a MessageView<'a>) -> Vec<OrderGroup<'a>> {
    let mut groups: Vec<OrderGroup<'a>> = Vec::new();
    let mut n_obx = 0;
    let mut in_results = false;
    for seg in msg.segments() {
        let open = |groups: &mut Vec<OrderGroup<'a>>| {
            let n = groups.len() + 1;
            groups.push(OrderGroup {
                n,
                orc: None,
                obr: None,
                tq1: None,
                notes: Vec::new(),
                obx: Vec::new(),
                spm: Vec::new(),
            });
        };
        match seg.name {
            "ORC" => {
                open(&mut groups);
                in_results = false;
                if let Some(g) = groups.last_mut() {
                    g.orc = Some(seg);
                }
            }
            "OBR" => {
                if !groups
                    .last()
                    .is_some_and(|g| g.obr.is_none() && g.obx.is_empty())
                {
                    open(&mut groups);
                }
                in_results = false;
                if let Some(g) = groups.last_mut() {
                    g.obr = Some(seg);
                }
            }
            "TQ1" => {
                if let Some(g) = groups.last_mut().filter(|g| g.tq1.is_none()) {
                    g.tq1 = Some(seg);
                }
            }
            "NTE" if !in_results => {
                if let Some(g) = groups.last_mut() {
                    g.notes.push(seg);
                }
            }
            "OBX" => {
                if let Some(g) = groups.last_mut() {
                    g.obx.push(n_obx);
                }
                n_obx += 1;
                in_results = true;
            }
            "SPM" => {
                if let Some(g) = groups.last_mut() {
                    g.spm.push(seg);
                }
                in_results = true;
            }
            "PID" | "PV1" => in_results = true,
            _ => {}
        }
    }
    groups
}

/// A deterministic id for a group's resource, keyed on `key` (an order or
/// specimen number) or, without one, on the message and the group's place.
pub(super) fn group_id(kind: &str, key: &str, ctx: &Context<'_>, n: usize, extra: &str) -> String {
    let facility = &ctx.header.sending_facility;
    if key.trim().is_empty() {
        resource_id(&[
            kind,
            facility,
            "message",
            &ctx.header.control_id,
            &n.to_string(),
            extra,
        ])
    } else {
        resource_id(&[kind, facility, key, extra])
    }
}

/// The encapsulated reports (OBX-5 ED/RP, mapped to the Observation's
/// `valueAttachment` extension) of a group's Observations: the report's
/// presented form, as the IG's OBX[Observation] ED row says.
fn presented_forms<'a>(
    g: &OrderGroup<'_>,
    observations: &[Option<usize>],
    out: &[Resource<'a>],
) -> Vec<super::fhir::Attachment<'a>> {
    g.obx
        .iter()
        .filter_map(|&k| observations.get(k).copied().flatten())
        .filter_map(|i| match out.get(i) {
            Some(Resource::Observation(o)) => Some(o),
            _ => None,
        })
        .flat_map(|o| o.extension.iter())
        .filter(|e| e.url == super::observation::VALUE_EXTENSION)
        .filter_map(|e| match &e.value {
            super::fhir::ExtensionValue::Attachment(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// Appends the Specimens, ServiceRequests and DiagnosticReports of the
/// message's order groups to `out`, where `observations` says where each
/// OBX's Observation is in `out` (none for a skipped OBX, which no other
/// resource then names); sets each Observation's specimen.
pub(super) fn map_all<'a>(
    msg: &'a MessageView<'a>,
    ctx: &'a Context<'a>,
    observations: &[Option<usize>],
    out: &mut Vec<Resource<'a>>,
) {
    let groups = groups(msg);
    let kind = ctx.header.message_type.to_ascii_uppercase();
    let results = kind == "ORU";
    let orders = kind == "ORM" || kind == "OML";
    let obs_ids: Vec<Option<String>> = observations
        .iter()
        .map(|at| at.and_then(|i| out.get(i)).map(|r| r.id().to_owned()))
        .collect();
    let mut specimens: Vec<super::fhir::Specimen<'a>> = Vec::new();
    let mut requests: Vec<super::fhir::ServiceRequest<'a>> = Vec::new();
    let mut reports: Vec<super::fhir::DiagnosticReport<'a>> = Vec::new();
    for g in &groups {
        let group_specimens = specimen::map_group(g, ctx);
        let specimen_refs: Vec<Reference<'a>> = group_specimens
            .iter()
            .map(|s| literal("Specimen", &s.id, s.accession_identifier.clone()))
            .collect();
        // An OBX that names its own specimen (OBX-33) keeps it; the others
        // take the group's first.
        if let Some(first) = specimen_refs.first() {
            for &k in &g.obx {
                let at = observations.get(k).copied().flatten();
                if let Some(Resource::Observation(o)) = at.and_then(|i| out.get_mut(i)) {
                    if o.specimen.is_none() {
                        o.specimen = Some(first.clone());
                    }
                }
            }
        }
        let results_of = |g: &OrderGroup<'_>| -> Vec<Reference<'a>> {
            g.obx
                .iter()
                .filter_map(|&k| obs_ids.get(k).and_then(Option::as_ref))
                .map(|id| literal("Observation", id, None))
                .collect()
        };
        let wants_request = orders || (results && ctx.tables.service_request_from_results);
        let request = wants_request
            .then(|| {
                let supporting = if orders { results_of(g) } else { Vec::new() };
                let mut sr = service_request::map(g, ctx, supporting, specimen_refs.clone())?;
                if requests.iter().any(|r| r.id == sr.id) {
                    sr.id = repeated(&sr.id, g.n);
                }
                Some(sr)
            })
            .flatten();
        if results {
            let based_on = request
                .as_ref()
                .map(|sr| (sr.id.clone(), sr.identifier.first().cloned()));
            if let Some(mut dr) =
                diagnostic_report::map(g, ctx, based_on, results_of(g), specimen_refs)
            {
                dr.presented_form = presented_forms(g, observations, out);
                if reports.iter().any(|r| r.id == dr.id) {
                    dr.id = repeated(&dr.id, g.n);
                }
                reports.push(dr);
            }
        }
        requests.extend(request);
        // The same specimen listed for two orders is one Specimen.
        for s in group_specimens {
            if !specimens.iter().any(|t| t.id == s.id) {
                specimens.push(s);
            }
        }
    }
    out.extend(specimens.into_iter().map(Resource::Specimen));
    out.extend(requests.into_iter().map(Resource::ServiceRequest));
    out.extend(reports.into_iter().map(Resource::DiagnosticReport));
}

/// Two orders of one message with the same number (a sender that repeats
/// it) would share an id, and downstream the second would overwrite the
/// first: a repeat gets its group's position mixed in, deterministically.
fn repeated(id: &str, n: usize) -> Cow<'static, str> {
    Cow::Owned(resource_id(&[id, &n.to_string()]))
}
