//! RBAC kinds (`rbac.authorization.k8s.io/v1`): Role, ClusterRole, RoleBinding,
//! ClusterRoleBinding, with pkg/apis/rbac/validation's rules and messages. Escalation checks
//! need the authorizer and live with it in the server.

use serde_json::{json, Value};

use crate::resource::Column;
use crate::resource::{register, roundtrip_as, Grants, Resource, Strategy, TypeError, STANDARD_VERBS};
use crate::validation::{FieldError, NameRule};

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn validate_rules(obj: &Value, namespaced: bool, errs: &mut Vec<FieldError>) {
    let Some(rules) = obj["rules"].as_array() else { return };
    for (i, r) in rules.iter().enumerate() {
        let p = format!("rules[{i}]");
        if strings(&r["verbs"]).is_empty() {
            errs.push(FieldError::required(format!("{p}.verbs"), "verbs must contain at least one value"));
        }
        let urls = strings(&r["nonResourceURLs"]);
        if !urls.is_empty() {
            let shown = format!("[]string{{{}}}", urls.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", "));
            if namespaced {
                errs.push(FieldError::invalid_raw(format!("{p}.nonResourceURLs"), shown.clone(), "namespaced rules cannot apply to non-resource URLs"));
            }
            if !strings(&r["apiGroups"]).is_empty() || !strings(&r["resources"]).is_empty() || !strings(&r["resourceNames"]).is_empty() {
                errs.push(FieldError::invalid_raw(format!("{p}.nonResourceURLs"), shown, "rules cannot apply to both regular resources and non-resource URLs"));
            }
            continue;
        }
        if strings(&r["apiGroups"]).is_empty() {
            errs.push(FieldError::required(format!("{p}.apiGroups"), "resource rules must supply at least one api group"));
        }
        if strings(&r["resources"]).is_empty() {
            errs.push(FieldError::required(format!("{p}.resources"), "resource rules must supply at least one resource"));
        }
    }
}

fn created_at(obj: &Value) -> Value {
    obj["metadata"]["creationTimestamp"].clone()
}

pub struct RoleStrategy {
    namespaced: bool,
}

impl Strategy for RoleStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        if self.namespaced {
            roundtrip_as::<k8s_openapi::api::rbac::v1::Role>(obj)
        } else {
            roundtrip_as::<k8s_openapi::api::rbac::v1::ClusterRole>(obj)
        }
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        validate_rules(obj, self.namespaced, errs);
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::ROLE_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(crate::object::name(obj)), created_at(obj)]
    }
}

pub struct BindingStrategy {
    namespaced: bool,
}

const SUBJECT_KINDS: &[&str] = &["ServiceAccount", "User", "Group"];

impl Strategy for BindingStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        if self.namespaced {
            roundtrip_as::<k8s_openapi::api::rbac::v1::RoleBinding>(obj)
        } else {
            roundtrip_as::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(obj)
        }
    }
    fn prepare_create(&self, obj: &mut Value) -> crate::ApiResult<()> {
        // Subjects of kind User and Group default their apiGroup, as the v1 defaulting does.
        if let Some(subjects) = obj.get_mut("subjects").and_then(serde_json::Value::as_array_mut) {
            for s in subjects {
                if matches!(s["kind"].as_str(), Some("User" | "Group")) && s["apiGroup"].as_str().unwrap_or_default().is_empty() {
                    s["apiGroup"] = json!("rbac.authorization.k8s.io");
                }
            }
        }
        Ok(())
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        let rr = &obj["roleRef"];
        let kinds: &[&str] = if self.namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
        let kind = rr["kind"].as_str().unwrap_or_default();
        if !kinds.contains(&kind) {
            errs.push(FieldError::not_supported("roleRef.kind", kind, kinds));
        }
        if rr["apiGroup"].as_str().unwrap_or_default() != "rbac.authorization.k8s.io" {
            errs.push(FieldError::not_supported("roleRef.apiGroup", rr["apiGroup"].as_str().unwrap_or_default(), &["rbac.authorization.k8s.io"]));
        }
        if rr["name"].as_str().unwrap_or_default().is_empty() {
            errs.push(FieldError::required("roleRef.name", ""));
        }
        // ValidateRoleBindingSubject.
        for (i, s) in obj["subjects"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            let p = format!("subjects[{i}]");
            let k = s["kind"].as_str().unwrap_or_default();
            let name = s["name"].as_str().unwrap_or_default();
            let group = s["apiGroup"].as_str().unwrap_or_default();
            if name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            }
            match k {
                "ServiceAccount" => {
                    if !name.is_empty() {
                        for m in crate::validation::dns1123_subdomain(name) {
                            errs.push(FieldError::invalid(format!("{p}.name"), name, m));
                        }
                    }
                    if !group.is_empty() {
                        errs.push(FieldError::not_supported(format!("{p}.apiGroup"), group, &[""]));
                    }
                    if !self.namespaced && s["namespace"].as_str().unwrap_or_default().is_empty() {
                        errs.push(FieldError::required(format!("{p}.namespace"), ""));
                    }
                }
                "User" | "Group" if group != "rbac.authorization.k8s.io" => {
                    errs.push(FieldError::not_supported(format!("{p}.apiGroup"), group, &["rbac.authorization.k8s.io"]));
                }
                "User" | "Group" => {}
                _ => errs.push(FieldError::not_supported(format!("{p}.kind"), k, SUBJECT_KINDS)),
            }
        }
    }
    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        if new["roleRef"] != old["roleRef"] {
            errs.push(FieldError::invalid_raw("roleRef", new["roleRef"].to_string(), "cannot change roleRef"));
        }
        self.validate(new, errs);
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::BINDING_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let subjects = obj["subjects"].as_array().cloned().unwrap_or_default();
        let of = |kind: &str| {
            subjects
                .iter()
                .filter(|s| s["kind"] == kind)
                .map(|s| {
                    if kind == "ServiceAccount" {
                        format!("{}/{}", s["namespace"].as_str().unwrap_or_default(), s["name"].as_str().unwrap_or_default())
                    } else {
                        s["name"].as_str().unwrap_or_default().to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            json!(crate::object::name(obj)),
            json!(format!("{}/{}", obj["roleRef"]["kind"].as_str().unwrap_or_default(), obj["roleRef"]["name"].as_str().unwrap_or_default())),
            json!(crate::object::age(obj)),
            json!(of("User")),
            json!(of("Group")),
            json!(of("ServiceAccount")),
        ]
    }
}

const GROUP: &str = "rbac.authorization.k8s.io";

pub static ROLES: Resource = Resource {
    group: GROUP,
    version: "v1",
    kind: "Role",
    plural: "roles",
    singular: "role",
    namespaced: true,
    short_names: &[],
    categories: &[],
    name_rule: NameRule::PathSegment,
    selectable_fields: &[],
    strategy: &RoleStrategy { namespaced: true },
    register_schema: register::<k8s_openapi::api::rbac::v1::Role>,
    verbs: STANDARD_VERBS,
    subresources: &[],
    admission: &[],
    grants: Some(Grants::Rules { aggregation: false }),
    computed: None,
};

pub static CLUSTERROLES: Resource = Resource {
    group: GROUP,
    version: "v1",
    kind: "ClusterRole",
    plural: "clusterroles",
    singular: "clusterrole",
    namespaced: false,
    short_names: &[],
    categories: &[],
    name_rule: NameRule::PathSegment,
    selectable_fields: &[],
    strategy: &RoleStrategy { namespaced: false },
    register_schema: register::<k8s_openapi::api::rbac::v1::ClusterRole>,
    verbs: STANDARD_VERBS,
    subresources: &[],
    admission: &[],
    grants: Some(Grants::Rules { aggregation: true }),
    computed: None,
};

pub static ROLEBINDINGS: Resource = Resource {
    group: GROUP,
    version: "v1",
    kind: "RoleBinding",
    plural: "rolebindings",
    singular: "rolebinding",
    namespaced: true,
    short_names: &[],
    categories: &[],
    name_rule: NameRule::PathSegment,
    selectable_fields: &[],
    strategy: &BindingStrategy { namespaced: true },
    register_schema: register::<k8s_openapi::api::rbac::v1::RoleBinding>,
    verbs: STANDARD_VERBS,
    subresources: &[],
    admission: &[],
    grants: Some(Grants::RoleRef),
    computed: None,
};

pub static CLUSTERROLEBINDINGS: Resource = Resource {
    group: GROUP,
    version: "v1",
    kind: "ClusterRoleBinding",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    namespaced: false,
    short_names: &[],
    categories: &[],
    name_rule: NameRule::PathSegment,
    selectable_fields: &[],
    strategy: &BindingStrategy { namespaced: false },
    register_schema: register::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>,
    verbs: STANDARD_VERBS,
    subresources: &[],
    admission: &[],
    grants: Some(Grants::RoleRef),
    computed: None,
};
