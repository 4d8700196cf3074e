//! The registry of served kinds (`ALL`, `find`), and the core kinds' entries: Namespaces,
//! ConfigMaps, Secrets and ServiceAccounts. The other groups' entries are in `*_kinds`; what
//! an entry holds is in `resource`.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Value};

pub use crate::resource::{register, roundtrip_as, schema_name, schema_registrar, Column, Resource, Strategy, TypeError};
use crate::resource::{Subresource, NO_DELETECOLLECTION, STANDARD_VERBS};
use crate::status::{ApiError, ApiResult};
use crate::validation::{self, FieldError, NameRule};

// ---------------------------------------------------------------------------------------------
// Namespace

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<k8s_openapi::api::core::v1::Namespace>(obj)
    }
    fn prepare_create(&self, obj: &mut Value) -> ApiResult<()> {
        // The namespace lifecycle finalizer is added to the client's own, and phase is Active;
        // clients cannot set status on create.
        let mut fins = obj["spec"]["finalizers"].as_array().cloned().unwrap_or_default();
        if !fins.iter().any(|f| f == "kubernetes") {
            fins.push(json!("kubernetes"));
        }
        obj["spec"] = json!({"finalizers": fins});
        obj["status"] = json!({"phase": "Active"});
        name_label(obj);
        Ok(())
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) -> ApiResult<()> {
        // spec.finalizers is owned by the finalize subresource and status by the server.
        new["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
        new["status"] = old.get("status").cloned().unwrap_or(json!({}));
        name_label(new);
        Ok(())
    }
    /// NamespaceLifecycle's immortal namespaces.
    fn undeletable(&self, name: &str) -> bool {
        ["default", "kube-system", "kube-public"].contains(&name)
    }
    /// The namespace controller empties a namespace and removes spec.finalizers first.
    fn deletion_waits(&self, current: &Value) -> bool {
        current["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
    }
    fn mark_deleting(&self, obj: &mut Value) {
        *crate::object::member_at(obj, &["status", "phase"]) = json!("Terminating");
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        // validateFinalizerName: qualified, and without a prefix only the standard names.
        for (i, f) in obj["spec"]["finalizers"].as_array().into_iter().flatten().enumerate() {
            let f = f.as_str().unwrap_or_default();
            let path = format!("spec.finalizers[{i}]");
            let problems = validation::qualified_name(f);
            let unqualified = !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f);
            for m in problems {
                errs.push(FieldError::invalid(path.clone(), f, m));
            }
            if unqualified {
                errs.push(FieldError::invalid(path, f, "name is neither a standard finalizer name nor is it fully qualified"));
            }
        }
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::NAMESPACE_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(crate::object::name(obj)), obj["status"]["phase"].clone(), json!(crate::object::age(obj))]
    }
    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "status.phase" => obj["status"]["phase"].as_str().unwrap_or_default().to_string(),
            _ => String::new(),
        }
    }
}

/// Every namespace carries `kubernetes.io/metadata.name=<name>` (SetDefaults_Namespace), which
/// namespace selectors rely on; clients cannot change or remove it.
fn name_label(obj: &mut Value) {
    let name = crate::object::name(obj).to_string();
    if name.is_empty() {
        return;
    }
    if !obj["metadata"]["labels"].is_object() {
        obj["metadata"]["labels"] = json!({});
    }
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
}

// ---------------------------------------------------------------------------------------------
// ConfigMap

pub struct ConfigMapStrategy;

/// The 1 MiB limit on a ConfigMap's or Secret's data (api.MaxSecretSize).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

fn string_map(v: &Value) -> BTreeMap<String, Vec<u8>> {
    v.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().as_bytes().to_vec())).collect()).unwrap_or_default()
}

fn base64_map(v: &Value) -> BTreeMap<String, Vec<u8>> {
    v.as_object()
        .map(|m| {
            m.iter().map(|(k, v)| (k.clone(), base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap_or_default())).collect()
        })
        .unwrap_or_default()
}

fn immutable(obj: &Value) -> bool {
    obj["immutable"].as_bool() == Some(true)
}

/// Checks base64 fields before anything else, as Go's JSON decoder does for []byte.
/// The first value of `obj[field]` that is not base64, in Go's words (the decoder kube-apiserver
/// uses): "illegal base64 data at input byte N".
fn base64_problem(obj: &Value, field: &str) -> Option<String> {
    for v in obj[field].as_object()?.values() {
        let Some(s) = v.as_str() else { continue };
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(s) {
            let at = match e {
                base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => at,
                // A short last quantum: Go reports where that quantum starts.
                _ => s.len() - s.len() % 4,
            };
            return Some(format!("illegal base64 data at input byte {at}"));
        }
    }
    None
}

fn check_base64(obj: &Value, field: &str, kind: &str) -> ApiResult<()> {
    match base64_problem(obj, field) {
        Some(detail) => Err(ApiError::bad_request(format!("{kind} in version \"v1\" cannot be handled as a {kind}: {detail}"))),
        None => Ok(()),
    }
}

impl Strategy for ConfigMapStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        if let Some(problem) = base64_problem(&obj, "binaryData") {
            return Err(problem.into());
        }
        roundtrip_as::<k8s_openapi::api::core::v1::ConfigMap>(obj)
    }
    fn prepare_create(&self, obj: &mut Value) -> ApiResult<()> {
        check_base64(obj, "binaryData", "ConfigMap")
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        let data = string_map(&obj["data"]);
        let binary = base64_map(&obj["binaryData"]);
        validation::validate_data_keys(data.keys(), "data", errs);
        validation::validate_data_keys(binary.keys(), "binaryData", errs);
        for k in binary.keys() {
            if data.contains_key(k) {
                errs.push(FieldError::invalid(validation::key_path("binaryData", k), k, "duplicate of key present in data"));
            }
        }
        if validation::map_size(&data) + validation::map_size(&binary) > MAX_DATA_SIZE {
            errs.push(FieldError::too_long("", MAX_DATA_SIZE));
        }
    }
    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        if immutable(old) {
            if !immutable(new) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE_MSG));
            }
            if new.get("data") != old.get("data") {
                errs.push(FieldError::forbidden("data", IMMUTABLE_MSG));
            }
            if new.get("binaryData") != old.get("binaryData") {
                errs.push(FieldError::forbidden("binaryData", IMMUTABLE_MSG));
            }
        }
        self.validate(new, errs);
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::CONFIGMAP_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let n = obj["data"].as_object().map_or(0, |m| m.len()) + obj["binaryData"].as_object().map_or(0, |m| m.len());
        vec![json!(crate::object::name(obj)), json!(n), json!(crate::object::age(obj))]
    }
}

// ---------------------------------------------------------------------------------------------
// Secret

pub struct SecretStrategy;

/// The keys each built-in Secret type requires (pkg/apis/core/validation ValidateSecret).
fn required_keys(secret_type: &str) -> &'static [&'static [&'static str]] {
    // Each inner slice is "at least one of".
    match secret_type {
        "kubernetes.io/dockercfg" => &[&[".dockercfg"]],
        "kubernetes.io/dockerconfigjson" => &[&[".dockerconfigjson"]],
        "kubernetes.io/basic-auth" => &[&["username", "password"]],
        "kubernetes.io/ssh-auth" => &[&["ssh-privatekey"]],
        "kubernetes.io/tls" => &[&["tls.crt"], &["tls.key"]],
        _ => &[],
    }
}

impl Strategy for SecretStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        // Base64 first, for Go's words ("illegal base64 data at input byte N") rather than the
        // Rust decoder's.
        if let Some(problem) = base64_problem(&obj, "data") {
            return Err(problem.into());
        }
        roundtrip_as::<k8s_openapi::api::core::v1::Secret>(obj)
    }
    fn prepare_create(&self, obj: &mut Value) -> ApiResult<()> {
        check_base64(obj, "data", "Secret")?;
        // stringData is write-only: merged into data (winning over it), never stored.
        if let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
            let data = obj.as_object_mut().expect("object").entry("data").or_insert_with(|| json!({}));
            if !data.is_object() {
                *data = json!({});
            }
            for (k, v) in string_data {
                let s = v.as_str().unwrap_or_default();
                data[k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(s));
            }
        }
        if obj["type"].as_str().unwrap_or_default().is_empty() {
            obj["type"] = json!("Opaque");
        }
        Ok(())
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        let data = base64_map(&obj["data"]);
        validation::validate_data_keys(data.keys(), "data", errs);
        let secret_type = obj["type"].as_str().unwrap_or_default();
        for one_of in required_keys(secret_type) {
            if !one_of.iter().any(|k| data.contains_key(*k)) {
                for k in *one_of {
                    errs.push(FieldError::required(validation::key_path("data", k), ""));
                }
            }
        }
        for key in [".dockercfg", ".dockerconfigjson"] {
            if secret_type.ends_with(&key[1..]) {
                if let Some(raw) = data.get(key) {
                    if let Err(e) = serde_json::from_slice::<Value>(raw) {
                        errs.push(FieldError::invalid(validation::key_path("data", key), "<secret contents redacted>", e.to_string()));
                    }
                }
            }
        }
        if secret_type == "kubernetes.io/service-account-token"
            && obj["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str().unwrap_or_default().is_empty()
        {
            errs.push(FieldError::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
        }
        if validation::map_size(&data) > MAX_DATA_SIZE {
            errs.push(FieldError::too_long("data", MAX_DATA_SIZE));
        }
    }
    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        if new["type"] != old["type"] {
            errs.push(FieldError::invalid("type", new["type"].as_str().unwrap_or_default(), "field is immutable"));
        }
        if immutable(old) {
            if !immutable(new) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE_MSG));
            }
            if new.get("data") != old.get("data") {
                errs.push(FieldError::forbidden("data", IMMUTABLE_MSG));
            }
        }
        self.validate(new, errs);
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::SECRET_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let n = obj["data"].as_object().map_or(0, |m| m.len());
        vec![json!(crate::object::name(obj)), obj["type"].clone(), json!(n), json!(crate::object::age(obj))]
    }
    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "type" => obj["type"].as_str().unwrap_or_default().to_string(),
            _ => String::new(),
        }
    }
}

pub static NAMESPACES: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    name_rule: NameRule::Dns1123Label,
    selectable_fields: &["status.phase"],
    strategy: &NamespaceStrategy,
    register_schema: register::<k8s_openapi::api::core::v1::Namespace>,
    verbs: NO_DELETECOLLECTION,
    subresources: &[Subresource::Finalize, Subresource::Status],
    admission: &[],
    grants: None,
    computed: None,
};

pub static CONFIGMAPS: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    name_rule: NameRule::Dns1123Subdomain,
    selectable_fields: &[],
    strategy: &ConfigMapStrategy,
    register_schema: register::<k8s_openapi::api::core::v1::ConfigMap>,
    verbs: STANDARD_VERBS,
    subresources: &[],
    admission: &[],
    grants: None,
    computed: None,
};

pub static SECRETS: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    name_rule: NameRule::Dns1123Subdomain,
    selectable_fields: &["type"],
    strategy: &SecretStrategy,
    register_schema: register::<k8s_openapi::api::core::v1::Secret>,
    verbs: STANDARD_VERBS,
    subresources: &[],
    admission: &[],
    grants: None,
    computed: None,
};

/// Every served resource, in discovery order.
pub static SERVICEACCOUNTS: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    name_rule: NameRule::Dns1123Subdomain,
    selectable_fields: &[],
    strategy: &ServiceAccountStrategy,
    register_schema: register::<k8s_openapi::api::core::v1::ServiceAccount>,
    verbs: STANDARD_VERBS,
    subresources: &[Subresource::Token],
    admission: &[],
    grants: None,
    computed: None,
};

pub struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<k8s_openapi::api::core::v1::ServiceAccount>(obj)
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::SERVICEACCOUNT_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(crate::object::name(obj)), json!(obj["secrets"].as_array().map_or(0, |a| a.len())), json!(crate::object::age(obj))]
    }
}

pub static ALL: &[&Resource] = &[
    &CONFIGMAPS,
    &NAMESPACES,
    &SECRETS,
    &SERVICEACCOUNTS,
    &crate::workload_kinds::PODS,
    &crate::workload_kinds::EVENTS,
    &crate::workload_kinds::NODES,
    &crate::workload_kinds::DEPLOYMENTS,
    &crate::workload_kinds::REPLICASETS,
    &crate::workload_kinds::LEASES,
    &crate::rbac_kinds::ROLES,
    &crate::rbac_kinds::CLUSTERROLES,
    &crate::rbac_kinds::ROLEBINDINGS,
    &crate::rbac_kinds::CLUSTERROLEBINDINGS,
    &crate::eso_kinds::SECRETSTORES,
    &crate::eso_kinds::CLUSTERSECRETSTORES,
    &crate::eso_kinds::EXTERNALSECRETS,
    &crate::eso_kinds::CLUSTEREXTERNALSECRETS,
    &crate::review_kinds::SELF_SUBJECT_ACCESS_REVIEWS,
    &crate::review_kinds::SUBJECT_ACCESS_REVIEWS,
    &crate::review_kinds::LOCAL_SUBJECT_ACCESS_REVIEWS,
    &crate::review_kinds::SELF_SUBJECT_RULES_REVIEWS,
    &crate::review_kinds::TOKEN_REVIEWS,
    &crate::review_kinds::SELF_SUBJECT_REVIEWS,
];

/// Resources that are stored (everything but the computed reviews).
pub fn stored() -> impl Iterator<Item = &'static Resource> {
    ALL.iter().copied().filter(|r| r.computed.is_none())
}

/// Looks a resource up by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    ALL.iter().copied().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The group-versions served, each with its resources.
pub fn group_versions() -> Vec<(&'static str, &'static str, Vec<&'static Resource>)> {
    let mut out: Vec<(&str, &str, Vec<&Resource>)> = Vec::new();
    for r in ALL {
        match out.iter_mut().find(|(g, v, _)| *g == r.group && *v == r.version) {
            Some((_, _, rs)) => rs.push(r),
            None => out.push((r.group, r.version, vec![r])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_merges_into_data_and_is_dropped() {
        let mut s = json!({"metadata": {"name": "a"}, "stringData": {"k": "v"}, "data": {"k": "b2xk", "o": "eA=="}});
        SecretStrategy.prepare_create(&mut s).unwrap();
        assert_eq!(s["data"]["k"], "dg==");
        assert_eq!(s["data"]["o"], "eA==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn bad_base64_is_a_bad_request() {
        let mut s = json!({"data": {"k": "%%%"}});
        let e = SecretStrategy.prepare_create(&mut s).unwrap_err();
        assert_eq!((e.code, e.reason), (400, crate::Reason::BadRequest));
        assert!(e.message.contains("illegal base64 data at input byte 0"), "{}", e.message);
    }

    #[test]
    fn tls_requires_both_keys() {
        let mut errs = vec![];
        SecretStrategy.validate(&json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}), &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].to_string(), "data[tls.key]: Required value");
    }

    #[test]
    fn roundtrip_reports_unknown_fields_and_type_errors() {
        let (v, unknown) = ConfigMapStrategy.roundtrip(json!({"metadata": {"name": "a", "bogus": 1}, "data": {"a": "b"}, "extra": true})).unwrap();
        assert_eq!(unknown, vec!["extra".to_string(), "metadata.bogus".to_string()]);
        assert!(v.get("extra").is_none());
        assert!(ConfigMapStrategy.roundtrip(json!({"data": {"a": 1}})).is_err());
    }
}
