//! Request bodies in, by Content-Type: JSON, YAML and Kubernetes protobuf all become one JSON
//! value. JSON is parsed with a duplicate-key check, because `fieldValidation=Strict` must
//! reject `{"data":{},"data":{}}` and serde_json silently keeps the last value.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::status::ApiError;

pub const JSON: &str = "application/json";
pub const YAML: &str = "application/yaml";

/// The media types a create or update body may have.
pub const BODY_TYPES: &[&str] = &[JSON, YAML, crate::protobuf::CONTENT_TYPE];

/// A decoded body, with the paths of any keys that appeared twice.
pub struct Decoded {
    pub value: Value,
    pub duplicates: Vec<String>,
}

pub fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// Decodes a body; `kind` names the expected kind in error messages.
pub fn decode(content_type: &str, body: &[u8], kind: &str) -> Result<Decoded, ApiError> {
    let cannot = |e: String| ApiError::bad_request(format!("{kind} in version \"v1\" cannot be handled as a {kind}: {e}"));
    match media_type(content_type) {
        "" | JSON | "*/*" => decode_json(body).map_err(cannot),
        YAML | "application/x-yaml" | "text/yaml" | "application/apply-patch+yaml" => {
            // YAML is a superset of JSON; the same visitor records duplicate keys (YAML parsers
            // keep the last one silently).
            decode_yaml(body).map_err(cannot)
        }
        crate::protobuf::CONTENT_TYPE => {
            let value = crate::protobuf::decode(body).map_err(|e| ApiError::bad_request(e))?;
            Ok(Decoded { value, duplicates: vec![] })
        }
        other => Err(ApiError::unsupported_media_type(other, BODY_TYPES)),
    }
}

/// How deeply flow collections (`{` and `[`) may nest in a YAML body. libyaml's scanner does
/// work proportional to the nesting for every token, so 100,000 levels cost minutes of CPU
/// before the deserializer's own depth limit (128) is reached; this scan refuses them first,
/// in one pass. go-yaml's limit (10,000) would still cost seconds here.
pub const MAX_YAML_FLOW_DEPTH: usize = 1000;

/// Decoded values allowed per byte of body. Plain JSON or YAML cannot make more values than it
/// has bytes; only aliases can, and a "billion laughs" document makes billions.
const VALUES_PER_BODY_BYTE: usize = 2;
/// Values any YAML body may decode to, aliases or not: go-yaml's own threshold below which it
/// allows any aliasing (400,000 decoded nodes), so a manifest kube-apiserver takes is taken.
const MIN_VALUE_BUDGET: usize = 400_000;

pub fn decode_yaml(body: &[u8]) -> Result<Decoded, String> {
    if flow_depth(body, MAX_YAML_FLOW_DEPTH) > MAX_YAML_FLOW_DEPTH {
        return Err(format!("yaml: exceeded max depth of {MAX_YAML_FLOW_DEPTH}"));
    }
    let dups = RefCell::new(Vec::new());
    let budget = Cell::new(body.len().saturating_mul(VALUES_PER_BODY_BYTE).max(MIN_VALUE_BUDGET));
    let de = serde_norway::Deserializer::from_slice(body);
    let value = DupCheck { path: String::new(), dups: &dups, budget: &budget }.deserialize(de).map_err(|e| e.to_string())?;
    Ok(Decoded { value, duplicates: dups.into_inner() })
}

pub fn decode_json(body: &[u8]) -> Result<Decoded, String> {
    let dups = RefCell::new(Vec::new());
    let budget = Cell::new(usize::MAX);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = DupCheck { path: String::new(), dups: &dups, budget: &budget }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(Decoded { value, duplicates: dups.into_inner() })
}

/// The deepest nesting of brackets (`{`, `[`) in `body`, counting no further than `limit + 1`.
/// Every bracket counts, inside quotes and comments too: skipping those would need YAML's
/// quoting rules, and a scan that gets them wrong can be led past real nesting. Counting them
/// can only over-count, so only a body with a thousand brackets unclosed is refused for it.
fn flow_depth(body: &[u8], limit: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &c in body {
        match c {
            b'{' | b'[' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > limit {
                        break;
                    }
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

struct DupCheck<'a> {
    path: String,
    dups: &'a RefCell<Vec<String>>,
    /// How many more values may be made; aliases replay values, and this bounds the replays.
    budget: &'a Cell<usize>,
}

impl DupCheck<'_> {
    fn spend<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.budget.get().checked_sub(1) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom("yaml: document contains excessive aliasing")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for DupCheck<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.spend()?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupCheck<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(v) = seq.next_element_seed(DupCheck { path: format!("{}[{i}]", self.path), dups: self.dups, budget: self.budget })? {
            out.push(v);
            i += 1;
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            let v = map.next_value_seed(DupCheck { path: path.clone(), dups: self.dups, budget: self.budget })?;
            if out.insert(key, v).is_some() {
                self.dups.borrow_mut().push(path);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_at_any_depth() {
        let d = decode_json(br#"{"a":1,"m":{"x":1,"x":2},"a":3}"#).unwrap();
        assert_eq!(d.duplicates, vec!["m.x".to_string(), "a".to_string()]);
        assert_eq!(d.value["a"], 3);
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for (ct, body) in [(JSON, &b"{"[..]), (JSON, b"{} x"), (YAML, b"a: [1"), (crate::protobuf::CONTENT_TYPE, b"nope")] {
            let e = decode(ct, body, "ConfigMap").err().unwrap();
            assert_eq!(e.code, 400, "{ct}");
        }
        assert_eq!(decode("text/plain", b"x", "ConfigMap").err().unwrap().code, 415);
    }

    #[test]
    fn deep_yaml_is_refused_before_parsing() {
        let deep = format!("{}1{}", "{a: ".repeat(100_000), "}".repeat(100_000));
        let started = std::time::Instant::now();
        assert_eq!(decode_yaml(deep.as_bytes()).err().unwrap(), "yaml: exceeded max depth of 1000");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // A quote or a comment does not hide nesting from the scan.
        let hidden = format!("[\"x # \", {}1{}]", "{a: ".repeat(5000), "}".repeat(5000));
        assert_eq!(decode_yaml(hidden.as_bytes()).err().unwrap(), "yaml: exceeded max depth of 1000");
        // Balanced brackets in strings are fine; ordinary flow YAML decodes.
        let quoted = format!("a: \"{}\"\nc: {{d: [1, 2]}}\n", "[]".repeat(5000));
        let v = decode_yaml(quoted.as_bytes()).unwrap().value;
        assert_eq!(v["c"]["d"][1], 2);
    }

    #[test]
    fn billion_laughs_is_refused_in_proportion_to_the_body() {
        let mut doc = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (name, prev) in [("b", "a"), ("c", "b"), ("d", "c"), ("e", "d"), ("f", "e"), ("g", "f"), ("h", "g"), ("i", "h")] {
            doc.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        let e = decode_yaml(doc.as_bytes()).err().unwrap();
        assert!(e.contains("excessive aliasing") || e.contains("repetition limit"), "{e}");
        // A few aliases, as manifests use them, are fine.
        let v = decode_yaml(b"base: &b {x: 1}\nother: *b\n").unwrap().value;
        assert_eq!(v["other"]["x"], 1);
    }
}
