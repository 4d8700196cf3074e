//! Authorization in the request path: request attributes (k8s.io/apiserver RequestInfo),
//! impersonation, RBAC over the watch cache, and kube-apiserver's Forbidden errors.

use std::sync::Arc;

use auth::rbac::{self, Decision, RbacSource};
use auth::{Attributes, UserInfo};
use axum::http::{HeaderMap, Method};
use serde_json::Value;

use api::kinds::Resource;
use api::resource::Grants;
use api::selector::FieldSelector;
use api::status::Details;
use api::{ApiError, ApiResult};

use crate::request::{Query, Target, Verb};
use crate::rest::Registry;

/// RBAC objects straight from the watch cache.
pub struct CacheRbac(pub Arc<Registry>);

impl CacheRbac {
    fn list(&self, prefix: &str) -> Vec<Arc<Value>> {
        self.0.cache.list(prefix, None).map(|(entries, _)| entries.into_iter().filter_map(|(_, e)| e.object.ok()).collect()).unwrap_or_default()
    }
    fn one(&self, key: &str) -> Option<Arc<Value>> {
        self.0.cache.get(key).and_then(|e| e.object.ok())
    }
}

impl RbacSource for CacheRbac {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        self.list("/registry/clusterrolebindings/")
    }
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.list(&format!("/registry/rolebindings/{namespace}/"))
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<Value>> {
        self.one(&format!("/registry/clusterroles/{name}"))
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.one(&format!("/registry/roles/{namespace}/{name}"))
    }
}

/// The attributes of a resource request, with the verb the request was parsed with.
pub fn resource_attributes(user: &UserInfo, method: &Method, verb: Verb, t: &Target, q: &Query) -> Attributes {
    let mut name = t.name.clone().unwrap_or_default();
    let verb = verb.as_str(method);
    let verb = verb.as_str();
    // A list or watch pinned to one name by a field selector is authorized as that name.
    if matches!(verb, "list" | "watch") {
        if let Ok(fs) = FieldSelector::parse(q.get("fieldSelector").unwrap_or("")) {
            if let Some(n) = fs.exact_name() {
                if !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('%') {
                    name = n.to_string();
                }
            }
        }
    }
    let namespace = if t.res.names_namespaces() { name.clone() } else { t.namespace.clone() };
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        namespace,
        api_group: t.res.group.into(),
        resource: t.res.plural.into(),
        subresource: t.subresource.clone().unwrap_or_default(),
        name,
        resource_request: true,
        path: String::new(),
    }
}

pub fn non_resource_attributes(user: &UserInfo, method: &Method, path: &str) -> Attributes {
    Attributes { user: user.clone(), verb: method.as_str().to_lowercase(), path: path.into(), resource_request: false, ..Default::default() }
}

/// 403 Forbidden for these attributes, as kube-apiserver words it.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let mut e = ApiError::forbidden(a.forbidden_message(reason));
    e.details = Some(if a.resource_request {
        Details { name: a.name.clone(), group: a.api_group.clone(), kind: a.resource.clone(), ..Default::default() }
    } else {
        Details::default()
    });
    e
}

pub fn decide(src: &dyn RbacSource, a: &Attributes) -> Decision {
    rbac::authorize(src, a)
}

/// Checks the request; returns the allow reason (for audit).
pub fn authorize(src: &dyn RbacSource, a: &Attributes) -> ApiResult<String> {
    match decide(src, a) {
        Decision::Allow(why) => Ok(why),
        Decision::Deny(why) => Err(forbidden(a, &why)),
    }
}

/// Applies `Impersonate-*` headers: each part is authorized with verb `impersonate`.
pub fn impersonate(src: &dyn RbacSource, user: UserInfo, headers: &HeaderMap) -> ApiResult<UserInfo> {
    let get_all = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok().map(String::from)).collect::<Vec<_>>();
    let target_user = get_all("impersonate-user").into_iter().next();
    let groups = get_all("impersonate-group");
    let uid = get_all("impersonate-uid").into_iter().next();
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            k.as_str()
                .strip_prefix("impersonate-extra-")
                .map(|key| (percent_encoding::percent_decode_str(key).decode_utf8_lossy().to_lowercase(), v.to_str().unwrap_or_default().to_string()))
        })
        .collect();
    let Some(target) = target_user else {
        if groups.is_empty() && uid.is_none() && extras.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::bad_request("requested impersonation of groups, extra or uid without impersonating a user"));
    };
    let check = |resource: &str, group: &str, namespace: &str, name: &str, sub: &str| -> ApiResult<()> {
        let a = Attributes {
            user: user.clone(),
            verb: "impersonate".into(),
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            resource_request: true,
            path: String::new(),
        };
        authorize(src, &a).map(|_| ())
    };
    let mut out = match UserInfo::service_account_parts(&target) {
        Some((ns, sa)) => {
            check("serviceaccounts", "", ns, sa, "")?;
            if groups.is_empty() {
                UserInfo::service_account(ns, sa, "")
            } else {
                UserInfo { name: target.clone(), ..Default::default() }
            }
        }
        None => {
            check("users", "", "", &target, "")?;
            UserInfo { name: target.clone(), ..Default::default() }
        }
    };
    for g in &groups {
        check("groups", "", "", g, "")?;
        out.groups.push(g.clone());
    }
    if let Some(u) = &uid {
        check("uids", "authentication.k8s.io", "", u, "")?;
        out.uid = u.clone();
    }
    for (k, v) in &extras {
        check("userextras", "authentication.k8s.io", "", v, k)?;
        out.extra.entry(k.clone()).or_default().push(v.clone());
    }
    if target == "system:anonymous" {
        if !out.groups.iter().any(|g| g == "system:unauthenticated") {
            out.groups.push("system:unauthenticated".into());
        }
        Ok(out)
    } else {
        Ok(out.authenticated())
    }
}

/// Whether writes of `res` by `user` go through the escalation check.
pub fn escalation_checked(res: &Resource, user: &UserInfo) -> bool {
    res.grants.is_some() && !user.groups.iter().any(|g| g == "system:masters")
}

/// Escalation prevention for writes of roles and bindings (pkg/registry/rbac): allowed for
/// `system:masters`, with `escalate` (roles) or `bind` (bindings) on the role, or when the user
/// already holds every permission being granted.
pub fn check_escalation(src: &dyn RbacSource, res: &Resource, user: &UserInfo, namespace: &str, obj: &Value) -> ApiResult<()> {
    let Some(grants) = res.grants.filter(|_| escalation_checked(res, user)) else {
        return Ok(());
    };
    let name = api::object::name(obj).to_string();
    let attrs = |verb: &str, resource: &str, role_name: &str| Attributes {
        user: user.clone(),
        verb: verb.into(),
        namespace: namespace.into(),
        api_group: "rbac.authorization.k8s.io".into(),
        resource: resource.into(),
        name: role_name.into(),
        resource_request: true,
        ..Default::default()
    };
    let granted: Vec<rbac::PolicyRule> = match grants {
        Grants::Rules { aggregation } => {
            if aggregation && obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                let (held, _) = rbac::rules_for(src, user, "");
                let full = vec![
                    serde_json::from_value::<rbac::PolicyRule>(serde_json::json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})).unwrap_or_default(),
                    serde_json::from_value::<rbac::PolicyRule>(serde_json::json!({"nonResourceURLs": ["*"], "verbs": ["*"]})).unwrap_or_default(),
                ];
                if !rbac::uncovered(&held, &full).is_empty() {
                    return Err(escalation_error(res, &name, "must have cluster-admin privileges to use the aggregationRule".into()));
                }
                return Ok(());
            }
            if rbac::authorize(src, &attrs("escalate", res.plural, &name)).allowed() {
                return Ok(());
            }
            rbac::PolicyRule::from_value(obj)
        }
        Grants::RoleRef => {
            let rr: rbac::RoleRef = serde_json::from_value(obj["roleRef"].clone()).unwrap_or_default();
            let role_resource = if rr.kind == "ClusterRole" { "clusterroles" } else { "roles" };
            if rbac::authorize(src, &attrs("bind", role_resource, &rr.name)).allowed() {
                return Ok(());
            }
            let role = if rr.kind == "ClusterRole" { src.cluster_role(&rr.name) } else { src.role(namespace, &rr.name) };
            match role {
                Some(r) => rbac::PolicyRule::from_value(&r),
                None => return Err(ApiError::not_found("rbac.authorization.k8s.io", role_resource, &rr.name)),
            }
        }
    };
    let (held, errors) = rbac::rules_for(src, user, namespace);
    let missing = rbac::uncovered(&held, &granted);
    if missing.is_empty() {
        return Ok(());
    }
    let groups = format!("[{}]", user.groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(" "));
    let mut lines: Vec<String> = missing.iter().map(rbac::PolicyRule::compact_string).collect();
    lines.sort();
    let mut msg = format!("user {:?} (groups={groups}) is attempting to grant RBAC permissions not currently held:\n{}", user.name, lines.join("\n"));
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(escalation_error(res, &name, msg))
}

fn escalation_error(res: &Resource, name: &str, msg: String) -> ApiError {
    let gr = format!("{}.{}", res.plural, res.group);
    let mut e = ApiError::forbidden(if name.is_empty() { format!("{gr} is forbidden: {msg}") } else { format!("{gr} {name:?} is forbidden: {msg}") });
    e.details = Some(Details { name: name.into(), group: res.group.into(), kind: res.plural.into(), ..Default::default() });
    e
}
