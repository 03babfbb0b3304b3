//! SPM to Specimen (IG `SPM[Specimen]`), and for an order group without SPM
//! (every message before v2.5, and a later sender that still fills only
//! OBR-15), OBR's specimen fields to Specimen (IG `OBR[Specimen]`).

use std::borrow::Cow;

use super::codes::{self, lookup};
use super::datatypes::{
    codeable_concept, datetime, first_part, identifier, parts, practitioner_ref, string,
};
use super::demographics::{cq_quantity, entity_identifier, logical, period};
use super::fhir::{Identifier, Specimen, SpecimenCollection, SpecimenContainer, TextOnly};
use super::orders::{group_id, OrderGroup};
use super::Context;
use crate::hl7::message::{Delimiters, SegmentView};

/// The group's Specimens: one per SPM; without SPM, one from OBR when
/// OBR-15 (specimen source) is valued. SPM replaces OBR-15 from v2.5 on,
/// but a v2.5 sender may still fill OBR-15 alone, and the IG's ORU_R01 map
/// takes a Specimen from OBR whatever the version.
pub(super) fn map_group<'a>(g: &OrderGroup<'a>, ctx: &'a Context<'a>) -> Vec<Specimen<'a>> {
    if !g.spm.is_empty() {
        return g
            .spm
            .iter()
            .enumerate()
            .map(|(i, spm)| from_spm(spm, g, i, ctx))
            .collect();
    }
    match &g.obr {
        Some(obr) => from_obr(obr, g, ctx).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Delimiters one level down: the components of a component (EIP's EI, NDL's CNN).
pub(super) fn sub(d: &Delimiters) -> Delimiters {
    let mut s = d.clone();
    s.component = d.subcomponent;
    s
}

/// EIP to its placer (PLAC) and filler (FILL) identifiers.
pub(super) fn eip<'a>(v: &'a str, d: &Delimiters, ctx: &Context<'_>) -> Vec<Identifier<'a>> {
    let p = parts(v, d.component);
    let sd = sub(d);
    [(p.get(0), "PLAC"), (p.get(1), "FILL")]
        .into_iter()
        .filter_map(|(ei, ty)| entity_identifier(ei, &sd, ctx.tables, Some(ty)))
        .collect()
}

fn from_spm<'a>(
    spm: &SegmentView<'a>,
    g: &OrderGroup<'a>,
    i: usize,
    ctx: &'a Context<'a>,
) -> Specimen<'a> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    let tz = t.default_timezone.as_str();
    let field = |n: usize| spm.field(n).unwrap_or("");
    let first = |n: usize| first_part(field(n), d.repetition);
    let reps = |n: usize| field(n).split(d.repetition);
    let mut ids: Vec<Identifier<'a>> = eip(first(2), d, ctx);
    ids.extend(reps(31).filter_map(|cx| identifier(cx, d, t)));
    ids.extend(reps(32).filter_map(|ei| entity_identifier(ei, d, t, Some("SHIP"))));
    let accession = identifier(first(30), d, t);
    // The specimen number the filler gave (else the placer's, else the accession).
    let key = ids
        .iter()
        .chain(accession.iter())
        .map(|i| i.value.as_ref())
        .next()
        .unwrap_or("")
        .to_owned();
    let dr = parts(first(17), d.component);
    let collected_period = (!dr.get(1).trim().is_empty())
        .then(|| period(dr.get(0), dr.get(1), d, tz))
        .flatten();
    let collection = SpecimenCollection {
        collector: None,
        collected_date_time: collected_period
            .is_none()
            .then(|| datetime(first_part(dr.get(0), d.subcomponent), tz))
            .flatten(),
        collected_period,
        quantity: cq_quantity(first(12), d),
        method: codeable_concept(first(7), d, t, Some("0488")),
        body_site: codeable_concept(first(8), d, t, Some("0163")),
    };
    let container = SpecimenContainer {
        type_: codeable_concept(first(27), d, t, None),
        additive_codeable_concept: codeable_concept(first(6), d, t, Some("0371")),
    };
    Specimen {
        resource_type: "Specimen",
        id: Cow::Owned(group_id("Specimen", &key, ctx, g.n, &i.to_string())),
        meta: &ctx.meta,
        identifier: ids,
        accession_identifier: accession,
        status: lookup(codes::SPECIMEN_AVAILABILITY, first(20)),
        type_: codeable_concept(first(4), d, t, Some("0487")),
        subject: ctx.subject.clone(),
        received_time: datetime(first_part(first(18), d.component), tz),
        parent: reps(3)
            .flat_map(|p| eip(p, d, ctx))
            .map(|id| logical("Specimen", id))
            .collect(),
        collection: (!collection.is_empty()).then_some(collection),
        container: (container.type_.is_some() || container.additive_codeable_concept.is_some())
            .then_some(container)
            .into_iter()
            .collect(),
        condition: reps(24)
            .filter_map(|c| codeable_concept(c, d, t, Some("0493")))
            .collect(),
        note: string(first(14), d)
            .map(|text| TextOnly { text })
            .into_iter()
            .collect(),
    }
}

/// IG `OBR[Specimen]` with `SPS[Specimen-Source]` for OBR-15.
fn from_obr<'a>(
    obr: &SegmentView<'a>,
    g: &OrderGroup<'a>,
    ctx: &'a Context<'a>,
) -> Option<Specimen<'a>> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    let tz = t.default_timezone.as_str();
    let first = |n: usize| first_part(obr.field(n).unwrap_or(""), d.repetition);
    let sps = parts(first(15), d.component);
    let sd = sub(d);
    let source = codeable_concept(sps.get(0), &sd, t, Some("0070"));
    let body_site = codeable_concept(sps.get(3), &sd, t, Some("0163"));
    let additive = codeable_concept(sps.get(1), &sd, t, Some("0371"));
    let free_text = string(sps.get(2), d);
    if source.is_none() && body_site.is_none() && additive.is_none() && free_text.is_none() {
        return None;
    }
    let accession = entity_identifier(first(2), d, t, None);
    let (start, end) = (first(7), first(8));
    let ended = !end.trim().is_empty();
    let collection = SpecimenCollection {
        collector: practitioner_ref(first(10), d, t),
        collected_date_time: (!ended)
            .then(|| datetime(first_part(start, d.component), tz))
            .flatten(),
        collected_period: ended.then(|| period(start, end, d, tz)).flatten(),
        quantity: cq_quantity(first(9), d),
        method: None,
        body_site,
    };
    let key = accession
        .as_ref()
        .map_or("", |a| a.value.as_ref())
        .to_owned();
    Some(Specimen {
        resource_type: "Specimen",
        id: Cow::Owned(group_id("Specimen", &key, ctx, g.n, "OBR")),
        meta: &ctx.meta,
        identifier: Vec::new(),
        accession_identifier: accession,
        status: None,
        type_: source,
        subject: ctx.subject.clone(),
        received_time: datetime(first_part(first(14), d.component), tz),
        parent: Vec::new(),
        collection: (!collection.is_empty()).then_some(collection),
        container: additive
            .map(|a| SpecimenContainer {
                type_: None,
                additive_codeable_concept: Some(a),
            })
            .into_iter()
            .collect(),
        condition: codeable_concept(sps.get(5), &sd, t, Some("0493"))
            .into_iter()
            .collect(),
        // SPS-3 free text, then OBR-39 the collector's comment (CWE[Annotation]:
        // the whole field as text).
        note: free_text
            .into_iter()
            .chain(string(first(39), d))
            .map(|text| TextOnly { text })
            .collect(),
    })
}
