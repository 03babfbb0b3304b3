//! The IG concept maps the new resources use (`codesystems/*.csv` of the
//! V2-to-FHIR IG), as fixed tables: unlike the tables in
//! `mappings/tables.toml` they are FHIR's required bindings, not site choices.

/// `AdministrativeSex`: PID-8 to Patient.gender.
pub const ADMINISTRATIVE_SEX: &[(&str, &str)] = &[
    ("F", "female"),
    ("M", "male"),
    ("O", "other"),
    ("U", "unknown"),
    ("A", "other"),
    ("N", "other"),
];

/// `ResultStatus[Non-Queries]`: OBR-25 to DiagnosticReport.status. A, Y, Z,
/// M and N have no FHIR code in the IG: they (and an unknown code) are
/// `unknown`, the code the status binding keeps for "cannot say".
pub const RESULT_STATUS: &[(&str, &str)] = &[
    ("O", "registered"),
    ("I", "registered"),
    ("S", "registered"),
    ("P", "preliminary"),
    ("C", "corrected"),
    ("R", "partial"),
    ("F", "final"),
    ("X", "cancelled"),
];

/// `OrderStatus`: ORC-5 to ServiceRequest.status.
pub const ORDER_STATUS: &[(&str, &str)] = &[
    ("CA", "revoked"),
    ("CM", "completed"),
    ("DC", "revoked"),
    ("ER", "entered-in-error"),
    ("HD", "on-hold"),
    ("IP", "active"),
    ("RP", "revoked"),
    ("SC", "active"),
];

/// `OrderControlCode[ServiceRequest.status]`: ORC-1 to ServiceRequest.status
/// when ORC-5 is not valued (rows without a FHIR code are left out: `unknown`).
pub const ORDER_CONTROL_STATUS: &[(&str, &str)] = &[
    ("AF", "active"),
    ("CA", "active"),
    ("CR", "revoked"),
    ("DC", "revoked"),
    ("DF", "revoked"),
    ("DR", "revoked"),
    ("FU", "completed"),
    ("HD", "active"),
    ("HR", "on-hold"),
    ("NW", "active"),
    ("OC", "revoked"),
    ("OD", "revoked"),
    ("OH", "on-hold"),
    ("OK", "active"),
    ("PR", "active"),
    ("PY", "active"),
    ("RL", "active"),
    ("RO", "active"),
    ("RQ", "active"),
];

/// `ExtendedPriorityCodes`: OBR-5 / TQ1-9 to ServiceRequest.priority.
pub const PRIORITY: &[(&str, &str)] = &[("S", "stat"), ("A", "asap"), ("R", "routine")];

/// `NameType`: XPN-7 to HumanName.use.
pub const NAME_USE: &[(&str, &str)] = &[
    ("BAD", "old"),
    ("D", "usual"),
    ("L", "official"),
    ("M", "maiden"),
    ("MSK", "anonymous"),
    ("N", "nickname"),
    ("NAV", "temp"),
    ("R", "official"),
    ("TEMP", "temp"),
];

/// `AddressType[Use]`: XAD-7 to Address.use.
pub const ADDRESS_USE: &[(&str, &str)] = &[
    ("BA", "old"),
    ("BI", "billing"),
    ("C", "temp"),
    ("B", "work"),
    ("H", "home"),
    ("O", "work"),
];

/// `AddressType[Type]`: XAD-7 to Address.type.
pub const ADDRESS_TYPE: &[(&str, &str)] = &[("M", "postal"), ("SH", "postal")];

/// `TelecommunicationUseCode`: XTN-2 to ContactPoint.use.
pub const TELECOM_USE: &[(&str, &str)] = &[("PRN", "home"), ("WPN", "work"), ("PRS", "mobile")];

/// `TelecommunicationEquipmentType`: XTN-3 to ContactPoint.system (CP is a
/// phone whose use is mobile).
pub const TELECOM_SYSTEM: &[(&str, &str)] = &[
    ("PH", "phone"),
    ("FX", "fax"),
    ("MD", "other"),
    ("CP", "phone"),
    ("SAT", "other"),
    ("BP", "pager"),
    ("INTERNET", "email"),
    ("X.400", "email"),
    ("TDD", "other"),
    ("TTY", "other"),
];

/// `MaritalStatus`: PID-16 (table 0002) to v3 MaritalStatus or NullFlavor.
pub const MARITAL_STATUS: &[(&str, &str, &str, &str)] = &[
    ("A", "L", "Legally Separated", V3_MARITAL),
    ("D", "D", "Divorced", V3_MARITAL),
    ("M", "M", "Married", V3_MARITAL),
    ("S", "S", "Never Married", V3_MARITAL),
    ("W", "W", "Widowed", V3_MARITAL),
    ("C", "C", "Common Law", V3_MARITAL),
    ("G", "T", "Domestic partner", V3_MARITAL),
    ("P", "T", "Domestic partner", V3_MARITAL),
    ("R", "T", "Domestic partner", V3_MARITAL),
    ("E", "L", "Legally Separated", V3_MARITAL),
    ("N", "A", "Annulled", V3_MARITAL),
    ("I", "I", "Interlocutory", V3_MARITAL),
    ("B", "U", "unmarried", V3_MARITAL),
    ("U", "UNK", "Unknown", V3_NULL_FLAVOR),
    ("O", "OTH", "Other", V3_NULL_FLAVOR),
    ("T", "NAVU", "Not available", V3_NULL_FLAVOR),
];

const V3_MARITAL: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
const V3_NULL_FLAVOR: &str = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor";

/// `YesNoIndicator[AvailabilityStatus]`: SPM-20 to Specimen.status.
pub const SPECIMEN_AVAILABILITY: &[(&str, &str)] = &[("Y", "available"), ("N", "unavailable")];

/// The FHIR code for v2 `code` in `table` (case-insensitive, trimmed).
pub fn lookup(table: &[(&str, &'static str)], code: &str) -> Option<&'static str> {
    let code = code.trim();
    table
        .iter()
        .find(|(v2, _)| v2.eq_ignore_ascii_case(code))
        .map(|&(_, fhir)| fhir)
}

/// v2 `Y`/`N` (table 0136) as a boolean.
pub fn yes_no(code: &str) -> Option<bool> {
    match code.trim() {
        "Y" | "y" => Some(true),
        "N" | "n" => Some(false),
        _ => None,
    }
}

/// A v2 unit of time (CQ-2's code, UCUM or ISO+ as senders write it) as
/// the UCUM code FHIR's `UnitsOfTime` binding requires.
pub fn ucum_time_unit(unit: &str) -> Option<&'static str> {
    const UNITS: &[(&str, &str)] = &[
        ("s", "s"),
        ("sec", "s"),
        ("min", "min"),
        ("m", "min"),
        ("h", "h"),
        ("hr", "h"),
        ("d", "d"),
        ("day", "d"),
        ("wk", "wk"),
        ("mo", "mo"),
        ("a", "a"),
        ("yr", "a"),
    ];
    lookup(UNITS, unit)
}
