//! HL7 v2 messages the project does not have, built from the IG tables
//! alone: every field a segment map's row maps (for the segments measured)
//! is valued, most of the time, with a value of the row's v2 data type,
//! composed per the data type's table under `datatypes/` (components, and
//! their components as subcomponents), with coded values drawn from the
//! concept maps under `codesystems/` that the rows name. A field is left
//! empty now and then, and repeats sometimes, so the IG's alternative
//! conditional rows (`IF OBR-8 VALUED` / `NOT VALUED`) are both exercised.
//!
//! Seeded: the same seed gives the same messages.

use std::collections::BTreeMap;

use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};

use super::{concept_map, ig_dir, raw_table, Row};

/// The message shapes generated.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    AdtA01,
    AdtA08,
    /// A merge: one or two PID/MRG pairs.
    AdtA40,
    /// Up to three order groups, each with OBX and SPM.
    OruR01,
    /// Two order groups.
    OrmO01,
}

pub const KINDS: &[Kind] = &[
    Kind::AdtA01,
    Kind::AdtA08,
    Kind::AdtA40,
    Kind::OruR01,
    Kind::OrmO01,
];

/// A field some IG row maps, with what its rows say about it.
#[derive(Clone, Debug)]
struct Field {
    number: usize,
    datatype: String,
    datatype_map: String,
    vocabulary: String,
    repeats: bool,
}

/// A component of a data type: its v2 type and the concept map it uses.
#[derive(Clone, Debug)]
struct Component {
    datatype: String,
    vocabulary: String,
}

pub struct Generator {
    rng: TestRng,
    fields: BTreeMap<String, Vec<Field>>,
    datatypes: BTreeMap<String, Vec<Component>>,
    codes: BTreeMap<String, Vec<(String, String)>>,
    count: usize,
}

/// Fields that stay valued whatever the draw: without them the message
/// means nothing (no patient key, no observation code or type).
const ALWAYS: &[&str] = &[
    "PID-3", "OBX-2", "OBX-3", "OBX-5", "OBX-11", "OBR-4", "ORC-1", "SPM-4",
];

/// How often a mapped field is left empty.
const EMPTY_ONE_IN: u64 = 6;

/// OBX-2 value types drawn, each with the OBX-5 it shapes.
const VALUE_TYPES: &[&str] = &["NM", "ST", "TX", "FT", "CWE", "CE", "SN", "DTM", "DT", "TM"];

impl Generator {
    /// `maps` are the segment maps measured: (segment, rows).
    pub fn new(seed: u64, maps: &[(&str, &[Row])]) -> Generator {
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let mut fields: BTreeMap<String, Vec<Field>> = BTreeMap::new();
        for (segment, rows) in maps {
            let list = fields.entry(segment.to_string()).or_default();
            for row in rows.iter() {
                let Some(number) = field_number(&row.field) else {
                    continue;
                };
                match list.iter_mut().find(|f| f.number == number) {
                    Some(f) => {
                        if f.vocabulary.is_empty() {
                            f.vocabulary = row.vocabulary.clone();
                        }
                        if f.datatype_map.is_empty() {
                            f.datatype_map = row.datatype_map.clone();
                        }
                    }
                    None => list.push(Field {
                        number,
                        // A row about a component (OBR-15.1) names the
                        // component's type; the field's is on its other rows.
                        datatype: if row.field.contains('.') {
                            String::new()
                        } else {
                            row.datatype.clone()
                        },
                        datatype_map: row.datatype_map.clone(),
                        vocabulary: row.vocabulary.clone(),
                        repeats: row.repeats,
                    }),
                }
            }
        }
        Generator {
            rng: TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
            fields,
            datatypes: BTreeMap::new(),
            codes: BTreeMap::new(),
            count: 0,
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// One message of the given shape, `\r`-separated.
    pub fn message(&mut self, kind: Kind) -> Vec<u8> {
        self.count += 1;
        let (ty, event, structure) = match kind {
            Kind::AdtA01 => ("ADT", "A01", "ADT_A01"),
            Kind::AdtA08 => ("ADT", "A08", "ADT_A01"),
            Kind::AdtA40 => ("ADT", "A40", "ADT_A39"),
            Kind::OruR01 => ("ORU", "R01", "ORU_R01"),
            Kind::OrmO01 => ("ORM", "O01", "ORM_O01"),
        };
        let now = self.timestamp();
        let mut segs = vec![format!(
            "MSH|^~\\&|GENAPP|GENFAC|HL7BRIDGE|TEST|{now}||{ty}^{event}^{structure}|GEN{:05}|P|2.5.1",
            self.count
        )];
        if ty == "ADT" {
            segs.push(format!("EVN|{event}|{now}"));
        }
        match kind {
            Kind::AdtA01 | Kind::AdtA08 => {
                segs.push(self.segment("PID", &[]));
                segs.push(self.segment("PD1", &[]));
                segs.push(self.segment("PV1", &[]));
                segs.push(self.segment("PV2", &[]));
            }
            Kind::AdtA40 => {
                for _ in 0..1 + self.below(2) {
                    segs.push(self.segment("PID", &[]));
                    if self.chance(2) {
                        segs.push(self.segment("PD1", &[]));
                    }
                    let prior = self.field_value("CX", "CX[Identifier]", "", 0);
                    segs.push(format!("MRG|{prior}"));
                }
            }
            Kind::OruR01 => {
                segs.push(self.segment("PID", &[]));
                segs.push(self.segment("PV1", &[]));
                for _ in 0..1 + self.below(3) {
                    if !self.chance(3) {
                        segs.push(self.segment("ORC", &[(1, "RE")]));
                    }
                    segs.push(self.segment("OBR", &[]));
                    for _ in 0..1 + self.below(4) {
                        segs.push(self.obx());
                    }
                    for _ in 0..self.below(3) {
                        segs.push(self.segment("SPM", &[]));
                    }
                }
            }
            Kind::OrmO01 => {
                segs.push(self.segment("PID", &[]));
                segs.push(self.segment("PV1", &[]));
                for _ in 0..2 {
                    // A new order half of the time: ORC-9 is its authoring time.
                    let control = if self.chance(2) { "NW" } else { "" };
                    let orc = if control.is_empty() {
                        self.segment("ORC", &[])
                    } else {
                        self.segment("ORC", &[(1, control)])
                    };
                    segs.push(orc);
                    segs.push(self.segment("TQ1", &[]));
                    segs.push(self.segment("OBR", &[]));
                    for _ in 0..self.below(3) {
                        segs.push(self.segment("NTE", &[]));
                    }
                    if self.chance(2) {
                        segs.push(self.obx());
                    }
                }
            }
        }
        let mut text = segs.join("\r");
        text.push('\r');
        text.into_bytes()
    }

    /// An OBX whose OBX-5 has the type OBX-2 names.
    fn obx(&mut self) -> String {
        let value_type = self.pick(VALUE_TYPES);
        let value = match value_type {
            "SN" => {
                let comparator = self.pick(&["", ">", "<", ">=", "<="]);
                let n = 1 + self.below(500);
                match self.pick(&["", "-", ":", "/", "+"]) {
                    "" => format!("{comparator}^{n}"),
                    sep => format!("^{n}^{sep}^{}", n + 1 + self.below(50)),
                }
            }
            "NM" => format!("{}.{}", self.below(300), self.below(100)),
            dt => self.field_value(dt, "", "", 0),
        };
        self.segment("OBX", &[(2, value_type), (5, &value)])
    }

    /// A segment with every mapped field valued (bar the odd one), and
    /// `fixed` fields as given.
    fn segment(&mut self, name: &str, fixed: &[(usize, &str)]) -> String {
        let fields = self.fields.get(name).cloned().unwrap_or_default();
        let last = fields
            .iter()
            .map(|f| f.number)
            .chain(fixed.iter().map(|f| f.0))
            .max()
            .unwrap_or(1);
        let mut values = vec![String::new(); last + 1];
        values[0] = name.to_owned();
        for f in &fields {
            let always = ALWAYS.contains(&format!("{name}-{}", f.number).as_str());
            if !always && self.chance(EMPTY_ONE_IN) {
                continue;
            }
            let datatype = if f.datatype.is_empty() {
                "ST"
            } else {
                &f.datatype
            };
            let reps = if f.repeats && self.chance(3) { 2 } else { 1 };
            values[f.number] = (0..reps)
                .map(|_| self.field_value(datatype, &f.datatype_map, &f.vocabulary, 0))
                .collect::<Vec<_>>()
                .join("~");
        }
        for &(n, v) in fixed {
            values[n] = v.to_owned();
        }
        values.join("|")
    }

    /// A value of a v2 data type: a primitive, or its components per its
    /// table (subcomponents one level down, primitives below that).
    fn field_value(&mut self, datatype: &str, map: &str, vocabulary: &str, depth: usize) -> String {
        let components = if is_primitive(datatype) || depth >= 2 {
            Vec::new()
        } else {
            self.components(datatype, map)
        };
        if components.is_empty() {
            return self.primitive(datatype, vocabulary);
        }
        let separator = if depth == 0 { '^' } else { '&' };
        let coded = matches!(datatype, "CWE" | "CE" | "CNE" | "CF");
        let (code, system) = self.code(vocabulary);
        let mut parts: Vec<String> = Vec::new();
        for (k, c) in components.iter().enumerate() {
            let value = match (coded, k) {
                (true, 0) => code.clone().unwrap_or_else(|| self.word()),
                (true, 1) => self.word(),
                (true, 2) => system
                    .clone()
                    .unwrap_or_else(|| self.pick(&["LN", "SCT", "L", "99ZZZ"]).to_owned()),
                (true, _) => String::new(),
                // The first component carries the meaning; the rest, mostly.
                _ if k == 0 || self.below(10) < 7 => {
                    self.field_value(&c.datatype, "", &c.vocabulary, depth + 1)
                }
                _ => String::new(),
            };
            parts.push(value);
        }
        while parts.last().is_some_and(String::is_empty) {
            parts.pop();
        }
        parts.join(&separator.to_string())
    }

    fn primitive(&mut self, datatype: &str, vocabulary: &str) -> String {
        if let (Some(code), _) = self.code(vocabulary) {
            return code;
        }
        match datatype {
            "DTM" | "TS" => self.timestamp(),
            "DT" => self.timestamp()[..8].to_owned(),
            "TM" => format!("{:02}{:02}", self.below(24), self.below(60)),
            "NM" => (1 + self.below(9)).to_string(),
            "SI" => (1 + self.below(4)).to_string(),
            "ID" | "IS" => {
                let n = 1 + self.below(2) as usize;
                (0..n)
                    .map(|_| char::from(b'A' + self.below(26) as u8))
                    .collect()
            }
            _ => self.word(),
        }
    }

    /// A timestamp to the day (one in four) or to the second, sometimes
    /// with an offset.
    fn timestamp(&mut self) -> String {
        let day = format!(
            "20{:02}{:02}{:02}",
            10 + self.below(16),
            1 + self.below(12),
            1 + self.below(28)
        );
        if self.chance(4) {
            return day;
        }
        let time = format!(
            "{day}{:02}{:02}{:02}",
            self.below(24),
            self.below(60),
            self.below(60)
        );
        match self.below(3) {
            0 => format!("{time}-0500"),
            1 => format!("{time}+0100"),
            _ => time,
        }
    }

    fn word(&mut self) -> String {
        const SYLLABLES: &[&str] = &["al", "be", "co", "da", "ep", "fi", "go", "ha", "ix", "ju"];
        let n = 2 + self.below(3);
        let mut w: String = (0..n).map(|_| self.pick(SYLLABLES)).collect();
        w.push_str(&self.below(100).to_string());
        w
    }

    /// A code of the concept map `vocabulary` names, with its code system.
    fn code(&mut self, vocabulary: &str) -> (Option<String>, Option<String>) {
        if vocabulary.is_empty() {
            return (None, None);
        }
        if !self.codes.contains_key(vocabulary) {
            let codes = concept_map_codes(vocabulary);
            self.codes.insert(vocabulary.to_owned(), codes);
        }
        let codes = &self.codes[vocabulary];
        if codes.is_empty() {
            return (None, None);
        }
        let at = self.below(codes.len() as u64) as usize;
        let (code, system) = self.codes[vocabulary][at].clone();
        (Some(code), (!system.is_empty()).then_some(system))
    }

    /// A data type's components, from the map the row names (`CX[Identifier]`)
    /// or else any map of that data type.
    fn components(&mut self, datatype: &str, map: &str) -> Vec<Component> {
        let key = format!("{datatype}|{map}");
        if let Some(c) = self.datatypes.get(&key) {
            return c.clone();
        }
        let dir = ig_dir().join("datatypes");
        let named = format!("{map}.csv");
        let file = if !map.is_empty() && dir.join(&named).is_file() {
            Some(named)
        } else {
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.starts_with(&format!("{datatype}[")))
                .collect();
            files.sort();
            files.into_iter().next()
        };
        let mut components: Vec<Component> = Vec::new();
        if let Some(file) = file {
            let prefix = format!("{datatype}.");
            for r in raw_table(&format!("datatypes/{file}")).into_iter().skip(2) {
                let id = r.get(1).map(|s| s.trim()).unwrap_or("");
                let Some(n) = id
                    .strip_prefix(&prefix)
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                if n == 0 || n > 30 {
                    continue;
                }
                while components.len() < n {
                    components.push(Component {
                        datatype: "ST".to_owned(),
                        vocabulary: String::new(),
                    });
                }
                let c = &mut components[n - 1];
                let dt = r.get(3).map(|s| s.trim()).unwrap_or("");
                if !dt.is_empty() {
                    c.datatype = dt.to_owned();
                }
                let vocab = r.get(15).map(|s| s.trim()).unwrap_or("");
                if c.vocabulary.is_empty() && !vocab.is_empty() {
                    c.vocabulary = vocab.to_owned();
                }
            }
        }
        self.datatypes.insert(key, components.clone());
        components
    }
}

/// `PID-7` or `OBR-15.1`: the field number.
fn field_number(field: &str) -> Option<usize> {
    let (_, n) = field.split_once('-')?;
    n.split('.').next()?.parse().ok()
}

fn is_primitive(datatype: &str) -> bool {
    matches!(
        datatype,
        "ST" | "TX"
            | "FT"
            | "ID"
            | "IS"
            | "NM"
            | "SI"
            | "DT"
            | "DTM"
            | "TM"
            | "TS"
            | "GTS"
            | "SNM"
            | "NUL"
            | ""
    )
}

/// The v2 codes (and v2 code system) of a concept map, as a sender would
/// send them: letters, digits, `-`, `.` and `_`.
fn concept_map_codes(vocabulary: &str) -> Vec<(String, String)> {
    concept_map(vocabulary)
        .into_iter()
        .filter(|c| {
            c.v2.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_'))
        })
        .map(|c| (c.v2, c.system))
        .collect()
}
