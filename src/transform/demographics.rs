//! The v2 datatypes only the new resources use, per the IG's datatype maps:
//! XPN[HumanName], XAD[Address], XTN[ContactPoint], EI[Identifier-Extension],
//! XON (as a logical Organization reference) and CQ[Quantity].

use std::borrow::Cow;

use super::codes::{self, lookup};
use super::datatypes::{concept_of, datetime, decimal, first_part, parts, push_string, string};
use super::fhir::{
    Address, CodeableConcept, ContactPoint, HumanName, Identifier, Period, Quantity, Reference,
    TextOnly,
};
use super::tables::Tables;
use super::Context;
use crate::hl7::message::Delimiters;

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

/// An identifier type from v2 table 0203 (PLAC, FILL, SS, ...).
pub fn v2_0203(code: &'static str) -> CodeableConcept<'static> {
    concept_of(V2_0203, Cow::Borrowed(code), None)
}

/// The message's `Encounter/<id>` reference, when the visit identifies it.
pub fn encounter_ref<'a>(ctx: &'a Context<'a>) -> Option<Reference<'a>> {
    ctx.encounter_reference.as_deref().map(|r| Reference {
        reference: Some(Cow::Borrowed(r)),
        type_: None,
        identifier: None,
        display: None,
        extension: Vec::new(),
    })
}

/// An FT/TX field (NTE-3, TQ1-11) as one note, its repetitions as lines.
pub fn note_text<'a>(f: &str, d: &Delimiters) -> Option<TextOnly<'a>> {
    let mut lines = String::with_capacity(f.len());
    for r in f.split(d.repetition) {
        push_string(r, d, "\n", &mut lines);
    }
    (!lines.is_empty()).then_some(TextOnly {
        text: Cow::Owned(lines),
    })
}

/// A `Period` from two raw DTM values, `None` when neither is a timestamp.
pub fn period(start: &str, end: &str, d: &Delimiters, tz: &str) -> Option<Period> {
    let start = datetime(first_part(start, d.component), tz);
    let end = datetime(first_part(end, d.component), tz);
    (start.is_some() || end.is_some()).then_some(Period { start, end })
}

/// XPN to HumanName: family (FN-1), given (XPN-2, XPN-3), suffix (XPN-4,
/// XPN-6, XPN-14), prefix (XPN-5), use via `NameType` (XPN-7), period
/// (XPN-12/13, else XPN-10). `None` when no name part is left.
pub fn human_name<'a>(v: &'a str, d: &Delimiters, tz: &str) -> Option<HumanName<'a>> {
    let p = parts(v, d.component);
    let texts = |idx: &[usize]| -> Vec<Cow<'a, str>> {
        idx.iter().filter_map(|&i| string(p.get(i), d)).collect()
    };
    let dr = parts(p.get(9), d.subcomponent);
    let name = HumanName {
        use_: lookup(codes::NAME_USE, p.get(6)),
        family: string(first_part(p.get(0), d.subcomponent), d),
        given: texts(&[1, 2]),
        prefix: texts(&[4]),
        suffix: texts(&[3, 5, 13]),
        period: period(p.get(11), p.get(12), d, tz).or_else(|| period(dr.get(0), dr.get(1), d, tz)),
    };
    (name.family.is_some()
        || !name.given.is_empty()
        || !name.prefix.is_empty()
        || !name.suffix.is_empty())
    .then_some(name)
}

/// XAD to Address: lines (XAD-1.1, 1.2, 1.3, XAD-2, XAD-19), city, state,
/// postal code, country, district (XAD-9), use or type via `AddressType`
/// (XAD-7), period (XAD-13/14, else XAD-12). `None` when nothing is left.
pub fn address<'a>(v: &'a str, d: &Delimiters, tz: &str) -> Option<Address<'a>> {
    let p = parts(v, d.component);
    let sad = parts(p.get(0), d.subcomponent);
    let mut line: Vec<Cow<'a, str>> = [sad.get(0), sad.get(1), sad.get(2)]
        .into_iter()
        .filter_map(|s| string(s, d))
        .collect();
    line.extend(string(p.get(1), d));
    line.extend(string(p.get(18), d));
    let dr = parts(p.get(11), d.subcomponent);
    let a = Address {
        use_: lookup(codes::ADDRESS_USE, p.get(6)),
        type_: lookup(codes::ADDRESS_TYPE, p.get(6)),
        text: None,
        line,
        city: string(p.get(2), d),
        district: string(first_part(p.get(8), d.subcomponent), d),
        state: string(p.get(3), d),
        postal_code: string(p.get(4), d),
        country: string(p.get(5), d),
        period: period(p.get(12), p.get(13), d, tz).or_else(|| period(dr.get(0), dr.get(1), d, tz)),
    };
    (!a.line.is_empty()
        || a.city.is_some()
        || a.district.is_some()
        || a.state.is_some()
        || a.postal_code.is_some()
        || a.country.is_some())
    .then_some(a)
}

/// XTN to ContactPoint. The value is XTN-4 for Internet/X.400, else XTN-12,
/// else the number assembled from XTN-5 to XTN-8, else XTN-1. `default_use`
/// is the field's use when XTN-2 is empty (home for PID-13, work for PID-14).
pub fn contact_point<'a>(
    v: &'a str,
    d: &Delimiters,
    tz: &str,
    default_use: Option<&'static str>,
) -> Option<ContactPoint<'a>> {
    let p = parts(v, d.component);
    let equipment = p.get(2).trim();
    let email = equipment.eq_ignore_ascii_case("Internet") || equipment == "X.400";
    let value = if email {
        string(p.get(3), d)
    } else {
        string(p.get(11), d)
            .or_else(|| {
                // The digits, a `+` and ` X`: about the field's length.
                let mut n = String::with_capacity(v.len() + 2);
                if push_string(p.get(4), d, "", &mut n) {
                    n.insert(0, '+');
                }
                for (i, sep) in [(5, " "), (6, " "), (7, " X")] {
                    push_string(p.get(i), d, sep, &mut n);
                }
                (!n.is_empty()).then_some(Cow::Owned(n))
            })
            .or_else(|| string(p.get(0), d))
            .or_else(|| string(p.get(3), d))
    };
    let value = value?;
    let system = lookup(codes::TELECOM_SYSTEM, equipment).or_else(|| {
        // XTN-3 not valued: an address in XTN-4 is an email (IG XTN-3 row 2).
        (equipment.is_empty() && string(p.get(3), d).is_some() && string(p.get(11), d).is_none())
            .then_some("email")
    });
    let use_ = if equipment == "CP" {
        Some("mobile")
    } else {
        lookup(codes::TELECOM_USE, p.get(1)).or(if p.get(1).trim().is_empty() {
            default_use
        } else {
            None
        })
    };
    Some(ContactPoint {
        system,
        value: Some(value),
        use_,
        rank: p.get(17).trim().parse::<u32>().ok().filter(|r| *r > 0),
        period: period(p.get(12), p.get(13), d, tz),
    })
}

/// EI to Identifier with a v2-0203 type (PLAC, FILL, ...): value EI-1,
/// system from the assigning authority (EI-2, else EI-3). `None` without a value.
pub fn entity_identifier<'a>(
    v: &'a str,
    d: &Delimiters,
    t: &Tables,
    type_code: Option<&'static str>,
) -> Option<Identifier<'a>> {
    let p = parts(v, d.component);
    let value = string(p.get(0), d)?;
    let system = string(p.get(1), d)
        .or_else(|| string(p.get(2), d))
        .map(|ns| Cow::Owned(t.authority_uri(&ns)));
    Some(Identifier {
        type_: type_code.map(v2_0203),
        system,
        value,
    })
}

/// XON as a logical Organization reference: name (XON-1), identifier
/// (XON-10, else XON-3). The bridge emits no Organization.
pub fn organization_ref<'a>(v: &'a str, d: &Delimiters, t: &Tables) -> Option<Reference<'a>> {
    let p = parts(v, d.component);
    let display = string(p.get(0), d);
    let auth = first_part(p.get(5), d.subcomponent);
    let identifier = string(p.get(9), d)
        .or_else(|| string(p.get(2), d))
        .map(|value| Identifier {
            type_: None,
            system: string(auth, d).map(|ns| Cow::Owned(t.authority_uri(&ns))),
            value,
        });
    (display.is_some() || identifier.is_some()).then_some(Reference {
        reference: None,
        type_: Some("Organization"),
        identifier,
        display,
        extension: Vec::new(),
    })
}

/// CQ to Quantity: value CQ-1, unit CQ-2 (its text, else its code). `None`
/// when CQ-1 is not a number.
pub fn cq_quantity<'a>(v: &'a str, d: &Delimiters) -> Option<Quantity<'a>> {
    let p = parts(v, d.component);
    let units = parts(p.get(1), d.subcomponent);
    Some(Quantity {
        value: decimal(p.get(0))?,
        unit: string(units.get(1), d).or_else(|| string(units.get(0), d)),
        system: None,
        code: None,
        comparator: None,
    })
}

/// A logical reference, by identifier, to a resource the bridge does not
/// emit (a parent specimen or order, the placer's order).
pub fn logical<'a>(type_: &'static str, identifier: Identifier<'a>) -> Reference<'a> {
    Reference {
        reference: None,
        type_: Some(type_),
        identifier: Some(identifier),
        display: None,
        extension: Vec::new(),
    }
}

/// A `Reference` to a resource emitted for the same message, with its
/// identifier beside it when the IG gives one.
pub fn literal<'a>(
    type_: &'static str,
    id: &str,
    identifier: Option<Identifier<'a>>,
) -> Reference<'a> {
    Reference {
        reference: Some(Cow::Owned(format!("{type_}/{id}"))),
        type_: None,
        identifier,
        display: None,
        extension: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn js<T: serde::Serialize>(v: Option<T>) -> Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn xpn_parts_go_to_family_given_prefix_suffix_and_use() {
        let d = Delimiters::default();
        assert_eq!(
            js(human_name("DOE&VAN^JANE^Q^JR^DR^MD^L", &d, "+00:00")),
            json!({"use": "official", "family": "DOE", "given": ["JANE", "Q"],
                   "prefix": ["DR"], "suffix": ["JR", "MD"]})
        );
        assert!(human_name(r"^^^^^^L", &d, "+00:00").is_none());
    }

    #[test]
    fn xad_lines_and_use_from_the_address_type() {
        let d = Delimiters::default();
        assert_eq!(
            js(address(
                "1 MAIN ST&MAIN ST&1^APT 2^SPRINGFIELD^IL^62701^USA^H^^SANGAMON",
                &d,
                "+00:00"
            )),
            json!({"use": "home", "line": ["1 MAIN ST", "MAIN ST", "1", "APT 2"],
                   "city": "SPRINGFIELD", "district": "SANGAMON", "state": "IL",
                   "postalCode": "62701", "country": "USA"})
        );
        assert_eq!(js(address("^^^^^^M", &d, "+00:00")), Value::Null);
    }

    #[test]
    fn xtn_value_system_and_use() {
        let d = Delimiters::default();
        let tz = "+00:00";
        assert_eq!(
            js(contact_point(
                "^PRN^PH^^1^555^1234567",
                &d,
                tz,
                Some("home")
            )),
            json!({"system": "phone", "value": "+1 555 1234567", "use": "home"})
        );
        assert_eq!(
            js(contact_point(
                "^NET^Internet^jo@example.org",
                &d,
                tz,
                Some("home")
            )),
            json!({"system": "email", "value": "jo@example.org"}),
            "NET has no FHIR use: none, not the field's default"
        );
        assert_eq!(
            js(contact_point("(555)555-1000", &d, tz, Some("work"))),
            json!({"value": "(555)555-1000", "use": "work"})
        );
        assert_eq!(
            js(contact_point("^^CP^^^555^7654321", &d, tz, None)),
            json!({"system": "phone", "value": "555 7654321", "use": "mobile"})
        );
    }
}
