//! Identity and authorization: who a request comes from (client certificates, static tokens,
//! ServiceAccount JWTs), and whether RBAC lets them do it. Knows nothing of storage: RBAC
//! objects come through [`rbac::RbacSource`], ServiceAccounts through the caller.

pub mod bootstrap;
pub mod rbac;
pub mod tokenfile;
pub mod tokens;

use std::collections::BTreeMap;

/// An authenticated (or impersonated) user, as kube-apiserver's user.Info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// Adds `system:authenticated`, as the authenticator chain does for every authenticated user.
    pub fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated" || g == "system:unauthenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }

    /// The user of a ServiceAccount, with its groups.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        UserInfo {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            uid: uid.to_string(),
            groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}"), "system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    /// (namespace, name) if this is a ServiceAccount's user name.
    pub fn service_account_parts(name: &str) -> Option<(&str, &str)> {
        let rest = name.strip_prefix("system:serviceaccount:")?;
        let (ns, sa) = rest.split_once(':')?;
        (!ns.is_empty() && !sa.is_empty() && !sa.contains(':')).then_some((ns, sa))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = self.uid.clone().into();
        }
        if !self.extra.is_empty() {
            v["extra"] = serde_json::to_value(&self.extra).unwrap_or_default();
        }
        v
    }
}

/// What a request wants to do (k8s.io/apiserver authorizer.Attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    pub namespace: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub resource_request: bool,
    /// The URL path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    /// kube-apiserver's Forbidden message for these attributes, with an optional reason.
    pub fn forbidden_message(&self, reason: &str) -> String {
        let what = if !self.resource_request {
            format!("User {:?} cannot {} path {:?}", self.user.name, self.verb, self.path)
        } else {
            let resource = if self.subresource.is_empty() { self.resource.clone() } else { format!("{}/{}", self.resource, self.subresource) };
            let scope = if self.namespace.is_empty() { "at the cluster scope".to_string() } else { format!("in the namespace {:?}", self.namespace) };
            format!("User {:?} cannot {} resource {:?} in API group {:?} {scope}", self.user.name, self.verb, resource, self.api_group)
        };
        let msg = if reason.is_empty() { what } else { format!("{what}: {reason}") };
        if !self.resource_request {
            return format!("forbidden: {msg}");
        }
        let gr = if self.api_group.is_empty() { self.resource.clone() } else { format!("{}.{}", self.resource, self.api_group) };
        if self.name.is_empty() {
            format!("{gr} is forbidden: {msg}")
        } else {
            format!("{gr} {:?} is forbidden: {msg}", self.name)
        }
    }
}
