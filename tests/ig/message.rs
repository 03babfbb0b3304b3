//! A v2 message as the coverage test reads it, independently of the
//! bridge's parser: segments split on the delimiters MSH declares, a
//! field's value by the IG's notation (`PID-11`, `PID-11.9`), and the IG's
//! "Computable ANTLR" conditions evaluated over a [`Scope`].

/// A message's segments, split on the delimiters its MSH declares.
pub struct Message {
    segments: Vec<Vec<String>>,
    rep: char,
    comp: char,
    sub: char,
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
        let sub = d.nth(1).unwrap_or('&');
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
            sub,
            delimiters: format!("{sep}{delimiters}"),
        }
    }

    /// Every segment, in message order.
    pub fn all(&self) -> impl Iterator<Item = Segment<'_>> + '_ {
        self.segments
            .iter()
            .map(move |fields| Segment { fields, msg: self })
    }
}

#[derive(Clone, Copy)]
pub struct Segment<'m> {
    fields: &'m [String],
    msg: &'m Message,
}

impl<'m> Segment<'m> {
    pub fn name(&self) -> &'m str {
        &self.fields[0]
    }

    /// Identity: two views of the same segment share their fields.
    pub fn fields_ptr(&self) -> *const String {
        self.fields.as_ptr()
    }

    /// Component `c` (its first subcomponent) of every repetition of a
    /// field, where valued: the numbers a resource's identifiers carry.
    pub fn component_values(&self, field: &str, c: usize) -> Vec<String> {
        self.value(field)
            .split(self.msg.rep)
            .filter_map(|rep| {
                let v = rep.split(self.msg.comp).nth(c - 1)?;
                let v = v.split(self.msg.sub).next()?.trim();
                (!v.is_empty() && v != "\"\"").then(|| v.to_owned())
            })
            .collect()
    }

    /// `PV1-3` (every repetition) or `PV1-2.1` (of the first repetition);
    /// `OBR` alone (a row about the segment as a whole) is its name.
    pub fn value(&self, spec: &str) -> String {
        let Some((_, number)) = spec.split_once('-') else {
            return self.name().to_owned();
        };
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

    /// The first repetition's first component, trimmed.
    pub fn first(&self, spec: &str) -> String {
        let v = self.value(spec);
        let rep = v.split(self.msg.rep).next().unwrap_or("");
        let first = if spec.contains('.') {
            rep
        } else {
            rep.split(self.msg.comp).next().unwrap_or("")
        };
        first.trim().to_owned()
    }

    /// Sent with some text: not empty, not only delimiters, not the v2 null `""`.
    pub fn valued(&self, spec: &str) -> bool {
        let v = self.value(spec);
        v.trim() != "\"\""
            && v.chars()
                .any(|c| !c.is_whitespace() && !self.msg.delimiters.contains(c))
    }

    pub fn repetitions(&self, spec: &str) -> usize {
        self.value(spec)
            .split(self.msg.rep)
            .filter(|r| r.chars().any(|c| !self.msg.delimiters.contains(c)))
            .count()
    }
}

/// The segment a row is about and the segments its conditions may name:
/// the rest of its group (an OBR's ORC, a PID's PD1) and MSH.
pub struct Scope<'m> {
    pub this: Segment<'m>,
    pub others: Vec<Segment<'m>>,
}

/// The condition forms the IG's segment maps for PID, PD1, PV1, PV2, OBX,
/// ORC, OBR, TQ1, NTE and SPM use, as they are written there.
#[derive(Debug, PartialEq)]
pub enum Unknown {
    Form(String),
}

impl<'m> Scope<'m> {
    /// The segment named by a field spec: this one, else the group's.
    fn segment(&self, spec: &str) -> Option<&Segment<'m>> {
        let name = spec.split(['-', '.']).next().unwrap_or("");
        std::iter::once(&self.this)
            .chain(&self.others)
            .find(|s| s.name() == name)
    }

    pub fn valued(&self, spec: &str) -> bool {
        self.segment(spec).is_some_and(|s| s.valued(spec))
    }

    /// The first repetition's first component (or the component named), upper case.
    pub fn first(&self, spec: &str) -> String {
        self.segment(spec)
            .map(|s| s.first(spec).to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// The IG's condition; `Ok(true)` when there is none. A form this
    /// reader does not know is an error, so no row is skipped unnoticed.
    ///
    /// Conjuncts are split on `AND`; a conjunct of fields joined by `OR`
    /// shares the predicate written after the last (`PV1-3.2 OR PV1-3.3
    /// VALUED`), and a bare field shares the next conjunct's (`TQ1-7 AND
    /// TQ1-8 NOT VALUED`).
    pub fn condition(&self, cond: &str) -> Result<bool, Unknown> {
        let cond = cond.replace(['(', ')'], " ");
        let words: Vec<String> = cond
            .split_whitespace()
            .filter(|w| !w.eq_ignore_ascii_case("IF"))
            .map(normalise_field)
            .collect();
        if words.is_empty() {
            return Ok(true);
        }
        let cond = words.join(" ");
        let mut pending: Vec<String> = Vec::new();
        let mut all = true;
        for conjunct in cond.split(" AND ") {
            let parts: Vec<&str> = conjunct.split(" OR ").collect();
            let last = parts.last().unwrap();
            let Some((_, predicate)) = last.split_once(' ') else {
                pending.push(last.to_string());
                continue;
            };
            let mut any = false;
            for p in &parts {
                let field = p.split_whitespace().next().unwrap_or("");
                any |= self.atom(field, predicate)?;
            }
            for field in pending.drain(..) {
                all &= self.atom(&field, predicate)?;
            }
            all &= any;
        }
        if !pending.is_empty() {
            return Err(Unknown::Form(cond));
        }
        Ok(all)
    }

    fn atom(&self, field: &str, predicate: &str) -> Result<bool, Unknown> {
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(|v| v.trim().trim_matches('"').to_ascii_uppercase())
                .collect()
        };
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| Unknown::Form(format!("{field} {predicate}")))
        };
        let first = self.first(field);
        let p = predicate.trim().to_ascii_uppercase();
        let p = p.as_str();
        Ok(match p {
            "VALUED" | "IS VALUED" => self.valued(field),
            "NOT VALUED" | "IS NOT VALUED" | "IS EMPTY" => !self.valued(field),
            _ => {
                if let Some(other) = p.strip_prefix("IS VALUED NOT EQUAL ") {
                    self.valued(field) && first != self.first(other.trim())
                } else if let Some(n) = p.strip_prefix("LENGTH GREATER THAN ") {
                    first.chars().count() > number(n)?
                } else if let Some(n) = p.strip_prefix("LST.COUNT EQUALS ") {
                    self.repetitions(field) == number(n)?
                } else if let Some(n) = p.strip_prefix("LST.COUNT GREATER THAN ") {
                    self.repetitions(field) > number(n)?
                } else if let Some(n) = p.strip_prefix("COUNT>") {
                    self.repetitions(field) > number(n)?
                } else if let Some(n) = p.strip_prefix("COUNT=") {
                    self.repetitions(field) == number(n)?
                } else if let Some(x) = p.strip_prefix("NOT EQUALS ").or(p.strip_prefix("IS NOT "))
                {
                    !list(x).contains(&first)
                } else if let Some(x) = p.strip_prefix("EQUALS ").or(p.strip_prefix("IS ")) {
                    list(x).contains(&first)
                } else if let Some(x) = p.strip_prefix("NOT IN ") {
                    !list(x).contains(&first)
                } else if let Some(x) = p.strip_prefix("IN ") {
                    list(x).contains(&first)
                } else {
                    return Err(Unknown::Form(format!("{field} {predicate}")));
                }
            }
        })
    }

    fn repetitions(&self, spec: &str) -> usize {
        self.segment(spec).map_or(0, |s| s.repetitions(spec))
    }
}

/// `ORC.1` (the IG writes it so once) is `ORC-1`.
fn normalise_field(w: &str) -> String {
    let b = w.as_bytes();
    if b.len() > 4
        && b[..3]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && b[3] == b'.'
        && b[4].is_ascii_digit()
    {
        format!("{}-{}", &w[..3], &w[4..])
    } else {
        w.to_owned()
    }
}
