//! HL7 v2.5.1 field and component names, for people reading messages
//! (`hl7bridge inspect`).
//!
//! Only the segments and composite types the bridge routes and maps are
//! named; anything else is shown by number. Names follow the v2.5.1 standard.

/// (field name, data type), indexed by field number - 1.
type Fields = &'static [(&'static str, &'static str)];

const MSH: Fields = &[
    ("Field Separator", "ST"),
    ("Encoding Characters", "ST"),
    ("Sending Application", "HD"),
    ("Sending Facility", "HD"),
    ("Receiving Application", "HD"),
    ("Receiving Facility", "HD"),
    ("Date/Time of Message", "TS"),
    ("Security", "ST"),
    ("Message Type", "MSG"),
    ("Message Control ID", "ST"),
    ("Processing ID", "PT"),
    ("Version ID", "VID"),
    ("Sequence Number", "NM"),
    ("Continuation Pointer", "ST"),
    ("Accept Acknowledgment Type", "ID"),
    ("Application Acknowledgment Type", "ID"),
    ("Country Code", "ID"),
    ("Character Set", "ID"),
    ("Principal Language of Message", "CE"),
    ("Alternate Character Set Handling Scheme", "ID"),
    ("Message Profile Identifier", "EI"),
];

const EVN: Fields = &[
    ("Event Type Code", "ID"),
    ("Recorded Date/Time", "TS"),
    ("Date/Time Planned Event", "TS"),
    ("Event Reason Code", "IS"),
    ("Operator ID", "XCN"),
    ("Event Occurred", "TS"),
    ("Event Facility", "HD"),
];

const PID: Fields = &[
    ("Set ID - PID", "SI"),
    ("Patient ID", "CX"),
    ("Patient Identifier List", "CX"),
    ("Alternate Patient ID - PID", "CX"),
    ("Patient Name", "XPN"),
    ("Mother's Maiden Name", "XPN"),
    ("Date/Time of Birth", "TS"),
    ("Administrative Sex", "IS"),
    ("Patient Alias", "XPN"),
    ("Race", "CE"),
    ("Patient Address", "XAD"),
    ("County Code", "IS"),
    ("Phone Number - Home", "XTN"),
    ("Phone Number - Business", "XTN"),
    ("Primary Language", "CE"),
    ("Marital Status", "CE"),
    ("Religion", "CE"),
    ("Patient Account Number", "CX"),
    ("SSN Number - Patient", "ST"),
    ("Driver's License Number - Patient", "DLN"),
    ("Mother's Identifier", "CX"),
    ("Ethnic Group", "CE"),
    ("Birth Place", "ST"),
    ("Multiple Birth Indicator", "ID"),
    ("Birth Order", "NM"),
    ("Citizenship", "CE"),
    ("Veterans Military Status", "CE"),
    ("Nationality", "CE"),
    ("Patient Death Date and Time", "TS"),
    ("Patient Death Indicator", "ID"),
    ("Identity Unknown Indicator", "ID"),
    ("Identity Reliability Code", "IS"),
    ("Last Update Date/Time", "TS"),
    ("Last Update Facility", "HD"),
    ("Species Code", "CE"),
    ("Breed Code", "CE"),
    ("Strain", "ST"),
    ("Production Class Code", "CE"),
    ("Tribal Citizenship", "CWE"),
];

const PV1: Fields = &[
    ("Set ID - PV1", "SI"),
    ("Patient Class", "IS"),
    ("Assigned Patient Location", "PL"),
    ("Admission Type", "IS"),
    ("Preadmit Number", "CX"),
    ("Prior Patient Location", "PL"),
    ("Attending Doctor", "XCN"),
    ("Referring Doctor", "XCN"),
    ("Consulting Doctor", "XCN"),
    ("Hospital Service", "IS"),
    ("Temporary Location", "PL"),
    ("Preadmit Test Indicator", "IS"),
    ("Re-admission Indicator", "IS"),
    ("Admit Source", "IS"),
    ("Ambulatory Status", "IS"),
    ("VIP Indicator", "IS"),
    ("Admitting Doctor", "XCN"),
    ("Patient Type", "IS"),
    ("Visit Number", "CX"),
    ("Financial Class", "FC"),
    ("Charge Price Indicator", "IS"),
    ("Courtesy Code", "IS"),
    ("Credit Rating", "IS"),
    ("Contract Code", "IS"),
    ("Contract Effective Date", "DT"),
    ("Contract Amount", "NM"),
    ("Contract Period", "NM"),
    ("Interest Code", "IS"),
    ("Transfer to Bad Debt Code", "IS"),
    ("Transfer to Bad Debt Date", "DT"),
    ("Bad Debt Agency Code", "IS"),
    ("Bad Debt Transfer Amount", "NM"),
    ("Bad Debt Recovery Amount", "NM"),
    ("Delete Account Indicator", "IS"),
    ("Delete Account Date", "DT"),
    ("Discharge Disposition", "IS"),
    ("Discharged to Location", "DLD"),
    ("Diet Type", "CE"),
    ("Servicing Facility", "IS"),
    ("Bed Status", "IS"),
    ("Account Status", "IS"),
    ("Pending Location", "PL"),
    ("Prior Temporary Location", "PL"),
    ("Admit Date/Time", "TS"),
    ("Discharge Date/Time", "TS"),
    ("Current Patient Balance", "NM"),
    ("Total Charges", "NM"),
    ("Total Adjustments", "NM"),
    ("Total Payments", "NM"),
    ("Alternate Visit ID", "CX"),
    ("Visit Indicator", "IS"),
    ("Other Healthcare Provider", "XCN"),
];

const PV2: Fields = &[
    ("Prior Pending Location", "PL"),
    ("Accommodation Code", "CE"),
    ("Admit Reason", "CE"),
    ("Transfer Reason", "CE"),
    ("Patient Valuables", "ST"),
    ("Patient Valuables Location", "ST"),
    ("Visit User Code", "IS"),
    ("Expected Admit Date/Time", "TS"),
    ("Expected Discharge Date/Time", "TS"),
    ("Estimated Length of Inpatient Stay", "NM"),
    ("Actual Length of Inpatient Stay", "NM"),
    ("Visit Description", "ST"),
    ("Referral Source Code", "XCN"),
    ("Previous Service Date", "DT"),
    ("Employment Illness Related Indicator", "ID"),
    ("Purge Status Code", "IS"),
    ("Purge Status Date", "DT"),
    ("Special Program Code", "IS"),
    ("Retention Indicator", "ID"),
    ("Expected Number of Insurance Plans", "NM"),
    ("Visit Publicity Code", "IS"),
    ("Visit Protection Indicator", "ID"),
    ("Clinic Organization Name", "XON"),
    ("Patient Status Code", "IS"),
    ("Visit Priority Code", "IS"),
    ("Previous Treatment Date", "DT"),
    ("Expected Discharge Disposition", "IS"),
    ("Signature on File Date", "DT"),
    ("First Similar Illness Date", "DT"),
    ("Patient Charge Adjustment Code", "CE"),
    ("Recurring Service Code", "IS"),
    ("Billing Media Code", "ID"),
    ("Expected Surgery Date and Time", "TS"),
    ("Military Partnership Code", "ID"),
    ("Military Non-Availability Code", "ID"),
    ("Newborn Baby Indicator", "ID"),
    ("Baby Detained Indicator", "ID"),
    ("Mode of Arrival Code", "CE"),
    ("Recreational Drug Use Code", "CE"),
    ("Admission Level of Care Code", "CE"),
    ("Precaution Code", "CE"),
    ("Patient Condition Code", "CE"),
    ("Living Will Code", "IS"),
    ("Organ Donor Code", "IS"),
    ("Advance Directive Code", "CE"),
    ("Patient Status Effective Date", "DT"),
    ("Expected LOA Return Date/Time", "TS"),
    ("Expected Pre-admission Testing Date/Time", "TS"),
    ("Notify Clergy Code", "IS"),
];

const ORC: Fields = &[
    ("Order Control", "ID"),
    ("Placer Order Number", "EI"),
    ("Filler Order Number", "EI"),
    ("Placer Group Number", "EI"),
    ("Order Status", "ID"),
    ("Response Flag", "ID"),
    ("Quantity/Timing", "TQ"),
    ("Parent", "EIP"),
    ("Date/Time of Transaction", "TS"),
    ("Entered By", "XCN"),
    ("Verified By", "XCN"),
    ("Ordering Provider", "XCN"),
    ("Enterer's Location", "PL"),
    ("Call Back Phone Number", "XTN"),
    ("Order Effective Date/Time", "TS"),
    ("Order Control Code Reason", "CE"),
    ("Entering Organization", "CE"),
    ("Entering Device", "CE"),
    ("Action By", "XCN"),
    ("Advanced Beneficiary Notice Code", "CE"),
    ("Ordering Facility Name", "XON"),
    ("Ordering Facility Address", "XAD"),
    ("Ordering Facility Phone Number", "XTN"),
    ("Ordering Provider Address", "XAD"),
    ("Order Status Modifier", "CWE"),
    ("Advanced Beneficiary Notice Override Reason", "CWE"),
    ("Filler's Expected Availability Date/Time", "TS"),
    ("Confidentiality Code", "CWE"),
    ("Order Type", "CWE"),
    ("Enterer Authorization Mode", "CNE"),
    ("Parent Universal Service Identifier", "CWE"),
];

const OBR: Fields = &[
    ("Set ID - OBR", "SI"),
    ("Placer Order Number", "EI"),
    ("Filler Order Number", "EI"),
    ("Universal Service Identifier", "CE"),
    ("Priority - OBR", "ID"),
    ("Requested Date/Time", "TS"),
    ("Observation Date/Time", "TS"),
    ("Observation End Date/Time", "TS"),
    ("Collection Volume", "CQ"),
    ("Collector Identifier", "XCN"),
    ("Specimen Action Code", "ID"),
    ("Danger Code", "CE"),
    ("Relevant Clinical Information", "ST"),
    ("Specimen Received Date/Time", "TS"),
    ("Specimen Source", "SPS"),
    ("Ordering Provider", "XCN"),
    ("Order Callback Phone Number", "XTN"),
    ("Placer Field 1", "ST"),
    ("Placer Field 2", "ST"),
    ("Filler Field 1", "ST"),
    ("Filler Field 2", "ST"),
    ("Results Rpt/Status Chng - Date/Time", "TS"),
    ("Charge to Practice", "MOC"),
    ("Diagnostic Serv Sect ID", "ID"),
    ("Result Status", "ID"),
    ("Parent Result", "PRL"),
    ("Quantity/Timing", "TQ"),
    ("Result Copies To", "XCN"),
    ("Parent", "EIP"),
    ("Transportation Mode", "ID"),
    ("Reason for Study", "CE"),
    ("Principal Result Interpreter", "NDL"),
    ("Assistant Result Interpreter", "NDL"),
    ("Technician", "NDL"),
    ("Transcriptionist", "NDL"),
    ("Scheduled Date/Time", "TS"),
    ("Number of Sample Containers", "NM"),
    ("Transport Logistics of Collected Sample", "CE"),
    ("Collector's Comment", "CE"),
    ("Transport Arrangement Responsibility", "CE"),
    ("Transport Arranged", "ID"),
    ("Escort Required", "ID"),
    ("Planned Patient Transport Comment", "CE"),
    ("Procedure Code", "CE"),
    ("Procedure Code Modifier", "CE"),
    ("Placer Supplemental Service Information", "CE"),
    ("Filler Supplemental Service Information", "CE"),
    ("Medically Necessary Duplicate Procedure Reason", "CWE"),
    ("Result Handling", "IS"),
    ("Parent Universal Service Identifier", "CWE"),
];

/// OBX-5's type is "varies": it is whatever OBX-2 says.
const OBX: Fields = &[
    ("Set ID - OBX", "SI"),
    ("Value Type", "ID"),
    ("Observation Identifier", "CE"),
    ("Observation Sub-ID", "ST"),
    ("Observation Value", "varies"),
    ("Units", "CE"),
    ("References Range", "ST"),
    ("Abnormal Flags", "IS"),
    ("Probability", "NM"),
    ("Nature of Abnormal Test", "ID"),
    ("Observation Result Status", "ID"),
    ("Effective Date of Reference Range", "TS"),
    ("User Defined Access Checks", "ST"),
    ("Date/Time of the Observation", "TS"),
    ("Producer's ID", "CE"),
    ("Responsible Observer", "XCN"),
    ("Observation Method", "CE"),
    ("Equipment Instance Identifier", "EI"),
    ("Date/Time of the Analysis", "TS"),
];

const NTE: Fields = &[
    ("Set ID - NTE", "SI"),
    ("Source of Comment", "ID"),
    ("Comment", "FT"),
    ("Comment Type", "CE"),
];

/// Name and data type of field `n` (1-based) of `segment`, if known.
pub fn field(segment: &str, n: usize) -> Option<(&'static str, &'static str)> {
    let table = match segment {
        "MSH" => MSH,
        "EVN" => EVN,
        "PID" => PID,
        "PV1" => PV1,
        "PV2" => PV2,
        "ORC" => ORC,
        "OBR" => OBR,
        "OBX" => OBX,
        "NTE" => NTE,
        _ => return None,
    };
    table.get(n.checked_sub(1)?).copied()
}

/// (component name, component data type) of composite types, in order.
/// Primitive components have an empty type.
type Components = &'static [(&'static str, &'static str)];

const CX: Components = &[
    ("ID Number", ""),
    ("Check Digit", ""),
    ("Check Digit Scheme", ""),
    ("Assigning Authority", "HD"),
    ("Identifier Type Code", ""),
    ("Assigning Facility", "HD"),
    ("Effective Date", "DT"),
    ("Expiration Date", "DT"),
    ("Assigning Jurisdiction", "CWE"),
    ("Assigning Agency or Department", "CWE"),
];

const XPN: Components = &[
    ("Family Name", "FN"),
    ("Given Name", ""),
    ("Second and Further Given Names or Initials Thereof", ""),
    ("Suffix", ""),
    ("Prefix", ""),
    ("Degree", ""),
    ("Name Type Code", ""),
    ("Name Representation Code", ""),
    ("Name Context", "CE"),
    ("Name Validity Range", ""),
    ("Name Assembly Order", ""),
    ("Effective Date", "TS"),
    ("Expiration Date", "TS"),
    ("Professional Suffix", ""),
];

const FN: Components = &[
    ("Surname", ""),
    ("Own Surname Prefix", ""),
    ("Own Surname", ""),
    ("Surname Prefix from Partner/Spouse", ""),
    ("Surname from Partner/Spouse", ""),
];

const XCN: Components = &[
    ("ID Number", ""),
    ("Family Name", "FN"),
    ("Given Name", ""),
    ("Second and Further Given Names or Initials Thereof", ""),
    ("Suffix", ""),
    ("Prefix", ""),
    ("Degree", ""),
    ("Source Table", ""),
    ("Assigning Authority", "HD"),
    ("Name Type Code", ""),
    ("Identifier Check Digit", ""),
    ("Check Digit Scheme", ""),
    ("Identifier Type Code", ""),
    ("Assigning Facility", "HD"),
    ("Name Representation Code", ""),
    ("Name Context", "CE"),
    ("Name Validity Range", ""),
    ("Name Assembly Order", ""),
    ("Effective Date", "TS"),
    ("Expiration Date", "TS"),
    ("Professional Suffix", ""),
    ("Assigning Jurisdiction", "CWE"),
    ("Assigning Agency or Department", "CWE"),
];

const CWE: Components = &[
    ("Identifier", ""),
    ("Text", ""),
    ("Name of Coding System", ""),
    ("Alternate Identifier", ""),
    ("Alternate Text", ""),
    ("Name of Alternate Coding System", ""),
    ("Coding System Version ID", ""),
    ("Alternate Coding System Version ID", ""),
    ("Original Text", ""),
];

const HD: Components = &[
    ("Namespace ID", ""),
    ("Universal ID", ""),
    ("Universal ID Type", ""),
];

const PL: Components = &[
    ("Point of Care", ""),
    ("Room", ""),
    ("Bed", ""),
    ("Facility", "HD"),
    ("Location Status", ""),
    ("Person Location Type", ""),
    ("Building", ""),
    ("Floor", ""),
    ("Location Description", ""),
    ("Comprehensive Location Identifier", "EI"),
    ("Assigning Authority for Location", "HD"),
];

const MSG: Components = &[
    ("Message Code", ""),
    ("Trigger Event", ""),
    ("Message Structure", ""),
];

const TS: Components = &[("Time", "DTM"), ("Degree of Precision", "")];

const EI: Components = &[
    ("Entity Identifier", ""),
    ("Namespace ID", ""),
    ("Universal ID", ""),
    ("Universal ID Type", ""),
];

const EIP: Components = &[
    ("Placer Assigned Identifier", "EI"),
    ("Filler Assigned Identifier", "EI"),
];

const XAD: Components = &[
    ("Street Address", "SAD"),
    ("Other Designation", ""),
    ("City", ""),
    ("State or Province", ""),
    ("Zip or Postal Code", ""),
    ("Country", ""),
    ("Address Type", ""),
    ("Other Geographic Designation", ""),
    ("County/Parish Code", ""),
    ("Census Tract", ""),
    ("Address Representation Code", ""),
    ("Address Validity Range", ""),
    ("Effective Date", "TS"),
    ("Expiration Date", "TS"),
];

const SAD: Components = &[
    ("Street or Mailing Address", ""),
    ("Street Name", ""),
    ("Dwelling Number", ""),
];

const XTN: Components = &[
    ("Telephone Number", ""),
    ("Telecommunication Use Code", ""),
    ("Telecommunication Equipment Type", ""),
    ("Email Address", ""),
    ("Country Code", ""),
    ("Area/City Code", ""),
    ("Local Number", ""),
    ("Extension", ""),
    ("Any Text", ""),
    ("Extension Prefix", ""),
    ("Speed Dial Code", ""),
    ("Unformatted Telephone Number", ""),
];

const XON: Components = &[
    ("Organization Name", ""),
    ("Organization Name Type Code", ""),
    ("ID Number", ""),
    ("Check Digit", ""),
    ("Check Digit Scheme", ""),
    ("Assigning Authority", "HD"),
    ("Identifier Type Code", ""),
    ("Assigning Facility", "HD"),
    ("Name Representation Code", ""),
    ("Organization Identifier", ""),
];

const PT: Components = &[("Processing ID", ""), ("Processing Mode", "")];

const VID: Components = &[
    ("Version ID", ""),
    ("Internationalization Code", "CE"),
    ("International Version ID", "CE"),
];

const SN: Components = &[
    ("Comparator", ""),
    ("Num1", ""),
    ("Separator/Suffix", ""),
    ("Num2", ""),
];

const CQ: Components = &[("Quantity", ""), ("Units", "CE")];

const FC: Components = &[("Financial Class Code", ""), ("Effective Date", "TS")];

const DLD: Components = &[("Discharge to Location", ""), ("Effective Date", "TS")];

const DLN: Components = &[
    ("License Number", ""),
    ("Issuing State, Province, Country", ""),
    ("Expiration Date", "DT"),
];

const PRL: Components = &[
    ("Parent Observation Identifier", "CE"),
    ("Parent Observation Sub-identifier", ""),
    ("Parent Observation Value Descriptor", ""),
];

const NDL: Components = &[
    ("Name", "CNN"),
    ("Start Date/Time", "TS"),
    ("End Date/Time", "TS"),
    ("Point of Care", ""),
    ("Room", ""),
    ("Bed", ""),
    ("Facility", "HD"),
    ("Location Status", ""),
    ("Patient Location Type", ""),
    ("Building", ""),
    ("Floor", ""),
];

const CNN: Components = &[
    ("ID Number", ""),
    ("Family Name", ""),
    ("Given Name", ""),
    ("Second and Further Given Names or Initials Thereof", ""),
    ("Suffix", ""),
    ("Prefix", ""),
    ("Degree", ""),
    ("Source Table", ""),
    ("Assigning Authority - Namespace ID", ""),
    ("Assigning Authority - Universal ID", ""),
    ("Assigning Authority - Universal ID Type", ""),
];

const SPS: Components = &[
    ("Specimen Source Name or Code", "CWE"),
    ("Additives", "CWE"),
    ("Specimen Collection Method", ""),
    ("Body Site", "CWE"),
    ("Site Modifier", "CWE"),
    ("Collection Method Modifier Code", "CWE"),
    ("Specimen Role", "CWE"),
];

/// Component `n` (1-based) of a composite data type: (name, data type).
pub fn component(data_type: &str, n: usize) -> Option<(&'static str, &'static str)> {
    let table = match data_type {
        "CX" => CX,
        "XPN" => XPN,
        "FN" => FN,
        "XCN" => XCN,
        "CWE" | "CE" | "CNE" => CWE,
        "HD" => HD,
        "PL" => PL,
        "MSG" => MSG,
        "TS" => TS,
        "EI" => EI,
        "EIP" => EIP,
        "XAD" => XAD,
        "SAD" => SAD,
        "XTN" => XTN,
        "XON" => XON,
        "PT" => PT,
        "VID" => VID,
        "SN" => SN,
        "CQ" => CQ,
        "FC" => FC,
        "DLD" => DLD,
        "DLN" => DLN,
        "PRL" => PRL,
        "NDL" => NDL,
        "CNN" => CNN,
        "SPS" => SPS,
        _ => return None,
    };
    let (name, ty) = table.get(n.checked_sub(1)?)?;
    // CE has only the first six CWE components.
    if data_type == "CE" && n > 6 {
        return None;
    }
    Some((name, ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_v251_tables() {
        assert_eq!(field("PID", 5), Some(("Patient Name", "XPN")));
        assert_eq!(field("MSH", 10), Some(("Message Control ID", "ST")));
        assert_eq!(field("OBX", 5).map(|f| f.0), Some("Observation Value"));
        assert_eq!(field("PID", 0), None);
        assert_eq!(field("ZPI", 1), None);
        assert_eq!(component("CX", 4), Some(("Assigning Authority", "HD")));
        assert_eq!(component("CE", 9), None);
        assert_eq!(component("CWE", 9).map(|c| c.0), Some("Original Text"));
    }
}
