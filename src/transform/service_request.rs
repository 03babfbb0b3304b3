//! One ServiceRequest per ORC/OBR order group (IG `ORC[ServiceRequest]`,
//! `OBR[ServiceRequest]`, `TQ1[ServiceRequest]`, `NTE[ServiceRequest]`).

use std::borrow::Cow;

use super::codes::{self, lookup};
use super::datatypes::{codeable_concept, datetime, first_part, identifier, practitioner_ref};
use super::demographics::{
    cq_quantity, encounter_ref, entity_identifier, logical, note_text, period, v2_0203,
};
use super::fhir::{Identifier, Reference, ServiceRequest};
use super::orders::{group_id, OrderGroup};
use super::specimen::eip;
use super::Context;

pub(super) fn map<'a>(
    g: &OrderGroup<'a>,
    ctx: &'a Context<'a>,
    supporting_info: Vec<Reference<'a>>,
    specimen: Vec<Reference<'a>>,
) -> Option<ServiceRequest<'a>> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    let tz = t.default_timezone.as_str();
    let rep = d.repetition;
    let field = |s: &Option<crate::hl7::message::SegmentView<'a>>, n: usize| {
        s.as_ref()
            .and_then(|s| s.field(n))
            .map_or("", |f| first_part(f, rep))
    };
    let reps = |s: &Option<crate::hl7::message::SegmentView<'a>>, n: usize| {
        s.as_ref().and_then(|s| s.field(n)).unwrap_or("").split(rep)
    };
    let (orc, obr, tq1) = (&g.orc, &g.obr, &g.tq1);

    let placer = entity_identifier(g.obr_or_orc(2, 2, rep), d, t, Some("PLAC"));
    let filler = entity_identifier(g.obr_or_orc(3, 3, rep), d, t, Some("FILL"));
    let key = placer
        .as_ref()
        .or(filler.as_ref())
        .map_or("", |i| i.value.as_ref())
        .to_owned();
    let mut ids: Vec<Identifier<'a>> = placer.into_iter().chain(filler).collect();
    // ORC-33 / OBR-53 alternate placer order number (CX), type PLAC.
    ids.extend(identifier(g.obr_or_orc(53, 33, rep), d, t).map(|mut i| {
        i.type_ = Some(v2_0203("PLAC"));
        i
    }));
    ids.extend(entity_identifier(field(orc, 38), d, t, Some("FGN")));
    let requisition = entity_identifier(
        first_part(field(orc, 4), d.component),
        &super::specimen::sub(d),
        t,
        Some("PGN"),
    );

    let order_control = field(orc, 1).trim().to_ascii_uppercase();
    let status = lookup(codes::ORDER_STATUS, field(orc, 5))
        .or_else(|| lookup(codes::ORDER_CONTROL_STATUS, &order_control))
        .unwrap_or("unknown");
    // IG OBR-11: G (generated) is a reflex order; A (add-on) has no intent of its own.
    let intent = if field(obr, 11).trim().eq_ignore_ascii_case("G") {
        "reflex-order"
    } else {
        "order"
    };
    let priority = lookup(codes::PRIORITY, first_part(field(tq1, 9), d.component))
        .or_else(|| lookup(codes::PRIORITY, field(obr, 5)));
    let occurrence_period = period(field(tq1, 7), field(tq1, 8), d, tz);
    let occurrence_date_time = occurrence_period
        .is_none()
        .then(|| datetime(first_part(field(obr, 6), d.component), tz))
        .flatten();
    // IG ORC-9: the order's authoring time only on a new order.
    let authored_on = (order_control == "NW")
        .then(|| datetime(first_part(field(orc, 9), d.component), tz))
        .flatten();
    let requester =
        practitioner_ref(field(orc, 12), d, t).or_else(|| practitioner_ref(field(obr, 16), d, t));
    let note = g
        .notes
        .iter()
        .filter_map(|nte| note_text(nte.field(3).unwrap_or(""), d))
        .chain(note_text(field(tq1, 11), d))
        .collect();
    let based_on = reps(obr, 29)
        .flat_map(|p| eip(p, d, ctx))
        .map(|id| logical("ServiceRequest", id))
        .collect();
    Some(ServiceRequest {
        resource_type: "ServiceRequest",
        id: Cow::Owned(group_id("ServiceRequest", &key, ctx, g.n, "")),
        meta: &ctx.meta,
        identifier: ids,
        based_on,
        requisition,
        status,
        intent,
        priority,
        code: codeable_concept(field(obr, 4), d, t, None),
        order_detail: [46, 47]
            .into_iter()
            .flat_map(|n| reps(obr, n).filter_map(|c| codeable_concept(c, d, t, None)))
            .collect(),
        quantity_quantity: cq_quantity(field(tq1, 2), d),
        // The IG maps an order without a patient to a SupplyRequest, which
        // the bridge does not emit.
        subject: ctx.subject.clone()?,
        encounter: encounter_ref(ctx),
        occurrence_date_time,
        occurrence_period,
        authored_on,
        requester,
        location_code: reps(orc, 29)
            .filter_map(|c| codeable_concept(c, d, t, Some("0482")))
            .collect(),
        reason_code: reps(obr, 31)
            .filter_map(|c| codeable_concept(c, d, t, None))
            .collect(),
        supporting_info,
        specimen,
        note,
    })
}
