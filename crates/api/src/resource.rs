//! What a served resource is: the one table of per-kind facts (`Resource`) and the per-kind
//! behaviour (`Strategy`). Discovery, routing, authorization, admission, storage and Table
//! output all read these; generic code never compares kind names.
//!
//! As in kube-apiserver's generic registry `Store` and its `installer.go`, a kind is its
//! entry: names and scope, verbs, subresources, admission plugins, what it grants (RBAC), and
//! the strategies for create, update, status and delete.

use serde_json::{json, Value};

use crate::status::ApiResult;
use crate::validation::{FieldError, NameRule};

/// A Table column, as `meta.k8s.io/v1` Table's columnDefinitions carry it.
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: u32,
}

pub const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

pub const NAME_COLUMN: Column = Column { name: "Name", kind: "string", format: "name", description: NAME_DESC, priority: 0 };
pub const AGE_COLUMN: Column = Column { name: "Age", kind: "string", format: "", description: AGE_DESC, priority: 0 };

pub static DEFAULT_COLUMNS: [Column; 2] = [NAME_COLUMN, AGE_COLUMN];

/// The verbs of a stored kind.
pub const STANDARD_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Namespaces cannot be deleted as a collection in Kubernetes.
pub const NO_DELETECOLLECTION: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
/// A computed kind: answered, never stored.
pub const CREATE_ONLY: &[&str] = &["create"];

/// A subresource a kind serves. Its name, verbs and response kind follow from what it is,
/// as in kube-apiserver, where each is one REST storage with its own verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// Spec and status written separately; a status write goes through the status strategy.
    Status,
    /// `autoscaling/v1` Scale over spec.replicas.
    Scale,
    /// The scheduler's assignment of a pod to a node.
    Binding,
    /// Container logs, relayed to the node's agent.
    Log,
    /// A process in a container, relayed to the node's agent.
    Exec,
    /// The container's own process, relayed to the node's agent.
    Attach,
    /// A bound ServiceAccount token (TokenRequest), computed.
    Token,
    /// A namespace's spec.finalizers.
    Finalize,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::Token => "token",
            Subresource::Finalize => "finalize",
        }
    }

    /// The verbs it serves, as discovery lists them.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Token => &["create"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach => &["create", "get"],
            Subresource::Finalize => &["update"],
        }
    }

    /// The group, version and kind it answers with, for `of`'s subresource.
    pub fn response_kind(self, of: &Resource) -> (&'static str, &'static str, &'static str) {
        match self {
            Subresource::Status | Subresource::Finalize | Subresource::Log => (of.group, of.version, of.kind),
            Subresource::Scale => ("autoscaling", "v1", "Scale"),
            Subresource::Binding => ("", "v1", "Binding"),
            Subresource::Exec => ("", "v1", "PodExecOptions"),
            Subresource::Attach => ("", "v1", "PodAttachOptions"),
            Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        }
    }

    /// Streams into a container: authorized as `create` whatever the method (a WebSocket
    /// upgrade is a GET), as kube-apiserver does.
    pub fn is_connect(self) -> bool {
        matches!(self, Subresource::Exec | Subresource::Attach)
    }
}

/// An admission plugin a kind's creates go through, in the API server's chain order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The pod's ServiceAccount exists and its token volume is mounted.
    ServiceAccount,
}

/// What writing an object of an RBAC kind grants, for escalation prevention
/// (pkg/registry/rbac): a role's rules, or what a binding's roleRef names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grants {
    /// A Role's or ClusterRole's `rules`; `aggregation`: the kind may instead carry an
    /// aggregationRule (ClusterRole), which only a cluster admin may write.
    Rules { aggregation: bool },
    /// A binding's `roleRef`.
    RoleRef,
}

/// A kind that is computed on create and never stored: which answer it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Computed {
    SelfSubjectAccessReview,
    SubjectAccessReview,
    LocalSubjectAccessReview,
    SelfSubjectRulesReview,
    TokenReview,
    SelfSubjectReview,
}

/// One served resource (a plural under a group-version).
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub name_rule: NameRule,
    /// Fields besides metadata.name and metadata.namespace that field selectors may use.
    pub selectable_fields: &'static [&'static str],
    pub strategy: &'static dyn Strategy,
    /// Registers the kind's OpenAPI schema (from k8s-openapi) with a schema generator.
    pub register_schema: fn(&mut schemars::SchemaGenerator),
    /// The verbs served (discovery lists them; any other is 405).
    pub verbs: &'static [&'static str],
    /// Subresources, in discovery order.
    pub subresources: &'static [Subresource],
    /// Admission plugins a create goes through.
    pub admission: &'static [Admission],
    /// What an object of this kind grants (RBAC kinds), checked against the writer's own.
    pub grants: Option<Grants>,
    /// A create-only kind that is computed, never stored (access reviews, token reviews).
    pub computed: Option<Computed>,
}

/// Registers `T`'s schema, and every schema it references, with the generator.
pub fn register<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) {
    g.subschema_for::<T>();
}

/// The name of a kind's schema, as Kubernetes names it (`io.k8s.api.core.v1.ConfigMap`).
pub fn schema_name(r: &Resource) -> String {
    let group = if r.group.is_empty() { "core".to_string() } else { r.group.split('.').next().unwrap_or_default().to_string() };
    format!("io.k8s.api.{group}.{}.{}", r.version, r.kind)
}

pub fn schema_registrar(r: &Resource) -> fn(&mut schemars::SchemaGenerator) {
    r.register_schema
}

impl Resource {
    /// The one resource whose objects are the namespaces of the others: a path
    /// `/api/v1/namespaces/NAME` names one of them, and its attributes' namespace is its name
    /// (as k8s.io/apiserver's RequestInfoFactory treats "namespaces").
    pub fn names_namespaces(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    pub fn serves(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<Subresource> {
        self.subresources.iter().copied().find(|s| s.name() == name)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The storage key prefix, kube-apiserver's layout: `/registry/<resource>/` (with the
    /// group for non-core groups other than the legacy ones).
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.plural)
    }

    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}{}/{}", self.key_prefix(), namespace, name)
        } else {
            format!("{}{}", self.key_prefix(), name)
        }
    }

    /// The value of a field for field selectors; None when the field is not selectable.
    pub fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "metadata.name" => Some(crate::object::name(obj).to_string()),
            "metadata.namespace" if self.namespaced => Some(crate::object::namespace(obj).to_string()),
            f if self.selectable_fields.contains(&f) => Some(self.strategy.field_value(obj, f)),
            _ => None,
        }
    }
}

/// Per-kind behaviour. Every method has a sensible default for simple kinds.
pub trait Strategy: Sync {
    /// Type-checks the body and drops fields the kind does not have, returning their paths.
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError>;
    /// Defaulting and normalisation on create (after roundtrip, before validation).
    fn prepare_create(&self, _obj: &mut Value) -> ApiResult<()> {
        Ok(())
    }
    /// Normalisation on update; `old` is the stored object.
    fn prepare_update(&self, new: &mut Value, old: &Value) -> ApiResult<()> {
        self.prepare_create(new)?;
        let _ = old;
        Ok(())
    }
    fn validate(&self, _obj: &Value, _errs: &mut Vec<FieldError>) {}
    fn validate_update(&self, new: &Value, _old: &Value, errs: &mut Vec<FieldError>) {
        self.validate(new, errs)
    }
    /// Does a change outside metadata bump metadata.generation?
    fn tracks_generation(&self) -> bool {
        false
    }
    fn columns(&self) -> &'static [Column] {
        &DEFAULT_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(crate::object::name(obj)), json!(crate::object::age(obj))]
    }
    fn field_value(&self, _obj: &Value, _field: &str) -> String {
        String::new()
    }

    // Status (kube's status strategies: PrepareForUpdate and ValidateUpdate of `/status`).

    /// What a status write makes of the stored object: by default the stored object with the
    /// incoming status and nothing else of it (the registry has checked the resourceVersion
    /// precondition before).
    fn prepare_status_update(&self, new: &mut Value, old: &Value) {
        let status = new.get("status").cloned().unwrap_or_else(|| json!({}));
        *new = old.clone();
        new["status"] = status;
    }
    fn validate_status_update(&self, _new: &Value, _old: &Value, _errs: &mut Vec<FieldError>) {}

    // Deletion (kube's RESTDeleteStrategy and RESTGracefulDeleteStrategy).

    /// A name that can never be deleted (the NamespaceLifecycle plugin's immortal namespaces).
    fn undeletable(&self, _name: &str) -> bool {
        false
    }
    /// Whether a deletion may wait a grace period (pods); a second deletion with grace 0 then
    /// removes the object at once.
    fn graceful_deletion(&self) -> bool {
        false
    }
    /// The grace period a deletion of `current` waits (`requested`: gracePeriodSeconds);
    /// `None` or 0 deletes without one.
    fn deletion_grace(&self, _current: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }
    /// Whether a deletion waits for more than metadata.finalizers (a namespace's
    /// spec.finalizers).
    fn deletion_waits(&self, _current: &Value) -> bool {
        false
    }
    /// What an object shows while its deletion is pending, besides deletionTimestamp (a
    /// namespace's phase).
    fn mark_deleting(&self, _obj: &mut Value) {}
}

/// A body that does not fit its kind's type (a string where a count belongs, say): what the
/// type check found, which the API server answers as kube's decoder does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

impl From<&str> for TypeError {
    fn from(s: &str) -> Self {
        TypeError(s.into())
    }
}

impl From<String> for TypeError {
    fn from(s: String) -> Self {
        TypeError(s)
    }
}

impl TypeError {
    /// kube's 400 for a body its decoder cannot read as `res`'s kind.
    pub fn for_kind(&self, res: &Resource) -> crate::ApiError {
        crate::ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: {}", res.kind, res.version, res.kind, self.0))
    }
}

/// Deserialises into the k8s-openapi type and back: type errors surface here, and fields the
/// type does not have are dropped and reported (for fieldValidation).
pub fn roundtrip_as<T: serde::de::DeserializeOwned + serde::Serialize>(obj: Value) -> Result<(Value, Vec<String>), TypeError> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| TypeError(e.to_string()))?;
    let back = serde_json::to_value(&typed).map_err(|e| TypeError(e.to_string()))?;
    let mut unknown = Vec::new();
    unknown_fields(&obj, &back, "", &mut unknown);
    Ok((back, unknown))
}

fn unknown_fields(input: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (input, kept) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None if !v.is_null() && !is_empty_container(v) => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (idx, (a, b)) in i.iter().zip(k.iter()).enumerate() {
                unknown_fields(a, b, &format!("{path}[{idx}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty_container(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty()) || matches!(v, Value::Array(a) if a.is_empty())
}
