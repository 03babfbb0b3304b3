//! An IG "FHIR Attribute" (`performer[2](Organization.identifier)`,
//! `birthDate.extension[1].valueDateTime`) as steps through a resource's
//! FHIR JSON, and whether a resource carries it.

use serde_json::Value;

/// An IG "FHIR Attribute" as steps through the resource's JSON.
#[derive(Debug)]
pub struct Target {
    steps: Vec<Step>,
    /// `status="finished"`: the value the attribute itself assigns.
    value: Option<String>,
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
                    if DATATYPES.contains(&rt.as_str()) {
                        // `note(Annotation.text)`: a datatype, not a reference.
                        steps.push(Step::plain(std::mem::take(&mut name)));
                        steps.extend(
                            of.split('.')
                                .filter(|s| !s.is_empty())
                                .map(|s| Step::plain(s.to_owned())),
                        );
                    } else {
                        steps.push(Step {
                            name: std::mem::take(&mut name),
                            reference_to: Some(rt),
                            of,
                        });
                    }
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
        Target { steps, value }
    }

    /// The path up to each of its `extension` steps, indices dropped:
    /// `extension[4].extension[1].valueCodeableConcept` has `extension`
    /// and `extension.extension`. The row that assigns the URL of the
    /// n-th is the row whose path is the n-th plus `.url`.
    pub fn extension_prefixes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut path = String::new();
        for step in &self.steps {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&step.name);
            if step.name == "extension" {
                out.push(path.clone());
            }
        }
        out
    }

    /// The path without indices or assigned value (`extension.url`).
    pub fn plain_path(&self) -> String {
        self.steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(".")
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

/// FHIR datatypes the IG writes in parentheses like a referenced resource.
const DATATYPES: &[&str] = &["Annotation"];

/// Whether the target is in `resource`: the n-th extension step keeps only
/// the extensions with `urls[n]` (when known); a reference step only
/// references to its type (literal or logical) that carry the named
/// element; the last values must include `assigned` when they are text.
pub fn resolve(resource: &Value, target: &Target, urls: &[Option<String>], assigned: &str) -> bool {
    let mut nodes = vec![resource];
    let mut extension_step = 0;
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
            if let Some(Some(url)) = urls.get(extension_step) {
                found.retain(|e| e["url"] == url.as_str());
            }
            extension_step += 1;
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
