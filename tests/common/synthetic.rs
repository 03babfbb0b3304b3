//! Synthetic messages built in code, shared by tests and benches
//! (benches/stage.rs includes this file by path).

/// A synthetic ORU^R01 (made-up data) reaching what no fixture does:
/// TM, NR, DTM with fraction and offset, decimals with trailing zeros,
/// repeating OBX-5 of every value type (components), a CWE with version,
/// second coding and original text, an XCN with an assigning authority, and
/// PV1-5 (pre-admission identifier), PV1-36 and PV1-45.
pub fn oru_every_value_type() -> Vec<u8> {
    let mut pv1 = vec![""; 46];
    pv1[0] = "PV1";
    pv1[1] = "1";
    pv1[2] = "I";
    pv1[3] = "4WEST^401^A^SYNTHHOSP";
    pv1[4] = "E";
    pv1[5] = "PRE90001^^^SYNTHHOSP^PA";
    pv1[7] = "12345^DOCTOR^ALPHA^^^DR^^^SYNTHHOSP";
    pv1[10] = "MED";
    pv1[14] = "7";
    pv1[19] = "V90001^^^SYNTHHOSP^VN";
    pv1[36] = "01^Discharged home";
    pv1[44] = "20261114200000";
    pv1[45] = "20261116093000";
    let obx = |n: usize, ty: &str, code: &str, value: &str, units: &str| {
        format!(
            "OBX|{n}|{ty}|{code}||{value}|{units}|1-2|H|||F|||20261115081500||55501^LABTECH^ALPHA^^^^^^SYNTHLAB"
        )
    };
    let segments = [
        "MSH|^~\\&|AVROTEST|SYNTHHOSP|HL7BRIDGE|INTEGRATION|20261115103000||ORU^R01^ORU_R01|FX-AVRO-1|P|2.5.1".to_owned(),
        "PID|1||MRN90001^^^SYNTHHOSP^MR||TESTPATIENT^AVRO".to_owned(),
        pv1.join("|"),
        // PV2-11: a length of stay whose text a double alone does not give back.
        "PV2|||||||||||2.50".to_owned(),
        "OBR|1|PLC90001|FIL90001|11502-2^Laboratory report^LN||20261115070000|20261115081500".to_owned(),
        obx(1, "NM", "2345-7^Glucose^LN", "1.50", "mmol/L^mmol/L^UCUM"),
        "NTE|1|L|Synthetic note.".to_owned(),
        obx(2, "NM", "1988-5^CRP^LN", "0.000120", "g/L^g/L^UCUM"),
        obx(3, "TM", "X-TM^Time^L", "0830", ""),
        obx(4, "NR", "X-NR^Range^L", "1.5^3.25", "mg/L^mg/L^UCUM"),
        obx(5, "DTM", "X-DTM^Instant^L", "20261115081530.25-0500", ""),
        obx(
            6,
            "CWE",
            "X-CWE^Coded^L",
            "C1^Code one^SCT^ALT1^Alternate^L^2026-01^v2^Original text",
            "",
        ),
        obx(7, "NM", "X-NMR^Repeated NM^L", "1.0~2.50", "mg/L^mg/L^UCUM"),
        obx(8, "CWE", "X-CWER^Repeated CWE^L", "C1^One^SCT~C2^Two^SCT", ""),
        obx(9, "ST", "X-STR^Repeated ST^L", "one~two", ""),
        obx(10, "SN", "X-SNR^Repeated SN range^L", "^1^-^5~^2^-^6", ""),
        obx(11, "SN", "X-SNQ^Repeated SN ratio^L", "^1^:^160~^1.5^:^320.0", ""),
        obx(12, "TM", "X-TMR^Repeated TM^L", "0830~091500", ""),
        obx(13, "DT", "X-DTR^Repeated DT^L", "2026~202611", ""),
        // More digits than a double holds: kept as the exact text.
        obx(14, "NM", "X-NMX^Exact NM^L", "12345678901234567890.5", "1^1^UCUM"),
    ];
    let mut out = segments.join("\r");
    out.push('\r');
    out.into_bytes()
}

/// Synthetic orders and a report (made-up data) reaching what no fixture
/// does: a TQ1 with every timing element (repeat pattern, times of day,
/// offset, duration, occurrence duration, total occurrences), the order's
/// callback phone and control reason, and a report's control reason.
// benches/stage.rs includes this file and uses only the ORU.
#[allow(dead_code)]
pub fn orders_every_timing() -> Vec<Vec<u8>> {
    let orm = "MSH|^~\\&|ORD|SYNTHHOSP|B|G|20261116090000||ORM^O01|SYN-ORM-1|P|2.5.1\r\
PID|||SYN1^^^SYNTHHOSP^MR\r\
ORC|NW|PL91|||||||20261116090000|||||^PRN^PH^^1^555^7654321||REASON^Changed^L\r\
TQ1|1||Q6H&Every 6 hours&HL70335|0800~1400|30^min|2^h|||||||45^min|4\r\
OBR|1|PL91||X^Panel^L||20261116120000\r";
    let oru = "MSH|^~\\&|LAB|SYNTHHOSP|B|G|20261116090000||ORU^R01|SYN-ORU-2|P|2.5.1\r\
PID|||SYN1^^^SYNTHHOSP^MR\r\
ORC|RE|PL92|FI92|||||||||||||REASON^Changed^L\r\
OBR|1|PL92|FI92|X^Panel^L\r\
OBX|1|NM|Y^Num^L||5||||||F\r";
    vec![orm.as_bytes().to_vec(), oru.as_bytes().to_vec()]
}
