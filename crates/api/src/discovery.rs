//! Discovery documents: aggregated (`apidiscovery.k8s.io/v2` and `v2beta1`, which kubectl
//! 1.27–1.29 ask for) and the legacy per-group documents, all generated from the registry.

use serde_json::{json, Value};

use crate::kinds::{self, Resource};

fn scope(r: &Resource) -> &'static str {
    if r.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": scope(r),
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (g, ver, k) = s.response_kind(r);
            json!({"subresource": s.name(), "responseKind": {"group": g, "version": ver, "kind": k}, "verbs": s.verbs()})
        })
        .collect();
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

/// `apidiscovery.k8s.io/<version>` APIGroupDiscoveryList for `/api` (core) or `/apis` (groups).
pub fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = kinds::group_versions()
        .into_iter()
        .filter(|(g, _, _)| g.is_empty() == core)
        .map(|(g, v, rs)| {
            let mut meta = json!({});
            if !core {
                meta["name"] = json!(g);
            }
            json!({
                "metadata": meta,
                "versions": [{"version": v, "resources": rs.iter().map(|r| aggregated_resource(r)).collect::<Vec<_>>(), "freshness": "Current"}],
            })
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn group_entry(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for (g, v, _) in kinds::group_versions() {
        if g.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(og, _)| *og == g) {
            Some((_, vs)) => vs.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out
}

pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups().iter().map(|(g, vs)| group_entry(g, vs)).collect::<Vec<_>>()})
}

pub fn api_group(group: &str) -> Option<Value> {
    groups().into_iter().find(|(g, _)| *g == group).map(|(g, vs)| {
        let mut v = group_entry(g, &vs);
        v["kind"] = json!("APIGroup");
        v["apiVersion"] = json!("v1");
        v
    })
}

/// discovery.StorageVersionHash: the first 8 bytes of SHA-256 over "group/version/kind", in
/// base64. Clients (the storage version migrator, kubectl's cache) compare it across servers.
fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let sum = sha2::Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&sum[..8])
}

/// The legacy APIResourceList of one group-version, or None if it is not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let (_, _, rs) = kinds::group_versions().into_iter().find(|(g, v, _)| *g == group && *v == version)?;
    let mut resources = Vec::new();
    for r in rs {
        let mut v = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs});
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        if r.computed.is_none() {
            v["storageVersionHash"] = json!(storage_version_hash(r.group, r.version, r.kind));
        }
        resources.push(v);
        for sub in r.subresources {
            let (_, _, k) = sub.response_kind(r);
            resources
                .push(json!({"name": format!("{}/{}", r.plural, sub.name()), "singularName": "", "namespaced": r.namespaced, "kind": k, "verbs": sub.verbs()}));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hashes kube-apiserver publishes for these kinds (from a real cluster's discovery).
    #[test]
    fn storage_version_hashes_match_kubernetes() {
        let list = resource_list("", "v1").unwrap();
        let hash = |name: &str| list["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["storageVersionHash"].clone();
        assert_eq!(hash("configmaps"), "qFsyl6wFWjQ=");
        assert_eq!(hash("secrets"), "S6u1pOWzb84=");
        assert_eq!(hash("namespaces"), "Q3oi5N2YM8M=");
    }
}
