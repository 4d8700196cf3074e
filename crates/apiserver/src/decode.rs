//! From a decoded body to an object of the target's kind: apiVersion and kind checked (and
//! filled in), the k8s-openapi round trip that type-checks it, fieldValidation's unknown and
//! duplicate fields, and the name and namespace matched against the path.

use serde_json::{json, Value};

use api::kinds::Resource;
use api::{object, ApiError, ApiResult};

use crate::options::FieldValidation;

/// Problems fieldValidation reports: unknown fields (dropped) and duplicate keys.
pub struct FieldProblems(Vec<String>);

impl FieldProblems {
    pub fn new(unknown: &[String], duplicates: &[String]) -> Self {
        let mut v: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        v.extend(duplicates.iter().map(|f| format!("duplicate field \"{f}\"")));
        FieldProblems(v)
    }
    /// Strict turns problems into a 400; Warn returns them as warnings.
    pub fn check(self, mode: FieldValidation) -> ApiResult<Vec<String>> {
        self.check_as(mode, None)
    }
    /// As `check`; a create or update names the kind first, as its decoder error does
    /// (`ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: …`).
    pub fn check_as(self, mode: FieldValidation, res: Option<&Resource>) -> ApiResult<Vec<String>> {
        match mode {
            _ if self.0.is_empty() => Ok(vec![]),
            FieldValidation::Strict => {
                let prefix = res.map(|r| format!("{} in version \"{}\" cannot be handled as a {}: ", r.kind, r.version, r.kind)).unwrap_or_default();
                Err(ApiError::bad_request(format!("{prefix}strict decoding error: {}", self.0.join(", "))))
            }
            FieldValidation::Warn => Ok(self.0),
            FieldValidation::Ignore => Ok(vec![]),
        }
    }
}

/// Checks apiVersion and kind of a body (filling them in when absent) and type-checks it.
pub fn type_check(res: &Resource, mut obj: Value) -> ApiResult<(Value, Vec<String>)> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            if obj.is_null() { "null".into() } else { "<non-object body>".to_string() }
        )));
    }
    let want_version = res.api_version();
    match obj["apiVersion"].as_str() {
        None | Some("") => obj["apiVersion"] = json!(want_version),
        Some(v) if v == want_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!("the API version in the data ({v}) does not match the expected API version ({want_version})")));
        }
    }
    match obj["kind"].as_str() {
        None | Some("") => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => return Err(ApiError::bad_request(format!("the object provided is unrecognized (must be of type {}): kind {k:?}", res.kind))),
    }
    res.strategy.roundtrip(obj).map_err(|e| e.for_kind(res))
}

/// The body's name must match the URL; its namespace must match or be empty (then filled in).
pub fn check_name(res: &Resource, obj: &mut Value, ns: &str, name: &str) -> ApiResult<()> {
    let body_name = object::name(obj);
    if body_name != name {
        return Err(ApiError::bad_request(format!("the name of the object ({body_name}) does not match the name on the URL ({name})")));
    }
    if res.namespaced {
        match object::namespace(obj) {
            "" => object::set_meta(obj, "namespace", ns),
            body_ns if body_ns != ns => {
                return Err(ApiError::bad_request(format!("the namespace of the object ({body_ns}) does not match the namespace on the URL ({ns})")));
            }
            _ => {}
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    Ok(())
}
