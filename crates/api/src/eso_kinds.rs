//! The External Secrets Operator's kinds (`external-secrets.io/v1`): SecretStore,
//! ClusterSecretStore, ExternalSecret and ClusterExternalSecret, so that ESO's documented
//! manifests apply unchanged. There are no generated Rust types for these CRDs; objects are
//! checked for their basic shape, their OpenAPI schema keeps unknown fields, and `status`
//! belongs to the status subresource as in ESO's CRDs.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::resource::Column;
use crate::resource::{Resource, Strategy, Subresource, TypeError, STANDARD_VERBS};
use crate::validation::{FieldError, NameRule};
use crate::ApiResult;

pub const GROUP: &str = "external-secrets.io";

/// An object schema that preserves unknown fields, under ESO's own schema names.
macro_rules! open_schema {
    ($ty:ident, $name:expr, $desc:expr) => {
        pub struct $ty;
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": $desc,
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                })
            }
        }
    };
}

open_schema!(SecretStoreSchema, "io.k8s.api.external-secrets.v1.SecretStore", "SecretStore represents a secure external location for storing secrets.");
open_schema!(
    ClusterSecretStoreSchema,
    "io.k8s.api.external-secrets.v1.ClusterSecretStore",
    "ClusterSecretStore represents a secure external location for storing secrets, usable from any namespace."
);
open_schema!(ExternalSecretSchema, "io.k8s.api.external-secrets.v1.ExternalSecret", "ExternalSecret is the Schema for the external-secrets API.");
open_schema!(
    ClusterExternalSecretSchema,
    "io.k8s.api.external-secrets.v1.ClusterExternalSecret",
    "ClusterExternalSecret is the Schema for the clusterexternalsecrets API."
);

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Objects must be JSON objects with an object `spec`; everything else is ESO's business.
fn shape(obj: Value) -> Result<(Value, Vec<String>), TypeError> {
    if !obj.is_object() {
        return Err("expected an object".into());
    }
    if !obj["spec"].is_null() && !obj["spec"].is_object() {
        return Err("json: cannot unmarshal into Go struct field .spec of type object".into());
    }
    // The members the server and the controllers write into or iterate: each has the type
    // ESO's schema gives it, or the object is refused (as a structural schema refuses it).
    for (path, want) in [
        (&["metadata", "labels"][..], "map[string]string"),
        (&["metadata", "annotations"][..], "map[string]string"),
        (&["spec", "target"][..], "object"),
        (&["spec", "target", "template"][..], "object"),
        (&["spec", "secretStoreRef"][..], "object"),
        (&["spec", "externalSecretSpec"][..], "object"),
        (&["spec", "data"][..], "array"),
        (&["spec", "dataFrom"][..], "array"),
        (&["spec", "refreshInterval"][..], "string"),
    ] {
        let v = path.iter().try_fold(&obj, |v, k| v.get(k));
        let fits = match (v, want) {
            (None | Some(Value::Null), _) => true,
            (Some(Value::Object(m)), "map[string]string") => m.values().all(Value::is_string),
            (Some(v), "object") => v.is_object(),
            (Some(v), "array") => v.is_array(),
            (Some(v), "string") => v.is_string(),
            _ => false,
        };
        if !fits {
            return Err(format!("json: cannot unmarshal into Go struct field .{} of type {want}", path.join(".")).into());
        }
    }
    Ok((obj, vec![]))
}

fn ready(obj: &Value) -> (String, String) {
    let cond = obj["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")).cloned().unwrap_or(Value::Null);
    (s(&cond["status"]).chars().next().map(|_| s(&cond["status"])).unwrap_or_else(|| "False".into()), s(&cond["reason"]))
}

pub struct StoreStrategy;

impl Strategy for StoreStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        shape(obj)
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) -> ApiResult<()> {
        new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
        Ok(())
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        if obj["spec"]["provider"].as_object().is_none_or(|p| p.len() != 1) {
            errs.push(FieldError::required("spec.provider", "exactly one provider must be specified"));
        }
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::STORE_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let (status, reason) = ready(obj);
        vec![json!(crate::object::name(obj)), json!(crate::object::age(obj)), json!(reason), obj["status"]["capabilities"].clone(), json!(status)]
    }
}

pub struct ExternalSecretStrategy;

impl Strategy for ExternalSecretStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        shape(obj)
    }
    fn prepare_create(&self, obj: &mut Value) -> ApiResult<()> {
        if obj["spec"].is_object() {
            if obj["spec"]["refreshInterval"].is_null() {
                obj["spec"]["refreshInterval"] = json!("1h0m0s");
            }
            if obj["spec"]["target"]["creationPolicy"].is_null() {
                obj["spec"]["target"]["creationPolicy"] = json!("Owner");
            }
            if obj["spec"]["target"]["deletionPolicy"].is_null() {
                obj["spec"]["target"]["deletionPolicy"] = json!("Retain");
            }
        }
        Ok(())
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) -> ApiResult<()> {
        new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
        self.prepare_create(new)
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        let spec = &obj["spec"];
        if spec["secretStoreRef"]["name"].as_str().unwrap_or_default().is_empty() && obj["kind"] == "ExternalSecret" {
            errs.push(FieldError::required("spec.secretStoreRef.name", ""));
        }
        let policy = s(&spec["target"]["creationPolicy"]);
        if !["Owner", "Orphan", "Merge", "None", ""].contains(&policy.as_str()) {
            errs.push(FieldError::not_supported("spec.target.creationPolicy", &policy, &["Owner", "Orphan", "Merge", "None"]));
        }
        let del = s(&spec["target"]["deletionPolicy"]);
        if !["Retain", "Delete", "Merge", ""].contains(&del.as_str()) {
            errs.push(FieldError::not_supported("spec.target.deletionPolicy", &del, &["Retain", "Delete", "Merge"]));
        }
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::EXTERNALSECRET_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let (status, reason) = ready(obj);
        vec![
            json!(crate::object::name(obj)),
            obj["spec"]["secretStoreRef"]["name"].clone(),
            obj["spec"]["refreshInterval"].clone(),
            json!(reason),
            json!(status),
        ]
    }
}

macro_rules! eso {
    ($name:ident, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr, $short:expr, $strategy:expr, $schema:ty) => {
        pub static $name: Resource = Resource {
            group: GROUP,
            version: "v1",
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: $short,
            categories: &["external-secrets"],
            name_rule: NameRule::Dns1123Subdomain,
            selectable_fields: &[],
            strategy: &$strategy,
            register_schema: crate::resource::register::<$schema>,
            verbs: STANDARD_VERBS,
            subresources: &[Subresource::Status],
            admission: &[],
            grants: None,
            computed: None,
        };
    };
}

eso!(SECRETSTORES, "SecretStore", "secretstores", "secretstore", true, &["ss"], StoreStrategy, SecretStoreSchema);
eso!(CLUSTERSECRETSTORES, "ClusterSecretStore", "clustersecretstores", "clustersecretstore", false, &["css"], StoreStrategy, ClusterSecretStoreSchema);
eso!(EXTERNALSECRETS, "ExternalSecret", "externalsecrets", "externalsecret", true, &["es"], ExternalSecretStrategy, ExternalSecretSchema);
eso!(
    CLUSTEREXTERNALSECRETS,
    "ClusterExternalSecret",
    "clusterexternalsecrets",
    "clusterexternalsecret",
    false,
    &["ces"],
    ExternalSecretStrategy,
    ClusterExternalSecretSchema
);
