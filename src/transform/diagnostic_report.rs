//! One DiagnosticReport per OBR of an ORU (IG `OBR[DiagnosticReport]` and
//! `ORC[DiagnosticReport]`).

use std::borrow::Cow;

use super::codes::{self, lookup};
use super::datatypes::{codeable_concept, concept_of, datetime, first_part, practitioner_ref};
use super::demographics::{encounter_ref, entity_identifier, literal, logical, period};
use super::fhir::{DiagnosticReport, Extension, ExtensionValue, Identifier, Reference};
use super::orders::{group_id, OrderGroup};
use super::specimen::sub;
use super::Context;
use crate::hl7::message::SegmentView;

/// The group's report; `None` without OBR, or when OBR-4 (the report's
/// required code) has nothing in it: the group's Observations are still
/// emitted, with a content-free warning.
pub(super) fn map<'a>(
    g: &OrderGroup<'a>,
    ctx: &'a Context<'a>,
    based_on: Option<(Cow<'a, str>, Option<Identifier<'a>>)>,
    result: Vec<Reference<'a>>,
    specimen: Vec<Reference<'a>>,
) -> Option<DiagnosticReport<'a>> {
    let obr = g.obr.as_ref()?;
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    let tz = t.default_timezone.as_str();
    let first = |n: usize| first_part(obr.field(n).unwrap_or(""), d.repetition);
    let Some(code) = codeable_concept(first(4), d, t, None) else {
        tracing::warn!(
            field = "OBR-4",
            obr = g.n,
            "no service identifier: no DiagnosticReport"
        );
        return None;
    };
    let placer = entity_identifier(g.obr_or_orc(2, 2, d.repetition), d, t, Some("PLAC"));
    let filler = entity_identifier(g.obr_or_orc(3, 3, d.repetition), d, t, Some("FILL"));
    let key = filler
        .as_ref()
        .or(placer.as_ref())
        .map_or("", |i| i.value.as_ref())
        .to_owned();
    // IG ORC-2: the report is based on the placer's order, a literal
    // reference when the ServiceRequest is emitted, else by its identifier.
    let based_on = match based_on {
        Some((id, ident)) => Some(literal("ServiceRequest", &id, ident)),
        None => placer.clone().map(|p| logical("ServiceRequest", p)),
    };
    let (start, end) = (first(7), first(8));
    let ended = !end.trim().is_empty();
    Some(DiagnosticReport {
        resource_type: "DiagnosticReport",
        id: Cow::Owned(group_id("DiagnosticReport", &key, ctx, g.n, "")),
        meta: &ctx.meta,
        identifier: placer.into_iter().chain(filler).collect(),
        based_on: based_on.into_iter().collect(),
        status: lookup(codes::RESULT_STATUS, first(25)).unwrap_or("unknown"),
        category: codeable_concept(first(24), d, t, Some("0074"))
            .into_iter()
            .collect(),
        code,
        subject: ctx.subject.clone(),
        encounter: encounter_ref(ctx),
        effective_date_time: (!ended)
            .then(|| datetime(first_part(start, d.component), tz))
            .flatten(),
        effective_period: ended.then(|| period(start, end, d, tz)).flatten(),
        issued: instant(first(22), ctx),
        // IG OBR-34 and OBR-35: technician (SPRF) and transcriptionist
        // (TRANS), each with its function.
        performer: [(34, "SPRF"), (35, "TRANS")]
            .into_iter()
            .flat_map(|(n, function)| {
                ndl(obr, n, ctx).into_iter().map(move |mut r| {
                    r.extension.push(performer_function(function));
                    r
                })
            })
            .collect(),
        results_interpreter: ndl(obr, 32, ctx),
        presented_form: Vec::new(),
        specimen,
        result,
        // IG ORC-16: the reason for the order control.
        extension: g
            .orc
            .as_ref()
            .and_then(|orc| {
                codeable_concept(
                    first_part(orc.field(16).unwrap_or(""), d.repetition),
                    d,
                    t,
                    None,
                )
            })
            .map(|cc| {
                Extension::new(
                    "http://hl7.org/fhir/StructureDefinition/event-statusReason",
                    ExtensionValue::CodeableConcept(cc),
                )
            })
            .into_iter()
            .collect(),
    })
}

/// event-performerFunction with a v3 ParticipationType code.
fn performer_function(code: &'static str) -> Extension<'static> {
    Extension::new(
        "http://hl7.org/fhir/StructureDefinition/event-performerFunction",
        ExtensionValue::CodeableConcept(concept_of(
            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            std::borrow::Cow::Borrowed(code),
            None,
        )),
    )
}

/// FHIR `instant` needs a time to the second and an offset: a date-only
/// OBR-22 is omitted.
fn instant(v: &str, ctx: &Context<'_>) -> Option<String> {
    let d = &ctx.header.delimiters;
    datetime(first_part(v, d.component), &ctx.tables.default_timezone).filter(|s| s.contains('T'))
}

/// NDL repetitions (their CNN, NDL-1) as logical Practitioner references.
fn ndl<'a>(seg: &SegmentView<'a>, n: usize, ctx: &Context<'_>) -> Vec<Reference<'a>> {
    let d = &ctx.header.delimiters;
    let sd = sub(d);
    seg.field(n)
        .unwrap_or("")
        .split(d.repetition)
        .filter_map(|rep| practitioner_ref(first_part(rep, d.component), &sd, ctx.tables))
        .collect()
}
