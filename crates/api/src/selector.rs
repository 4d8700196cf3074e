//! Label and field selectors, with the grammar of k8s.io/apimachinery's labels and fields
//! packages. Written by hand: no maintained crate parses Kubernetes selectors.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::validation;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: BTreeSet<String>,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Op(&'static str),
    Comma,
    Open,
    Close,
}

fn tokenize(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                out.push(Token::Comma);
                i += 1
            }
            '(' => {
                out.push(Token::Open);
                i += 1
            }
            ')' => {
                out.push(Token::Close);
                i += 1
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let (op, len) = match two.as_str() {
                    "==" => ("==", 2),
                    "!=" => ("!=", 2),
                    _ => match c {
                        '=' => ("=", 1),
                        '!' => ("!", 1),
                        '<' => ("<", 1),
                        _ => (">", 1),
                    },
                };
                out.push(Token::Op(op));
                i += len;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"=!<>(),".contains(chars[i]) {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
        }
    }
    out
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "EOS".into(),
        Some(Token::Ident(s)) => s.clone(),
        Some(Token::Op(o)) => (*o).into(),
        Some(Token::Comma) => ",".into(),
        Some(Token::Open) => "(".into(),
        Some(Token::Close) => ")".into(),
    }
}

/// A selector that does not parse, with kube's words for why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        Self::parse_requirements(s).map_err(SelectorError)
    }

    fn parse_requirements(s: &str) -> Result<Self, String> {
        let tokens = tokenize(s);
        let mut i = 0;
        let mut requirements = Vec::new();
        if tokens.is_empty() {
            return Ok(Self::default());
        }
        loop {
            let mut negate = false;
            if tokens.get(i) == Some(&Token::Op("!")) {
                negate = true;
                i += 1;
            }
            let key = match tokens.get(i) {
                Some(Token::Ident(k)) => k.clone(),
                other => return Err(format!("found '{}', expected: !, identifier, or 'end of string'", describe(other))),
            };
            i += 1;
            validate_key(&key)?;
            let at_end = matches!(tokens.get(i), None | Some(Token::Comma));
            let req = if negate {
                if !at_end {
                    return Err(format!("found '{}', expected: ',' or 'end of string'", describe(tokens.get(i))));
                }
                Requirement { key, op: Op::DoesNotExist, values: BTreeSet::new() }
            } else if at_end {
                Requirement { key, op: Op::Exists, values: BTreeSet::new() }
            } else {
                let op = match tokens.get(i) {
                    Some(Token::Op("=")) | Some(Token::Op("==")) => Op::Equals,
                    Some(Token::Op("!=")) => Op::NotEquals,
                    Some(Token::Op(">")) => Op::GreaterThan,
                    Some(Token::Op("<")) => Op::LessThan,
                    Some(Token::Ident(w)) if w == "in" => Op::In,
                    Some(Token::Ident(w)) if w == "notin" => Op::NotIn,
                    other => {
                        return Err(format!("found '{}', expected: in, notin, =, ==, !=, gt, lt", describe(other)));
                    }
                };
                i += 1;
                let mut values = BTreeSet::new();
                if matches!(op, Op::In | Op::NotIn) {
                    if tokens.get(i) != Some(&Token::Open) {
                        return Err(format!("found '{}', expected: '('", describe(tokens.get(i))));
                    }
                    i += 1;
                    loop {
                        match tokens.get(i) {
                            Some(Token::Ident(v)) => {
                                values.insert(v.clone());
                                i += 1;
                            }
                            Some(Token::Comma) | Some(Token::Close) => {
                                // An empty value between commas is the empty string.
                                values.insert(String::new());
                            }
                            other => return Err(format!("found '{}', expected: ',', ')' or identifier", describe(other))),
                        }
                        match tokens.get(i) {
                            Some(Token::Comma) => i += 1,
                            Some(Token::Close) => {
                                i += 1;
                                break;
                            }
                            other => return Err(format!("found '{}', expected: ',' or ')'", describe(other))),
                        }
                    }
                } else {
                    match tokens.get(i) {
                        Some(Token::Ident(v)) => {
                            values.insert(v.clone());
                            i += 1;
                        }
                        // `key=` selects the empty value.
                        None | Some(Token::Comma) => {
                            values.insert(String::new());
                        }
                        other => return Err(format!("found '{}', expected: identifier", describe(other))),
                    }
                }
                for v in &values {
                    if matches!(op, Op::GreaterThan | Op::LessThan) {
                        if v.parse::<i64>().is_err() {
                            return Err(format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {v}"));
                        }
                    } else if let Some(m) = validation::label_value(v).into_iter().next() {
                        return Err(format!("unable to parse requirement: values[0][{key}]: Invalid value: {}: {m}", validation::go_quote(v)));
                    }
                }
                Requirement { key, op, values }
            };
            requirements.push(req);
            match tokens.get(i) {
                None => break,
                Some(Token::Comma) => i += 1,
                other => return Err(format!("found '{}', expected: ',' or 'end of string'", describe(other))),
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// Builds a selector from a metav1.LabelSelector object (matchLabels and matchExpressions).
    pub fn from_object(sel: &Value) -> Result<Self, SelectorError> {
        Self::requirements_of(sel).map_err(SelectorError)
    }

    fn requirements_of(sel: &Value) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if let Some(m) = sel["matchLabels"].as_object() {
            for (k, v) in m {
                requirements.push(Requirement { key: k.clone(), op: Op::Equals, values: [v.as_str().unwrap_or_default().to_string()].into() });
            }
        }
        if let Some(exprs) = sel["matchExpressions"].as_array() {
            for e in exprs {
                let key = e["key"].as_str().unwrap_or_default().to_string();
                let values: BTreeSet<String> =
                    e["values"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
                let op = match e["operator"].as_str().unwrap_or_default() {
                    "In" => Op::In,
                    "NotIn" => Op::NotIn,
                    "Exists" => Op::Exists,
                    "DoesNotExist" => Op::DoesNotExist,
                    other => return Err(format!("{other:?} is not a valid label selector operator")),
                };
                requirements.push(Requirement { key, op, values });
            }
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| {
            let v = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match r.op {
                Op::Equals | Op::In => v.is_some_and(|v| r.values.contains(v)),
                Op::NotEquals | Op::NotIn => v.is_none_or(|v| !r.values.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::GreaterThan | Op::LessThan => {
                    let (Some(have), Some(want)) = (v.and_then(|v| v.parse::<i64>().ok()), r.values.iter().next().and_then(|w| w.parse::<i64>().ok())) else {
                        return false;
                    };
                    if r.op == Op::GreaterThan {
                        have > want
                    } else {
                        have < want
                    }
                }
            }
        })
    }
}

fn validate_key(key: &str) -> Result<(), String> {
    match validation::qualified_name(key).into_iter().next() {
        None => Ok(()),
        Some(m) => Err(format!("unable to parse requirement: key: Invalid value: {}: {m}", validation::go_quote(key))),
    }
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed field selector: terms joined by AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

/// Splits on an unescaped separator, keeping escapes for the next stage.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.last_mut().expect("nonempty").push(c);
            escaped = false;
        } else if c == '\\' {
            out.last_mut().expect("nonempty").push(c);
            escaped = true;
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().expect("nonempty").push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid field selector: invalid escape sequence: \\{e}")),
                None => return Err("invalid field selector: unterminated escape sequence".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        Self::parse_terms(s).map_err(SelectorError)
    }

    fn parse_terms(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for part in split_unescaped(s, ',') {
            if part.is_empty() {
                continue;
            }
            let (field, value, negate) = if let Some(idx) = find_unescaped(&part, "!=") {
                (&part[..idx], &part[idx + 2..], true)
            } else if let Some(idx) = find_unescaped(&part, "==") {
                (&part[..idx], &part[idx + 2..], false)
            } else if let Some(idx) = find_unescaped(&part, "=") {
                (&part[..idx], &part[idx + 1..], false)
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{part}'"));
            };
            terms.push(FieldTerm { field: unescape(field.trim())?, value: unescape(value.trim())?, negate });
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The name this selector pins, if it has a `metadata.name=` term (used by RBAC).
    pub fn exact_name(&self) -> Option<&str> {
        self.terms.iter().find(|t| t.field == "metadata.name" && !t.negate).map(|t| t.value.as_str())
    }

    /// Matches using `get` to read a field; unknown fields never get here (checked earlier).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let v = get(&t.field).unwrap_or_default();
            (v == t.value) != t.negate
        })
    }
}

fn find_unescaped(s: &str, needle: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        // Bytes, not `&s[i..]`: `i` may sit inside a multi-byte character.
        if bytes[i..].starts_with(needle.as_bytes()) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn equality_and_sets() {
        let labels = m(json!({"app": "web", "tier": "gpu", "n": "5"}));
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing!=x", true),
            ("app=web,tier=cpu", false),
            ("n>4", true),
            ("n<5", false),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(Some(&labels)), want, "{sel}");
        }
    }

    #[test]
    fn parse_errors() {
        for bad in ["app in web", "=x", "app=(", "app in (a", "bad key=x", "a=b c", "n>x"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=a,type!=Opaque").unwrap();
        assert_eq!(f.exact_name(), Some("a"));
        assert!(f.matches(|k| Some(if k == "metadata.name" { "a".into() } else { "kubernetes.io/tls".into() })));
        assert!(!f.matches(|k| Some(if k == "metadata.name" { "a".into() } else { "Opaque".into() })));
        assert_eq!(FieldSelector::parse(r"metadata.name=a\,b").unwrap().terms[0].value, "a,b");
        assert!(FieldSelector::parse("nonsense").is_err());
    }

    #[test]
    fn non_ascii_never_panics() {
        for sel in ["metadata.name=ÿ", "ÿ=ÿ", "metadata.name!=日本", r"a\ÿ=b", "ÿ", "a=\\ÿ"] {
            let _ = FieldSelector::parse(sel);
            let _ = LabelSelector::parse(sel);
        }
        assert_eq!(FieldSelector::parse("metadata.name=ÿ").unwrap().exact_name(), Some("ÿ"));
    }
}
