//! Which resource each segment of a message became, without assuming that
//! the n-th segment is the n-th resource: segments are grouped as the v2
//! message structures group them (a PID with its PD1 and PV1; an ORC/OBR
//! order with its TQ1, NTE, OBX and SPM), and a group is matched to the
//! resource that carries its numbers (patient identifier, placer and
//! filler order numbers, specimen ids). Only what has no number falls back
//! to its position among the resources of its type.

use serde_json::Value;

use super::message::{Message, Scope, Segment};

/// One segment whose rows apply to one resource.
pub struct Unit<'m, 'r> {
    /// The segment map's key: the segment's name and the resource type.
    pub segment: &'static str,
    pub resource_type: &'static str,
    pub scope: Scope<'m>,
    /// `None`: the IG says the segment yields a resource the bridge did
    /// not emit; every valued row of it is then missing.
    pub resource: Option<&'r Value>,
    /// `OBR 2` (1-based among the message's segments of that name).
    pub label: String,
}

/// The units of one mapped message. `skipped_obx` are the 1-based
/// positions of the OBX the mapper reported as skipped (a partial outcome):
/// by design they yield nothing, so they are not units.
pub fn units<'m, 'r>(
    msg: &'m Message,
    resources: &'r [Value],
    skipped_obx: &[usize],
) -> Vec<Unit<'m, 'r>> {
    let segs: Vec<Segment<'m>> = msg.all().collect();
    let msh: Vec<Segment<'m>> = segs.iter().filter(|s| s.name() == "MSH").copied().collect();
    let of_type = |rt: &str| -> Vec<&'r Value> {
        resources
            .iter()
            .filter(|r| r["resourceType"] == rt)
            .collect()
    };
    let ordinal = |seg: &Segment<'m>| {
        let at = segs
            .iter()
            .position(|s| std::ptr::eq(s.fields_ptr(), seg.fields_ptr()))
            .unwrap();
        segs[..=at]
            .iter()
            .filter(|s| s.name() == seg.name())
            .count()
    };
    let unit = |segment: &'static str,
                resource_type: &'static str,
                this: Segment<'m>,
                others: Vec<Segment<'m>>,
                resource: Option<&'r Value>| {
        let mut others = others;
        others.extend(msh.iter().copied());
        Unit {
            segment,
            resource_type,
            label: format!("{segment} {}", ordinal(&this)),
            scope: Scope { this, others },
            resource,
        }
    };
    let mut out = Vec::new();
    let message_type = msh
        .first()
        .map(|m| m.first("MSH-9.1").to_ascii_uppercase())
        .unwrap_or_default();

    // Encounter: the message's first PV1 and PV2 (one Encounter a message).
    let encounter = of_type("Encounter").first().copied();
    let pv1 = segs.iter().find(|s| s.name() == "PV1").copied();
    let pv2 = segs.iter().find(|s| s.name() == "PV2").copied();
    if let Some(pv1) = pv1 {
        out.push(unit(
            "PV1",
            "Encounter",
            pv1,
            pv2.into_iter().collect(),
            encounter,
        ));
    }
    if let Some(pv2) = pv2 {
        out.push(unit(
            "PV2",
            "Encounter",
            pv2,
            pv1.into_iter().collect(),
            encounter,
        ));
    }

    // Observation: OBX in order, less the ones the mapper skipped.
    let observations = of_type("Observation");
    let mut emitted = 0;
    for (k, obx) in segs.iter().filter(|s| s.name() == "OBX").enumerate() {
        if skipped_obx.contains(&(k + 1)) {
            continue;
        }
        out.push(unit(
            "OBX",
            "Observation",
            *obx,
            Vec::new(),
            observations.get(emitted).copied(),
        ));
        emitted += 1;
    }

    // Patient: each PID with the PD1 and PV1 of its patient group, matched
    // by a PID-3 identifier among the Patients that are not a merge's
    // prior (inactive) record.
    let survivors: Vec<&Value> = of_type("Patient")
        .into_iter()
        .filter(|p| p["active"] != false)
        .collect();
    let starts: Vec<usize> = (0..segs.len())
        .filter(|&i| segs[i].name() == "PID")
        .collect();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(segs.len());
        let pid = segs[start];
        let group: Vec<Segment<'m>> = segs[start + 1..end]
            .iter()
            .filter(|s| matches!(s.name(), "PD1" | "PV1"))
            .copied()
            .collect();
        let pd1 = group.iter().find(|s| s.name() == "PD1").copied();
        let pv1 = group.iter().find(|s| s.name() == "PV1").copied();
        let keys = pid.component_values("PID-3", 1);
        let patient = find(&survivors, &keys).or_else(|| survivors.get(k).copied());
        out.push(unit("PID", "Patient", pid, group.clone(), patient));
        if let Some(pd1) = pd1 {
            out.push(unit("PD1", "Patient", pd1, vec![pid], patient));
        }
        if let Some(pv1) = pv1 {
            out.push(unit("PV1", "Patient", pv1, vec![pid], patient));
        }
    }

    // Orders.
    let results = message_type == "ORU";
    let orders = matches!(message_type.as_str(), "ORM" | "OML");
    let reports = of_type("DiagnosticReport");
    let requests = of_type("ServiceRequest");
    let specimens = of_type("Specimen");
    let (mut n_reports, mut n_requests, mut n_specimens) = (0, 0, 0);
    for g in order_groups(&segs) {
        let members: Vec<Segment<'m>> = g.orc.iter().chain(&g.obr).chain(&g.tq1).copied().collect();
        let others = |this: &Segment<'m>| -> Vec<Segment<'m>> {
            members
                .iter()
                .filter(|s| s.name() != this.name())
                .copied()
                .collect()
        };
        let mut keys = Vec::new();
        for s in &members {
            for f in [2, 3] {
                if matches!(s.name(), "ORC" | "OBR") {
                    keys.extend(s.component_values(&format!("{}-{f}", s.name()), 1));
                }
            }
        }
        if results && g.obr.is_some() {
            let report = find(&reports, &keys).or_else(|| reports.get(n_reports).copied());
            n_reports += 1;
            for s in g.orc.iter().chain(&g.obr) {
                let seg = if s.name() == "ORC" { "ORC" } else { "OBR" };
                out.push(unit(seg, "DiagnosticReport", *s, others(s), report));
            }
        }
        if orders {
            let request = find(&requests, &keys).or_else(|| requests.get(n_requests).copied());
            n_requests += 1;
            for s in &members {
                let seg = match s.name() {
                    "ORC" => "ORC",
                    "OBR" => "OBR",
                    _ => "TQ1",
                };
                out.push(unit(seg, "ServiceRequest", *s, others(s), request));
            }
            for nte in &g.notes {
                out.push(unit(
                    "NTE",
                    "ServiceRequest",
                    *nte,
                    members.clone(),
                    request,
                ));
            }
        }
        for spm in &g.spm {
            let mut keys = spm.component_values("SPM-2", 1);
            keys.extend(spm.component_values("SPM-2", 2));
            keys.extend(spm.component_values("SPM-30", 1));
            let specimen = find(&specimens, &keys).or_else(|| specimens.get(n_specimens).copied());
            n_specimens += 1;
            out.push(unit("SPM", "Specimen", *spm, members.clone(), specimen));
        }
        // Before v2.5 the specimen travels in OBR (OBR-15 and its kin); from
        // v2.5 on SPM carries it and OBR-15 is kept only for compatibility.
        if let Some(obr) = g.obr.filter(|o| g.spm.is_empty() && o.valued("OBR-15")) {
            let keys = obr.component_values("OBR-2", 1);
            let specimen = find(&specimens, &keys).or_else(|| specimens.get(n_specimens).copied());
            n_specimens += 1;
            out.push(unit("OBR", "Specimen", obr, others(&obr), specimen));
        }
    }
    out
}

/// The resource of a type that carries one of `keys` as an identifier
/// (or accession identifier) value.
fn find<'r>(candidates: &[&'r Value], keys: &[String]) -> Option<&'r Value> {
    candidates.iter().copied().find(|r| {
        let ids = r["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&r["accessionIdentifier"]));
        ids.filter_map(|i| i["value"].as_str())
            .any(|v| keys.iter().any(|k| k == v))
    })
}

/// One ORC/OBR order group with the segments that belong to it.
pub struct OrderGroup<'m> {
    pub orc: Option<Segment<'m>>,
    pub obr: Option<Segment<'m>>,
    pub tq1: Option<Segment<'m>>,
    /// NTE after ORC/OBR and before the first OBX or SPM: the order's notes.
    pub notes: Vec<Segment<'m>>,
    pub spm: Vec<Segment<'m>>,
}

/// The v2 order structure: an ORC starts a group; an OBR starts one unless
/// it completes an ORC that has no OBR yet; TQ1, NTE (before any result),
/// OBX and SPM belong to the current group.
pub fn order_groups<'m>(segs: &[Segment<'m>]) -> Vec<OrderGroup<'m>> {
    let mut groups: Vec<OrderGroup<'m>> = Vec::new();
    let mut in_results = false;
    let mut has_results = false;
    for s in segs {
        let new = || OrderGroup {
            orc: None,
            obr: None,
            tq1: None,
            notes: Vec::new(),
            spm: Vec::new(),
        };
        match s.name() {
            "ORC" => {
                groups.push(OrderGroup {
                    orc: Some(*s),
                    ..new()
                });
                in_results = false;
                has_results = false;
            }
            "OBR" => {
                let completes = groups
                    .last()
                    .is_some_and(|g| g.obr.is_none() && !has_results);
                if !completes {
                    groups.push(new());
                }
                groups.last_mut().unwrap().obr = Some(*s);
                in_results = false;
                has_results = false;
            }
            "TQ1" => {
                if let Some(g) = groups.last_mut().filter(|g| g.tq1.is_none()) {
                    g.tq1 = Some(*s);
                }
            }
            "NTE" if !in_results => {
                if let Some(g) = groups.last_mut() {
                    g.notes.push(*s);
                }
            }
            "OBX" => {
                in_results = true;
                has_results = true;
            }
            "SPM" => {
                if let Some(g) = groups.last_mut() {
                    g.spm.push(*s);
                }
                in_results = true;
            }
            "PID" | "PV1" => in_results = true,
            _ => {}
        }
    }
    groups
}
