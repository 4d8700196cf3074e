//! The answer's body: one object or a list, as the client negotiated it (the object, a
//! Table, or PartialObjectMetadata), with fieldValidation's warnings as `Warning` headers.

use axum::body::Body;
use axum::http::{HeaderValue, Response};
use serde_json::{json, Value};

use api::kinds::Resource;
use api::object;

use crate::negotiate::{Negotiated, Transform};
use crate::request::Query;

pub fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(h) = HeaderValue::from_str(&v) {
            r.headers_mut().append("Warning", h);
        }
    }
    r
}

/// A list response, serialized from the cached objects without copying them.
pub struct ListBody<'a> {
    pub kind: String,
    pub api_version: String,
    pub metadata: &'a Value,
    pub items: &'a [std::sync::Arc<Value>],
}

impl serde::Serialize for ListBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("apiVersion", &self.api_version)?;
        m.serialize_entry("metadata", self.metadata)?;
        m.serialize_entry("items", &ListItems(self.items))?;
        m.end()
    }
}

struct ListItems<'a>(&'a [std::sync::Arc<Value>]);

impl serde::Serialize for ListItems<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|o| ListItem(o)))
    }
}

/// An item without what clients never see (kind/apiVersion are implied by the list).
pub struct ListItem<'a>(pub &'a Value);

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_object() {
            Some(obj) => s.collect_map(obj.iter().filter(|(k, _)| *k != "kind" && *k != "apiVersion")),
            None => self.0.serialize(s),
        }
    }
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

pub fn encode_one(res: &Resource, obj: &Value, n: Negotiated, q: &Query) -> Value {
    match n.transform {
        Transform::Table => api::table::table(
            res,
            std::slice::from_ref(obj),
            json!({"resourceVersion": object::resource_version(obj)}),
            q.get("includeObject").unwrap_or("Metadata"),
        ),
        Transform::PartialMetadata => partial_metadata(obj),
        Transform::None => obj.clone(),
    }
}
