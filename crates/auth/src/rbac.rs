//! RBAC with Kubernetes' semantics (plugin/pkg/auth/authorizer/rbac): ClusterRoleBindings are
//! visited first, then the request namespace's RoleBindings; the first rule that allows wins;
//! there are no deny rules. Also the escalation check (`covers`) used when roles and bindings
//! are written.

use serde::Deserialize;
use serde_json::Value;

use crate::{Attributes, UserInfo};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RoleRef {
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

fn has(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

impl PolicyRule {
    pub fn from_value(v: &Value) -> Vec<PolicyRule> {
        v["rules"].as_array().map(|a| a.iter().filter_map(|r| serde_json::from_value(r.clone()).ok()).collect()).unwrap_or_default()
    }

    /// Does this rule allow the request?
    pub fn allows(&self, a: &Attributes) -> bool {
        if !has(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.non_resource_urls.iter().any(|u| u == "*" || *u == a.path || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*'))));
        }
        if !has(&self.api_groups, &a.api_group) {
            return false;
        }
        let combined = if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
        let resource_ok = self.resources.iter().any(|r| r == "*" || *r == combined || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource)));
        resource_ok && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| *n == a.name))
    }

    /// kube's CompactString rendering, used in escalation errors.
    pub fn compact_string(&self) -> String {
        let q = |v: &[String]| format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "));
        let mut parts = Vec::new();
        if !self.api_groups.is_empty() {
            parts.push(format!("APIGroups:{}", q(&self.api_groups)));
        }
        if !self.resources.is_empty() {
            parts.push(format!("Resources:{}", q(&self.resources)));
        }
        if !self.non_resource_urls.is_empty() {
            parts.push(format!("NonResourceURLs:{}", q(&self.non_resource_urls)));
        }
        if !self.resource_names.is_empty() {
            parts.push(format!("ResourceNames:{}", q(&self.resource_names)));
        }
        if !self.verbs.is_empty() {
            parts.push(format!("Verbs:{}", q(&self.verbs)));
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// Does the binding subject name this user? (`appliesTo`)
pub fn subject_matches(s: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.groups.iter().any(|g| *g == s.name),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() { binding_namespace } else { s.namespace.as_str() };
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    }
}

fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    match s.kind.as_str() {
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() { binding_namespace } else { s.namespace.as_str() };
            format!("ServiceAccount \"{}/{ns}\"", s.name)
        }
        k => format!("{k} \"{}\"", s.name),
    }
}

/// Where RBAC objects come from (the watch cache, in the server).
pub trait RbacSource: Send + Sync {
    fn cluster_role_bindings(&self) -> Vec<std::sync::Arc<Value>>;
    fn role_bindings(&self, namespace: &str) -> Vec<std::sync::Arc<Value>>;
    fn cluster_role(&self, name: &str) -> Option<std::sync::Arc<Value>>;
    fn role(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<Value>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    /// No rule allows it; the reason is empty unless rule resolution hit errors.
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

fn subjects(b: &Value) -> Vec<Subject> {
    b["subjects"].as_array().map(|a| a.iter().filter_map(|s| serde_json::from_value(s.clone()).ok()).collect()).unwrap_or_default()
}

fn role_ref(b: &Value) -> RoleRef {
    serde_json::from_value(b["roleRef"].clone()).unwrap_or_default()
}

/// Visits the rules that apply to `user` in `namespace` ("" = cluster scope only), with a
/// description of the binding that granted each; stops when `visit` returns false.
pub fn visit_rules(src: &dyn RbacSource, user: &UserInfo, namespace: &str, visit: &mut dyn FnMut(&str, &PolicyRule) -> bool, errors: &mut Vec<String>) {
    for b in src.cluster_role_bindings() {
        let bname = b["metadata"]["name"].as_str().unwrap_or_default();
        let Some(subject) = subjects(&b).into_iter().find(|s| subject_matches(s, user, "")) else { continue };
        let rr = role_ref(&b);
        let Some(role) = src.cluster_role(&rr.name) else {
            errors.push(format!("clusterrole.rbac.authorization.k8s.io \"{}\" not found", rr.name));
            continue;
        };
        let why = format!("RBAC: allowed by ClusterRoleBinding \"{bname}\" of ClusterRole \"{}\" to {}", rr.name, describe_subject(&subject, ""));
        for rule in PolicyRule::from_value(&role) {
            if !visit(&why, &rule) {
                return;
            }
        }
    }
    if namespace.is_empty() {
        return;
    }
    for b in src.role_bindings(namespace) {
        let bname = b["metadata"]["name"].as_str().unwrap_or_default();
        let Some(subject) = subjects(&b).into_iter().find(|s| subject_matches(s, user, namespace)) else { continue };
        let rr = role_ref(&b);
        let role = if rr.kind == "ClusterRole" { src.cluster_role(&rr.name) } else { src.role(namespace, &rr.name) };
        let Some(role) = role else {
            errors.push(format!("{}.rbac.authorization.k8s.io \"{}\" not found", rr.kind.to_lowercase(), rr.name));
            continue;
        };
        let why = format!("RBAC: allowed by RoleBinding \"{bname}/{namespace}\" of {} \"{}\" to {}", rr.kind, rr.name, describe_subject(&subject, namespace));
        for rule in PolicyRule::from_value(&role) {
            if !visit(&why, &rule) {
                return;
            }
        }
    }
}

/// Authorizes a request: `system:masters` always, then RBAC.
pub fn authorize(src: &dyn RbacSource, a: &Attributes) -> Decision {
    if a.user.groups.iter().any(|g| g == "system:masters") {
        return Decision::Allow(String::new());
    }
    let mut allowed = None;
    let mut errors = Vec::new();
    visit_rules(
        src,
        &a.user,
        &a.namespace,
        &mut |why, rule| {
            if rule.allows(a) {
                allowed = Some(why.to_string());
                false
            } else {
                true
            }
        },
        &mut errors,
    );
    match allowed {
        Some(why) => Decision::Allow(why),
        None if errors.is_empty() => Decision::Deny(String::new()),
        None => Decision::Deny(format!("RBAC: {}", errors.join(", "))),
    }
}

/// Every rule that applies to the user in `namespace` (for SelfSubjectRulesReview and
/// escalation checks).
pub fn rules_for(src: &dyn RbacSource, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    visit_rules(
        src,
        user,
        namespace,
        &mut |_, r| {
            rules.push(r.clone());
            true
        },
        &mut errors,
    );
    (rules, errors)
}

/// An indivisible permission: one verb on one group/resource (and name), or on one URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Atom {
    Resource { group: String, resource: String, verb: String, name: Option<String> },
    Url { url: String, verb: String },
}

fn atoms(r: &PolicyRule) -> Vec<Atom> {
    let mut out = Vec::new();
    for verb in &r.verbs {
        for group in &r.api_groups {
            for resource in &r.resources {
                if r.resource_names.is_empty() {
                    out.push(Atom::Resource { group: group.clone(), resource: resource.clone(), verb: verb.clone(), name: None });
                } else {
                    for n in &r.resource_names {
                        out.push(Atom::Resource { group: group.clone(), resource: resource.clone(), verb: verb.clone(), name: Some(n.clone()) });
                    }
                }
            }
        }
        for url in &r.non_resource_urls {
            out.push(Atom::Url { url: url.clone(), verb: verb.clone() });
        }
    }
    out
}

fn atom_covered(owner: &PolicyRule, a: &Atom) -> bool {
    match a {
        Atom::Resource { group, resource, verb, name } => {
            let verb_ok = owner.verbs.iter().any(|v| v == "*" || v == verb);
            let group_ok = owner.api_groups.iter().any(|g| g == "*" || g == group);
            let sub = resource.split_once('/').map(|(_, s)| format!("*/{s}"));
            let res_ok = owner.resources.iter().any(|r| r == "*" || r == resource || sub.as_deref() == Some(r.as_str()));
            let name_ok = owner.resource_names.is_empty() || name.as_ref().is_some_and(|n| owner.resource_names.contains(n));
            verb_ok && group_ok && res_ok && name_ok
        }
        Atom::Url { url, verb } => {
            owner.verbs.iter().any(|v| v == "*" || v == verb)
                && owner.non_resource_urls.iter().any(|u| u == "*" || u == url || (u.ends_with('*') && url.starts_with(u.trim_end_matches('*'))))
        }
    }
}

/// How many atoms the escalation check breaks rules into, at most, across one request. A rule
/// is the product of its lists (verbs × groups × resources × names), so a 5 KB Role can stand
/// for billions of atoms; past this budget, a rule that no single rule of the owner covers is
/// reported as not held, whole, which errs on the side of refusing.
const MAX_ATOMS: usize = 100_000;

/// A rule with each list's repeated entries dropped.
fn deduplicated(r: &PolicyRule) -> PolicyRule {
    let dedup = |v: &Vec<String>| {
        let mut seen = std::collections::HashSet::new();
        v.iter().filter(|x| seen.insert(x.as_str())).cloned().collect::<Vec<_>>()
    };
    PolicyRule {
        verbs: dedup(&r.verbs),
        api_groups: dedup(&r.api_groups),
        resources: dedup(&r.resources),
        resource_names: dedup(&r.resource_names),
        non_resource_urls: dedup(&r.non_resource_urls),
    }
}

fn atom_count(r: &PolicyRule) -> usize {
    let per_verb = r.api_groups.len().saturating_mul(r.resources.len()).saturating_mul(r.resource_names.len().max(1)).saturating_add(r.non_resource_urls.len());
    r.verbs.len().saturating_mul(per_verb)
}

/// Whether one rule of the owner covers every atom of `servant`: coverage is a conjunction
/// over the dimensions, so each list is checked on its own, without forming the product.
fn covers_whole(owner: &PolicyRule, servant: &PolicyRule) -> bool {
    let verbs = servant.verbs.iter().all(|v| owner.verbs.iter().any(|o| o == "*" || o == v));
    let groups = servant.api_groups.iter().all(|g| owner.api_groups.iter().any(|o| o == "*" || o == g));
    let resources = servant.resources.iter().all(|r| {
        let sub = r.split_once('/').map(|(_, s)| format!("*/{s}"));
        owner.resources.iter().any(|o| o == "*" || o == r || sub.as_deref() == Some(o.as_str()))
    });
    let names =
        owner.resource_names.is_empty() || (!servant.resource_names.is_empty() && servant.resource_names.iter().all(|n| owner.resource_names.contains(n)));
    let urls = servant
        .non_resource_urls
        .iter()
        .all(|url| owner.non_resource_urls.iter().any(|u| u == "*" || u == url || (u.ends_with('*') && url.starts_with(u.trim_end_matches('*')))));
    let resource_part = servant.api_groups.is_empty() || servant.resources.is_empty() || (groups && resources && names);
    verbs && resource_part && urls
}

/// The parts of `servant` that `owner` does not cover, compacted into rules (empty = covered).
pub fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut budget = MAX_ATOMS;
    let mut too_large = Vec::new();
    let mut missing: Vec<Atom> = Vec::new();
    for rule in servant.iter().map(deduplicated) {
        if owner.iter().any(|o| covers_whole(o, &rule)) {
            continue;
        }
        let n = atom_count(&rule);
        if n > budget {
            too_large.push(rule);
            continue;
        }
        budget -= n;
        missing.extend(atoms(&rule).into_iter().filter(|a| !owner.iter().any(|o| atom_covered(o, a))));
    }
    missing.sort();
    missing.dedup();
    // One rule per (group, resource, name) or URL, with its verbs; found by index, so that
    // compacting many atoms is not a scan of the rules made so far for each.
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut index: std::collections::HashMap<(Option<String>, String, String, Option<String>), usize> = Default::default();
    for a in missing {
        let (key, verb, make) = match a {
            Atom::Resource { group, resource, verb, name } => {
                let rule = PolicyRule {
                    verbs: vec![],
                    api_groups: vec![group.clone()],
                    resources: vec![resource.clone()],
                    resource_names: name.clone().into_iter().collect(),
                    non_resource_urls: vec![],
                };
                ((Some(group), resource, String::new(), name), verb, rule)
            }
            Atom::Url { url, verb } => ((None, String::new(), url.clone(), None), verb, PolicyRule { non_resource_urls: vec![url], ..Default::default() }),
        };
        let i = *index.entry(key).or_insert_with(|| {
            out.push(make);
            out.len() - 1
        });
        out[i].verbs.push(verb);
    }
    out.extend(too_large);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            user: UserInfo::default(),
            verb: verb.into(),
            namespace: "ns".into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            resource_request: true,
            path: String::new(),
        }
    }

    #[test]
    fn resource_matching_follows_kubernetes() {
        let r = rule(serde_json::json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}));
        assert!(r.allows(&attrs("get", "", "pods", "", "p")));
        assert!(!r.allows(&attrs("get", "", "pods", "log", "p")), "pods does not match pods/log");
        let star = rule(serde_json::json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        assert!(star.allows(&attrs("delete", "apps", "deployments", "scale", "d")));
        let any_scale = rule(serde_json::json!({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["*/scale"]}));
        assert!(any_scale.allows(&attrs("get", "apps", "deployments", "scale", "d")));
        let pods_star = rule(serde_json::json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/*"]}));
        assert!(!pods_star.allows(&attrs("get", "", "pods", "log", "p")), "RBAC has no pods/* wildcard");
        let named = rule(serde_json::json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]}));
        assert!(named.allows(&attrs("get", "", "secrets", "", "a")));
        assert!(!named.allows(&attrs("get", "", "secrets", "", "b")));
        assert!(!named.allows(&attrs("list", "", "secrets", "", "")));
        let urls = rule(serde_json::json!({"verbs": ["get"], "nonResourceURLs": ["/apis/*", "/version"]}));
        let mut a = attrs("get", "", "", "", "");
        a.resource_request = false;
        a.path = "/apis/apps/v1".into();
        assert!(urls.allows(&a));
        a.path = "/apis".into();
        assert!(!urls.allows(&a));
    }

    #[test]
    fn covers_and_compact_strings() {
        let owner = vec![rule(serde_json::json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps", "secrets"]}))];
        let servant = vec![rule(serde_json::json!({"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["x"]}))];
        let missing = uncovered(&owner, &servant);
        assert_eq!(
            missing.iter().map(PolicyRule::compact_string).collect::<Vec<_>>(),
            ["{APIGroups:[\"\"], Resources:[\"secrets\"], ResourceNames:[\"x\"], Verbs:[\"delete\"]}"]
        );
        assert!(
            uncovered(&owner, &[rule(serde_json::json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["y"]}))]).is_empty()
        );
    }

    #[test]
    fn escalation_checks_are_bounded_whatever_the_rule_multiplies_to() {
        let owner = vec![rule(serde_json::json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}))];
        // 300 copies in each list: the product is 8.1e9 atoms, or 1 once deduplicated.
        let copies = |s: &str| vec![s.to_string(); 300];
        let repeated = rule(serde_json::json!({"verbs": copies("get"), "apiGroups": copies(""), "resources": copies("secrets"), "resourceNames": copies("x")}));
        let started = std::time::Instant::now();
        assert_eq!(uncovered(&owner, &[repeated]).len(), 1);
        // 300 distinct values each: reported whole, not broken down.
        let distinct = |p: &str| (0..300).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        let wide = rule(serde_json::json!({"verbs": distinct("v"), "apiGroups": distinct("g"), "resources": distinct("r"), "resourceNames": distinct("n")}));
        let missing = uncovered(&owner, std::slice::from_ref(&wide));
        assert_eq!(missing, vec![wide]);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        // A rule one owner rule covers as a whole is covered, however wide.
        let admin = vec![rule(serde_json::json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}))];
        assert!(uncovered(&admin, &[rule(serde_json::json!({"verbs": distinct("v"), "apiGroups": distinct("g"), "resources": distinct("r")}))]).is_empty());
    }
}
