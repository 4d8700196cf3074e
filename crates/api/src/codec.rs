//! Request bodies in, by Content-Type: JSON, YAML and Kubernetes protobuf all become one JSON
//! value. JSON is parsed with a duplicate-key check, because `fieldValidation=Strict` must
//! reject `{"data":{},"data":{}}` and serde_json silently keeps the last value.

use std::cell::RefCell;
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

pub fn decode_yaml(body: &[u8]) -> Result<Decoded, String> {
    let dups = RefCell::new(Vec::new());
    let de = serde_norway::Deserializer::from_slice(body);
    let value = DupCheck { path: String::new(), dups: &dups }.deserialize(de).map_err(|e| e.to_string())?;
    Ok(Decoded { value, duplicates: dups.into_inner() })
}

pub fn decode_json(body: &[u8]) -> Result<Decoded, String> {
    let dups = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = DupCheck { path: String::new(), dups: &dups }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(Decoded { value, duplicates: dups.into_inner() })
}

struct DupCheck<'a> {
    path: String,
    dups: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for DupCheck<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
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
        while let Some(v) = seq.next_element_seed(DupCheck { path: format!("{}[{i}]", self.path), dups: self.dups })? {
            out.push(v);
            i += 1;
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            let v = map.next_value_seed(DupCheck { path: path.clone(), dups: self.dups })?;
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
}
