//! Logical references: to the resources the bridge does not emit
//! (organisations, devices, specimens, episodes of care), by identifier and
//! display, built from the v2 types that name them.

use std::borrow::Cow;

use super::datatypes::{authority_system, code, concept_of, parts, string};
use super::fhir::{Identifier, Reference, Text};
use super::tables::Tables;
use crate::hl7::message::Delimiters;

/// XON to a logical Reference to the Organization (IG XON[Organization]):
/// XON-1 the display, XON-10 (else XON-3) the identifier with XON-6 its
/// system and XON-7 its type.
pub fn organization_ref<'a>(v: &'a str, d: &Delimiters, t: &Tables) -> Option<Reference<'a>> {
    let p = parts(v, d.component);
    let value = string(p.get(9), d).or_else(|| string(p.get(2), d));
    let auth = parts(p.get(5), d.subcomponent);
    let identifier = value.map(|value| Identifier {
        type_: code(p.get(6), d)
            .map(|ty| concept_of("http://terminology.hl7.org/CodeSystem/v2-0203", ty, None)),
        system: authority_system(auth.get(0), auth.get(1), auth.get(2), d, t),
        value,
    });
    logical_ref("Organization", identifier, string(p.get(0), d))
}

/// CWE to a logical Reference by identifier (IG CWE[Organization] for OBX-15):
/// CWE-1 the identifier's value, CWE-3 its system, CWE-2 the display.
pub fn coded_ref<'a>(
    type_: &'static str,
    v: &'a str,
    d: &Delimiters,
    t: &Tables,
) -> Option<Reference<'a>> {
    let p = parts(v, d.component);
    let identifier = string(p.get(0), d).map(|value| Identifier {
        type_: None,
        system: string(p.get(2), d).map(|s| Cow::Owned(t.authority_uri(&s))),
        value,
    });
    logical_ref(type_, identifier, string(p.get(1), d))
}

/// A Reference to a resource the bridge does not emit: by identifier and
/// display; `None` with neither.
pub fn logical_ref<'a>(
    type_: &'static str,
    identifier: Option<Identifier<'a>>,
    display: Option<Text<'a>>,
) -> Option<Reference<'a>> {
    (identifier.is_some() || display.is_some()).then_some(Reference {
        reference: None,
        type_: Some(type_),
        identifier,
        display,
        extension: Vec::new(),
    })
}
