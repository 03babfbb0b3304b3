//! PID (with PD1 and PV1-16) to Patient, per the IG's `PID[Patient]`,
//! `PD1[Patient]` and `PV1[Patient]` segment maps.

use std::borrow::Cow;

use super::codes::{self, lookup, yes_no};
use super::datatypes::{
    codeable_concept, datetime, first_part, identifier, parts, practitioner_ref, string,
};
use super::demographics::{address, contact_point, human_name, organization_ref, v2_0203};
use super::fhir::{
    Address, CodeableConcept, Coding, Element, Extension, ExtensionValue, Identifier, Patient,
    PatientCommunication,
};
use super::Context;
use crate::hl7::message::{Delimiters, SegmentView};

/// The Patient of one PID. `pd1` and `pv1` are the segments of the same
/// patient group (the IG incorporates them into this Patient).
pub(super) fn map<'a>(
    pid: &SegmentView<'a>,
    pd1: Option<&SegmentView<'a>>,
    pv1: Option<&SegmentView<'a>>,
    id: String,
    ctx: &'a Context<'a>,
) -> Patient<'a> {
    let d = &ctx.header.delimiters;
    let t = ctx.tables;
    let tz = t.default_timezone.as_str();
    let reps = |n: usize| pid.field(n).unwrap_or("").split(d.repetition);
    let first = |n: usize| first_part(pid.field(n).unwrap_or(""), d.repetition);

    let mut ids: Vec<Identifier<'a>> = [2, 3, 4]
        .into_iter()
        .flat_map(|n| reps(n).filter_map(|cx| identifier(cx, d, t)))
        .collect();
    ids.extend(string(first(19), d).map(|ssn| Identifier {
        type_: Some(v2_0203("SS")),
        system: Some(Cow::Borrowed("http://hl7.org/fhir/sid/us-ssn")),
        value: ssn,
    }));
    ids.extend(driver_licence(first(20), d, t));

    let name = [5, 9]
        .into_iter()
        .flat_map(|n| reps(n).filter_map(|x| human_name(x, d, tz)))
        .collect();
    let mut addresses: Vec<Address<'a>> = reps(11).filter_map(|x| address(x, d, tz)).collect();
    county(first(12), d, &mut addresses);
    let telecom = reps(13)
        .filter_map(|x| contact_point(x, d, tz, Some("home")))
        .chain(reps(14).filter_map(|x| contact_point(x, d, tz, Some("work"))))
        .chain(reps(40).filter_map(|x| contact_point(x, d, tz, None)))
        .collect();

    let dob = first_part(first(7), d.component).trim();
    let birth_date = datetime(dob.get(..8.min(dob.len())).unwrap_or(""), tz);
    // IG PID-7: a time of birth travels in the birthTime extension.
    let birth_time = (dob.len() > 8)
        .then(|| datetime(dob, tz))
        .flatten()
        .filter(|_| birth_date.is_some())
        .map(|dt| Element {
            extension: vec![Extension::new(
                "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                ExtensionValue::DateTime(dt),
            )],
        });
    let deceased_date_time = datetime(first_part(first(29), d.component), tz);
    let birth_order = first(25).trim().parse::<i32>().ok().filter(|n| *n > 0);

    let mut extension = Vec::new();
    if let Some(maiden) = string(
        first_part(first_part(first(6), d.component), d.subcomponent),
        d,
    ) {
        extension.push(Extension::new(
            "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
            ExtensionValue::String(maiden),
        ));
    }
    extension.extend(concept_extension(
        codeable_concept(first(17), d, t, Some("0006")),
        "http://hl7.org/fhir/StructureDefinition/patient-religion",
    ));
    if let Some(place) = string(first(23), d) {
        extension.push(Extension::new(
            "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            ExtensionValue::Address(Address {
                text: Some(place),
                ..empty_address()
            }),
        ));
    }
    // IG PID-26 and PID-39: citizenship of a country and of a tribe are
    // both the citizenship extension.
    for (n, url) in [
        (
            26,
            "http://hl7.org/fhir/StructureDefinition/patient-citizenship",
        ),
        (
            28,
            "http://hl7.org/fhir/StructureDefinition/patient-nationality",
        ),
        (
            39,
            "http://hl7.org/fhir/StructureDefinition/patient-citizenship",
        ),
    ] {
        for cwe in reps(n) {
            if let Some(cc) = codeable_concept(cwe, d, t, Some("0171")) {
                let code = Extension::new("code", ExtensionValue::CodeableConcept(cc));
                extension.push(Extension::new(url, ExtensionValue::Nested(vec![code])));
            }
        }
    }
    extension.extend(animal(first(35), first(36), d, t));
    let mut general_practitioner = Vec::new();
    if let Some(pd1) = pd1 {
        let pd1_first = |n: usize| first_part(pd1.field(n).unwrap_or(""), d.repetition);
        let pd1_reps = |n: usize| pd1.field(n).unwrap_or("").split(d.repetition);
        general_practitioner.extend(pd1_reps(3).filter_map(|x| organization_ref(x, d, t)));
        general_practitioner.extend(pd1_reps(4).filter_map(|x| practitioner_ref(x, d, t)));
        extension.extend(concept_extension(
            codeable_concept(pd1_first(6), d, t, Some("0295")),
            "http://hl7.org/fhir/StructureDefinition/patient-disability",
        ));
        if let Some(congregation) = string(first_part(pd1_first(14), d.component), d) {
            extension.push(Extension::new(
                "http://hl7.org/fhir/StructureDefinition/patient-congregation",
                ExtensionValue::String(congregation),
            ));
        }
    }
    if let Some(pv1) = pv1 {
        extension.extend(concept_extension(
            codeable_concept(
                first_part(pv1.field(16).unwrap_or(""), d.repetition),
                d,
                t,
                Some("0099"),
            ),
            "http://hl7.org/fhir/StructureDefinition/patient-importance",
        ));
    }

    Patient {
        resource_type: "Patient",
        id: Cow::Owned(id),
        meta: &ctx.meta,
        extension,
        identifier: ids,
        active: None,
        name,
        telecom,
        gender: lookup(codes::ADMINISTRATIVE_SEX, first_part(first(8), d.component)),
        birth_date,
        birth_date_ext: birth_time,
        // IG PID-30: the indicator only when there is no date of death.
        deceased_boolean: deceased_date_time
            .is_none()
            .then(|| yes_no(first(30)))
            .flatten(),
        deceased_date_time,
        address: addresses,
        marital_status: marital_status(first(16), d, ctx),
        // IG PID-24: the indicator only when there is no birth order.
        multiple_birth_boolean: birth_order.is_none().then(|| yes_no(first(24))).flatten(),
        multiple_birth_integer: birth_order,
        communication: reps(15)
            .filter_map(|x| codeable_concept(x, d, t, Some("0296")))
            .map(|language| PatientCommunication { language })
            .collect(),
        general_practitioner,
        link: Vec::new(),
    }
}

/// IG PID-35 and PID-36: a non-human patient's species (table 0446) and
/// breed (table 0447), the two parts of one patient-animal extension.
fn animal<'a>(
    species: &'a str,
    breed: &'a str,
    d: &Delimiters,
    t: &'a super::Tables,
) -> Option<Extension<'a>> {
    let parts: Vec<Extension<'a>> = [(species, "species", "0446"), (breed, "breed", "0447")]
        .into_iter()
        .filter_map(|(v, url, table)| {
            codeable_concept(v, d, t, Some(table))
                .map(|cc| Extension::new(url, ExtensionValue::CodeableConcept(cc)))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        Extension::new(
            "http://hl7.org/fhir/StructureDefinition/patient-animal",
            ExtensionValue::Nested(parts),
        )
    })
}

/// DLN[Identifier]: the licence number (DLN-1), type DL, the issuing state
/// (DLN-2) as the authority.
fn driver_licence<'a>(v: &'a str, d: &Delimiters, t: &super::Tables) -> Option<Identifier<'a>> {
    let p = parts(v, d.component);
    Some(Identifier {
        type_: Some(v2_0203("DL")),
        system: string(p.get(1), d).map(|s| Cow::Owned(t.authority_uri(&s))),
        value: string(p.get(0), d)?,
    })
}

/// IG PID-12: the county is the district of the only address when that has
/// none; otherwise (no address, an address in another county, several
/// addresses: the IG's `address[2]`) an address of its own, unless an
/// address already names it.
fn county<'a>(v: &'a str, d: &Delimiters, addresses: &mut Vec<Address<'a>>) {
    let Some(county) = string(first_part(v, d.component), d) else {
        return;
    };
    match addresses.as_mut_slice() {
        [only] if only.district.is_none() => only.district = Some(county),
        all if all.iter().any(|a| a.district.as_ref() == Some(&county)) => {}
        _ => addresses.push(Address {
            district: Some(county),
            ..empty_address()
        }),
    }
}

fn empty_address<'a>() -> Address<'a> {
    Address {
        use_: None,
        type_: None,
        text: None,
        line: Vec::new(),
        city: None,
        district: None,
        state: None,
        postal_code: None,
        country: None,
        period: None,
    }
}

fn concept_extension<'a>(
    cc: Option<CodeableConcept<'a>>,
    url: &'static str,
) -> Option<Extension<'a>> {
    cc.map(|cc| Extension::new(url, ExtensionValue::CodeableConcept(cc)))
}

/// PID-16 via the IG's `MaritalStatus` map; a code it does not list keeps
/// its v2 coding (table 0002).
fn marital_status<'a>(
    v: &'a str,
    d: &Delimiters,
    ctx: &'a Context<'a>,
) -> Option<CodeableConcept<'a>> {
    let code = first_part(v, d.component).trim();
    match codes::MARITAL_STATUS
        .iter()
        .find(|(v2, ..)| v2.eq_ignore_ascii_case(code))
    {
        Some(&(_, fhir, display, system)) => Some(CodeableConcept {
            coding: vec![Coding {
                system: Some(Cow::Borrowed(system)),
                version: None,
                code: Some(Cow::Borrowed(fhir)),
                display: Some(Cow::Borrowed(display)),
            }],
            text: None,
        }),
        None => codeable_concept(v, d, ctx.tables, Some("0002")),
    }
}
