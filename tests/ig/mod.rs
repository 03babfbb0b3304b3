//! Reading the IG's segment maps and the fixtures for tests/ig_coverage.rs:
//! the CSV rows, a v2 message's fields and the rows' conditions, and an IG
//! "FHIR Attribute" looked up in a mapped resource.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `../shared/reference/v2-to-fhir` beside the checkout (as in CI).
pub fn ig_dir() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/v2-to-fhir");
    assert!(
        p.join("segments").is_dir(),
        "the IG tables are expected beside the checkout at {}",
        p.display()
    );
    p
}

/// One row of a segment map.
#[derive(Debug, Clone)]
pub struct Row {
    /// `PV1-3`.
    pub field: String,
    /// "Computable ANTLR" condition, `""` when unconditional.
    pub condition: String,
    /// "FHIR Attribute", or the proposed-extension column when that is empty.
    pub attribute: String,
    /// "Assignment", without the IG's surrounding quotes.
    pub assignment: String,
    comment: String,
}

impl Row {
    /// The URL an extension's `url` row assigns (OBX-19 has it in the comment column).
    pub fn url_assignment(&self) -> &str {
        if self.assignment.is_empty() && self.comment.starts_with("http") {
            &self.comment
        } else {
            &self.assignment
        }
    }
}

/// The rows of `segments/<file>` that map a field somewhere.
pub fn segment_map(file: &str) -> Vec<Row> {
    let text = std::fs::read_to_string(ig_dir().join("segments").join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let unquote = |s: &str| {
        let s = s.trim();
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
            .trim()
            .to_owned()
    };
    csv_records(&text)
        .into_iter()
        .skip(2) // two header rows
        .filter_map(|r| {
            let col = |i: usize| r.get(i).map(|s| s.trim()).unwrap_or("");
            let attribute = if col(9).is_empty() { col(10) } else { col(9) };
            (!col(1).is_empty() && !attribute.is_empty()).then(|| Row {
                field: col(1).to_owned(),
                condition: col(6).to_owned(),
                attribute: attribute.to_owned(),
                assignment: unquote(col(16)),
                comment: unquote(col(18)),
            })
        })
        .collect()
}

/// RFC 4180 records: quoted fields may hold commas, quotes (`""`) and newlines.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// Every message of every fixture, by file name.
pub fn fixture_messages() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            hl7bridge::hl7::split::split(&std::fs::read(p).unwrap())
                .into_iter()
                .map(move |m| (name.clone(), m.to_vec()))
        })
        .collect()
}

/// A message's segments, split on the delimiters its MSH declares.
pub struct Message {
    segments: Vec<Vec<String>>,
    rep: char,
    comp: char,
    delimiters: String,
}

impl Message {
    pub fn parse(raw: &[u8]) -> Message {
        let text = String::from_utf8_lossy(raw);
        let msh = text.find("MSH").expect("a message starts with MSH");
        let mut enc = text[msh + 3..].chars();
        let sep = enc.next().unwrap();
        let delimiters: String = enc.take_while(|&c| c != sep).collect();
        let mut d = delimiters.chars();
        let (comp, rep) = (d.next().unwrap_or('^'), d.next().unwrap_or('~'));
        let segments = text[msh..]
            .split(['\r', '\n'])
            .filter(|s| s.len() > 3)
            .map(|s| {
                let mut fields: Vec<String> = s.split(sep).map(str::to_owned).collect();
                if fields[0] == "MSH" {
                    fields.insert(1, sep.to_string());
                }
                fields
            })
            .collect();
        Message {
            segments,
            rep,
            comp,
            delimiters: format!("{sep}{delimiters}"),
        }
    }

    pub fn segments<'m>(&'m self, name: &'m str) -> impl Iterator<Item = Segment<'m>> + 'm {
        self.segments
            .iter()
            .filter(move |f| f[0] == name)
            .map(move |fields| Segment { fields, msg: self })
    }
}

pub struct Segment<'m> {
    fields: &'m [String],
    msg: &'m Message,
}

impl Segment<'_> {
    /// `PV1-3` (every repetition) or `PV1-2.1` (of the first repetition).
    fn value(&self, spec: &str) -> String {
        let (_, number) = spec.split_once('-').expect("a field like PV1-3");
        let (field, component) = match number.split_once('.') {
            Some((f, c)) => (f, Some(c.parse::<usize>().unwrap())),
            None => (number, None),
        };
        let raw = self
            .fields
            .get(field.parse::<usize>().unwrap())
            .map(String::as_str)
            .unwrap_or("");
        match component {
            None => raw.to_owned(),
            Some(c) => raw
                .split(self.msg.rep)
                .next()
                .unwrap_or("")
                .split(self.msg.comp)
                .nth(c - 1)
                .unwrap_or("")
                .trim()
                .to_owned(),
        }
    }

    /// Sent with some text: not empty, not only delimiters, not the v2 null `""`.
    pub fn valued(&self, spec: &str) -> bool {
        let v = self.value(spec);
        v.trim() != "\"\""
            && v.chars()
                .any(|c| !c.is_whitespace() && !self.msg.delimiters.contains(c))
    }

    fn repetitions(&self, spec: &str) -> usize {
        self.value(spec)
            .split(self.msg.rep)
            .filter(|r| r.chars().any(|c| !self.msg.delimiters.contains(c)))
            .count()
    }

    /// The IG's condition on this segment; `Some(true)` when there is none.
    /// A form this reader does not know fails the test, so no row is skipped
    /// unnoticed.
    pub fn condition(&self, cond: &str) -> Option<bool> {
        let cond = cond.replace(['(', ')'], " ");
        let words: Vec<&str> = cond.split_whitespace().filter(|w| *w != "IF").collect();
        if words.is_empty() {
            return Some(true);
        }
        let cond = words.join(" ");
        let result = cond
            .split(" AND ")
            .map(|conjunct| {
                // `PV1-3.2 OR PV1-3.3 VALUED`: the predicate is written once.
                let parts: Vec<&str> = conjunct.split(" OR ").collect();
                let last = parts.last().unwrap();
                let predicate = last.split_once(' ').map_or("", |(_, p)| p);
                parts.iter().try_fold(false, |any, p| {
                    let field = p.split_whitespace().next().unwrap_or("");
                    Some(any || self.atom(field, predicate)?)
                })
            })
            .try_fold(true, |all, c| Some(all && c?));
        assert!(
            result.is_some(),
            "cannot evaluate the IG condition {cond:?}"
        );
        result
    }

    fn atom(&self, field: &str, predicate: &str) -> Option<bool> {
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(|v| v.trim().trim_matches('"').to_ascii_uppercase())
                .collect()
        };
        let v = self.value(field);
        let first = v
            .split(self.msg.rep)
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase();
        let p = predicate.trim();
        Some(if p == "VALUED" {
            self.valued(field)
        } else if p == "NOT VALUED" {
            !self.valued(field)
        } else if let Some(x) = p.strip_prefix("NOT EQUALS ") {
            !list(x).contains(&first)
        } else if let Some(x) = p.strip_prefix("EQUALS ").or(p.strip_prefix("IS ")) {
            list(x).contains(&first)
        } else if let Some(x) = p.strip_prefix("NOT IN ") {
            !list(x).contains(&first)
        } else if let Some(x) = p.strip_prefix("IN ") {
            list(x).contains(&first)
        } else if let Some(n) = p.strip_prefix("COUNT>") {
            self.repetitions(field) > n.trim().parse::<usize>().ok()?
        } else if let Some(n) = p.strip_prefix("COUNT=") {
            self.repetitions(field) == n.trim().parse::<usize>().ok()?
        } else {
            return None;
        })
    }
}

/// An IG "FHIR Attribute" as steps through the resource's JSON.
#[derive(Debug)]
pub struct Target {
    steps: Vec<Step>,
    /// `status="finished"`: the value the attribute itself assigns.
    value: Option<String>,
    raw: String,
}

#[derive(Debug)]
struct Step {
    name: String,
    /// `performer[2](Organization)`: a reference to this resource type...
    reference_to: Option<String>,
    /// ...and the element of that resource the row names (`identifier`).
    of: String,
}

impl Target {
    pub fn parse(attribute: &str) -> Target {
        let (path, value) = match attribute.split_once('=') {
            Some((p, v)) => (p, Some(v.trim().trim_matches('"').to_owned())),
            None => (attribute, None),
        };
        let mut steps = Vec::new();
        let mut chars = path.trim().chars().peekable();
        let mut name = String::new();
        while let Some(c) = chars.next() {
            match c {
                '[' => {
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                    }
                }
                '(' => {
                    let mut depth = 1;
                    let mut group = String::new();
                    for c in chars.by_ref() {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        if depth == 0 {
                            break;
                        }
                        group.push(c);
                    }
                    let (rt, of) = reference_target(&group);
                    steps.push(Step {
                        name: std::mem::take(&mut name),
                        reference_to: Some(rt),
                        of,
                    });
                }
                '.' if !name.is_empty() => steps.push(Step::plain(std::mem::take(&mut name))),
                '.' => {}
                c if !c.is_whitespace() => name.push(c),
                _ => {}
            }
        }
        if !name.is_empty() {
            steps.push(Step::plain(name));
        }
        Target {
            steps,
            value,
            raw: path.trim().to_owned(),
        }
    }

    /// `location[3].extension` of `location[3].extension.url`: which extension a row is about.
    pub fn extension_prefix(&self) -> Option<String> {
        let at = self.raw.find("extension")?;
        let end = self.raw[at..]
            .find(['.', '('])
            .map_or(self.raw.len(), |e| at + e);
        Some(self.raw[..end].to_owned())
    }

    pub fn is_extension_url(&self) -> bool {
        let n = self.steps.len();
        n >= 2
            && self.steps[n - 2].name == "extension"
            && matches!(self.steps[n - 1].name.as_str(), "url" | "uri")
    }
}

impl Step {
    fn plain(name: String) -> Step {
        // IG typo: `uri` for an extension's `url`.
        let name = if name == "uri" {
            "url".to_owned()
        } else {
            name
        };
        Step {
            name,
            reference_to: None,
            of: String::new(),
        }
    }
}

/// The resource a reference group names, and the element of it: the
/// innermost group wins (`PractitionerRole[1].organization(Organization)`
/// is a reference to the Organization), and a PractitionerRole's
/// practitioner is the Practitioner.
fn reference_target(group: &str) -> (String, String) {
    if let (Some(open), Some(close)) = (group.find('('), group.rfind(')')) {
        return reference_target(&group[open + 1..close]);
    }
    let clean: String = {
        let mut s = String::new();
        let mut skip = false;
        for c in group.chars() {
            match c {
                '[' => skip = true,
                ']' => skip = false,
                c if !skip => s.push(c),
                _ => {}
            }
        }
        s
    };
    let (rt, of) = clean.split_once('.').unwrap_or((&clean, ""));
    match (rt, of) {
        ("PractitionerRole", "practitioner") => ("Practitioner".to_owned(), String::new()),
        _ => (rt.to_owned(), of.to_owned()),
    }
}

/// Whether the target is in `resource`: an extension step keeps only the
/// extension with `url`; a reference step only references to its type
/// (literal or logical) that carry the named element; the last values must
/// include `assigned` when they are text.
pub fn resolve(resource: &Value, target: &Target, url: Option<&str>, assigned: &str) -> bool {
    let mut nodes = vec![resource];
    for (i, step) in target.steps.iter().enumerate() {
        let next_is_extension = target
            .steps
            .get(i + 1)
            .is_some_and(|s| s.name == "extension");
        let mut found = Vec::new();
        for node in &nodes {
            // A repeating OBX-5 is components, each with the value[x].
            if i == 0 && step.name.starts_with("value") && node.get(&step.name).is_none() {
                for c in node["component"].as_array().into_iter().flatten() {
                    found.extend(c.get(&step.name));
                }
                continue;
            }
            let member = match node.get(&step.name) {
                // A primitive's extensions are in `_name` (FHIR JSON).
                Some(Value::String(_)) if next_is_extension => node.get(format!("_{}", step.name)),
                m => m,
            };
            let Some(member) = member else { continue };
            match member {
                Value::Array(items) => found.extend(items),
                v => found.push(v),
            }
        }
        if step.name == "extension" {
            if let Some(url) = url {
                found.retain(|e| e["url"] == url);
            }
        }
        if let Some(rt) = &step.reference_to {
            found.retain(|r| {
                let to_type = r["type"] == rt.as_str()
                    || r["reference"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(&format!("{rt}/")));
                to_type && (step.of.is_empty() || r.get(&step.of).is_some())
            });
        }
        nodes = found;
    }
    let expected = target.value.as_deref().unwrap_or(assigned);
    let texts: Vec<&str> = nodes.iter().filter_map(|v| v.as_str()).collect();
    !nodes.is_empty() && (expected.is_empty() || texts.is_empty() || texts.contains(&expected))
}
