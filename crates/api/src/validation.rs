//! Field validation with Kubernetes' error types and messages.
//!
//! The messages are part of the contract: kubectl prints `causes[].field` and
//! `causes[].message`, and users (and scripts) match on them. They follow
//! k8s.io/apimachinery/pkg/util/validation and pkg/apis/core/validation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    fn text(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// One problem with one field, like field.Error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    /// The offending value, already formatted as Go's field.Error prints it (strings quoted).
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        FieldError { kind: ErrorType::Invalid, field: field.into(), value: Some(go_quote(value)), detail: detail.into() }
    }
    pub fn invalid_raw(field: impl Into<String>, value: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { kind: ErrorType::Invalid, field: field.into(), value: Some(value.into()), detail: detail.into() }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { kind: ErrorType::Required, field: field.into(), value: None, detail: detail.into() }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { kind: ErrorType::Forbidden, field: field.into(), value: None, detail: detail.into() }
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError { kind: ErrorType::TooLong, field: field.into(), value: None, detail: format!("must have at most {max} bytes") }
    }
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list = supported.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(", ");
        FieldError { kind: ErrorType::NotSupported, field: field.into(), value: Some(go_quote(value)), detail: format!("supported values: {list}") }
    }
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        FieldError { kind: ErrorType::Duplicate, field: field.into(), value: Some(go_quote(value)), detail: String::new() }
    }

    /// What follows "field: " in the error string; also the cause's message.
    pub fn body(&self) -> String {
        let mut s = match (&self.kind, &self.value) {
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal, _) | (_, None) => self.kind.text().to_string(),
            (_, Some(v)) => format!("{}: {}", self.kind.text(), v),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Quotes a string as Go's `%q` does for printable text.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Appends `[key]` to a path, as field.Path.Key does.
pub fn key_path(base: &str, key: &str) -> String {
    format!("{base}[{key}]")
}

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";

fn anchored(f: &str) -> Regex {
    Regex::new(&format!("^{f}$")).expect("static regex")
}

static DNS1123_LABEL: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL_FMT));
static DNS1123_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN_FMT));
static QUALIFIED_NAME: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME_FMT));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE_FMT));
static CONFIG_KEY: LazyLock<Regex> = LazyLock::new(|| anchored(CONFIG_KEY_FMT));

/// IsDNS1123Label: the messages for a bad namespace name.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !DNS1123_LABEL.is_match(value) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// IsDNS1123Subdomain: the messages for a bad ConfigMap or Secret name.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !DNS1123_SUBDOMAIN.is_match(value) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// IsQualifiedName: label and annotation keys.
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            name
        }
        _ => {
            errs.push(format!(
                "{} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !name.is_empty() && !QUALIFIED_NAME.is_match(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

pub fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !LABEL_VALUE.is_match(value) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// IsConfigMapKey: keys of ConfigMap and Secret data.
pub fn config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !CONFIG_KEY.is_match(value) {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if value == "." {
        errs.push("must not be '.'".to_string());
    } else if value == ".." {
        errs.push("must not be '..'".to_string());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// The total size limit of annotations, in bytes.
pub const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

pub fn validate_labels(labels: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(Value::Object(map)) = labels else {
        return;
    };
    for (k, v) in map {
        for m in qualified_name(k) {
            errs.push(FieldError::invalid(path, k, m));
        }
        let v = v.as_str().unwrap_or_default();
        for m in label_value(v) {
            errs.push(FieldError::invalid(path, v, m));
        }
    }
}

pub fn validate_annotations(annotations: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(Value::Object(map)) = annotations else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        for m in qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, m));
        }
        total += k.len() + v.as_str().map(str::len).unwrap_or(0);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE));
    }
}

/// Which name rule a kind's metadata.name follows.
#[derive(Clone, Copy, Debug)]
pub enum NameRule {
    Dns1123Label,
    Dns1123Subdomain,
    /// Path-segment names (RBAC objects): anything but "." "..", or with "/" or "%".
    PathSegment,
}

pub fn name_errors(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Dns1123Label => dns1123_label(name),
        NameRule::Dns1123Subdomain => dns1123_subdomain(name),
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                vec![format!("may not be '{name}'")]
            } else if name.contains('/') {
                vec!["may not contain '/'".into()]
            } else if name.contains('%') {
                vec!["may not contain '%'".into()]
            } else {
                vec![]
            }
        }
    }
}

/// ValidateObjectMeta: name, generateName, namespace presence, labels, annotations, finalizers.
pub fn validate_object_meta(obj: &Value, namespaced: bool, rule: NameRule, errs: &mut Vec<FieldError>) {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let generate_name = meta["generateName"].as_str().unwrap_or_default();
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
    } else {
        for m in name_errors(rule, name) {
            errs.push(FieldError::invalid("metadata.name", name, m));
        }
    }
    if !generate_name.is_empty() {
        // generateName is validated as a prefix: the name it yields must still be valid.
        let probe = format!("{generate_name}a");
        for m in name_errors(rule, &probe) {
            errs.push(FieldError::invalid("metadata.generateName", generate_name, m));
        }
    }
    let namespace = meta["namespace"].as_str().unwrap_or_default();
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for m in dns1123_label(namespace) {
                errs.push(FieldError::invalid("metadata.namespace", namespace, m));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    validate_labels(meta.get("labels"), "metadata.labels", errs);
    validate_annotations(meta.get("annotations"), "metadata.annotations", errs);
    // ValidateOwnerReferences: the path has no index, as in apimachinery.
    if let Some(Value::Array(refs)) = meta.get("ownerReferences") {
        let mut first_controller: Option<String> = None;
        for r in refs {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            let api_version = s("apiVersion");
            let version = api_version.rsplit('/').next().unwrap_or_default();
            for (field, value, empty) in [
                ("apiVersion", &api_version, version.is_empty()),
                ("kind", &s("kind"), s("kind").is_empty()),
                ("name", &s("name"), s("name").is_empty()),
                ("uid", &s("uid"), s("uid").is_empty()),
            ] {
                if empty {
                    let what = if field == "apiVersion" { "version" } else { field };
                    errs.push(FieldError::invalid(format!("metadata.ownerReferences.{field}"), value, format!("{what} must not be empty")));
                }
            }
            if r["controller"] == Value::Bool(true) {
                let current = format!("{}/{}", s("kind"), s("name"));
                match &first_controller {
                    Some(first) => errs.push(FieldError::invalid_raw(
                        "metadata.ownerReferences",
                        "[]v1.OwnerReference{...}",
                        format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
                    )),
                    None => first_controller = Some(current),
                }
            }
        }
    }
    if let Some(Value::Array(fins)) = meta.get("finalizers") {
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in fins.iter().enumerate() {
            let f = f.as_str().unwrap_or_default();
            for m in qualified_name(f) {
                errs.push(FieldError::invalid(format!("metadata.finalizers[{i}]"), f, m));
            }
            if !seen.insert(f) {
                errs.push(FieldError::duplicate(format!("metadata.finalizers[{i}]"), f));
            }
        }
    }
}

/// ValidateObjectMetaUpdate: the fields that never change once set.
pub fn validate_object_meta_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        let n = &new["metadata"][field];
        let o = &old["metadata"][field];
        if n != o {
            let shown = n.as_str().map(go_quote).unwrap_or_else(|| n.to_string());
            errs.push(FieldError::invalid_raw(format!("metadata.{field}"), shown, "field is immutable"));
        }
    }
}

/// Keys of `data`-like maps, reported under `path[key]`.
pub fn validate_data_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &str, errs: &mut Vec<FieldError>) {
    for k in keys {
        for m in config_map_key(k) {
            errs.push(FieldError::invalid(key_path(path, k), k, m));
        }
    }
}

/// Sum of key and value lengths of a string map (values as stored, after base64 decoding).
pub fn map_size(map: &BTreeMap<String, Vec<u8>>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_message_matches_kubernetes() {
        let errs = dns1123_subdomain("model-registry credentials");
        assert_eq!(
            errs,
            vec!["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
        );
        let e = FieldError::invalid("metadata.name", "model-registry credentials", errs[0].clone());
        assert!(e.to_string().starts_with("metadata.name: Invalid value: \"model-registry credentials\": a lowercase RFC 1123 subdomain"));
    }

    #[test]
    fn label_message_has_double_space_like_go() {
        assert_eq!(
            dns1123_label("Bad_NS")[0],
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert!(dns1123_label(&"a".repeat(64)).contains(&"must be no more than 63 characters".to_string()));
    }

    #[test]
    fn config_keys() {
        assert!(config_map_key("MAX_BATCH_SIZE").is_empty());
        assert!(config_map_key("tls.crt").is_empty());
        assert_eq!(config_map_key("..x"), vec!["must not start with '..'".to_string()]);
        assert_eq!(config_map_key("a b").len(), 1);
    }

    #[test]
    fn qualified_names() {
        assert!(qualified_name("app.kubernetes.io/part-of").is_empty());
        assert!(qualified_name("app.kubernetes io/part-of").len() == 1);
        assert_eq!(qualified_name("a/b/c").len(), 1);
        assert_eq!(qualified_name("/x"), vec!["prefix part must be non-empty".to_string()]);
    }

    #[test]
    fn forbidden_body_has_no_value() {
        let e = FieldError::forbidden("data", "field is immutable when `immutable` is set");
        assert_eq!(e.to_string(), "data: Forbidden: field is immutable when `immutable` is set");
        assert_eq!(FieldError::required("data[tls.crt]", "").to_string(), "data[tls.crt]: Required value");
    }
}
