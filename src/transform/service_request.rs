//! One ServiceRequest per ORC/OBR order group (IG `ORC[ServiceRequest]`,
//! `OBR[ServiceRequest]`, `TQ1[ServiceRequest]`, `NTE[ServiceRequest]`).

use std::borrow::Cow;

use super::codes::{self, lookup};
use super::datatypes::{
    code, codeable_concept, concept_of, datetime, first_part, identifier, is_null, practitioner_ref,
};
use super::demographics::{
    contact_point, cq_quantity, encounter_ref, entity_identifier, logical, note_text, v2_0203,
};
use super::fhir::{Extension, ExtensionValue, Identifier, Reference, ServiceRequest};
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
    let occurrence_timing = tq1
        .as_ref()
        .and_then(|tq1| super::timing::from_tq1(tq1, d, t))
        .map(Box::new);
    let occurrence_date_time = occurrence_timing
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
    let mut extension = Vec::new();
    // IG ORC-1 and ORC-9: the order control code and the event's time, each
    // a businessEvent extension.
    extension.extend(code(field(orc, 1), d).map(|c| {
        business_event(
            "value",
            ExtensionValue::CodeableConcept(concept_of(
                "http://terminology.hl7.org/CodeSystem/v2-0119",
                c,
                None,
            )),
        )
    }));
    extension.extend(
        datetime(first_part(field(orc, 9), d.component), tz)
            .map(|at| business_event("date", ExtensionValue::DateTime(at))),
    );
    // IG OBR-17, else ORC-14: the number to call back about the order. (The
    // IG puts OBR-17 in an extension of the requester that it gives no URL;
    // the bridge uses the R4 extension it names for ORC-14.)
    let callback = contact_point(field(obr, 17), d, tz, None)
        .or_else(|| contact_point(field(orc, 14), d, tz, None));
    extension.extend(callback.map(|cp| {
        Extension::new(
            "http://hl7.org/fhir/StructureDefinition/servicerequest-order-callback-phone-number",
            ExtensionValue::ContactPoint(cp),
        )
    }));
    // IG ORC-16, when ORC-5 gives no status: the reason for the order control.
    let no_order_status = field(orc, 5).trim().is_empty() || is_null(field(orc, 5));
    extension.extend(
        no_order_status
            .then(|| codeable_concept(field(orc, 16), d, t, None))
            .flatten()
            .map(|cc| {
                Extension::new(
                    "http://hl7.org/fhir/StructureDefinition/request-statusReason",
                    ExtensionValue::CodeableConcept(cc),
                )
            }),
    );
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
        extension,
        occurrence_timing,
    })
}

/// The IG's businessEvent extension with one part (`value` or `date`).
fn business_event<'a>(part: &'static str, value: ExtensionValue<'a>) -> Extension<'a> {
    Extension::new(
        "http://hl7.org/fhir/StructureDefinition/businessEvent",
        ExtensionValue::Nested(vec![Extension::new(part, value)]),
    )
}
