//! ClusterExternalSecret, as ESO does it: one ExternalSecret (owned by the ClusterExternalSecret)
//! in every namespace its `namespaceSelectors`, `namespaceSelector` or `namespaces` pick, kept
//! equal to `externalSecretSpec`; removed from namespaces that stop matching and when the
//! ClusterExternalSecret goes. The status lists the provisioned and failed namespaces.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use crate::eso_api::{list_json, s, typed, EsoKind};

/// A LabelSelector as the string form the API's `labelSelector` parameter takes.
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", s(v))).collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = s(&e["key"]);
        let values: Vec<String> = e["values"].as_array().into_iter().flatten().map(s).collect();
        parts.push(match s(&e["operator"]).as_str() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key,
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

fn owned_by(es: &Value, uid: &Value) -> bool {
    es["metadata"]["ownerReferences"].as_array().into_iter().flatten().any(|r| r["kind"] == "ClusterExternalSecret" && r["uid"] == *uid)
}

/// One pass over every ClusterExternalSecret.
pub async fn pass(client: &Client) -> Result<(), String> {
    let all = list_json(&EsoKind::ClusterExternalSecret.api_all(client), &ListParams::default()).await?;
    let existing = list_json(&EsoKind::ExternalSecret.api_all(client), &ListParams::default()).await?;
    // Where each ClusterExternalSecret wants its ExternalSecret: uid → (name, namespaces).
    let mut wanted: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for ces in &all {
        let spec = &ces["spec"];
        let mut namespaces: BTreeSet<String> = spec["namespaces"].as_array().into_iter().flatten().map(s).collect();
        let mut selectors: Vec<Value> = spec["namespaceSelectors"].as_array().cloned().unwrap_or_default();
        if spec["namespaceSelector"].is_object() {
            selectors.push(spec["namespaceSelector"].clone());
        }
        for sel in selectors {
            let list = list_json(&Api::<Namespace>::all(client.clone()), &ListParams::default().labels(&selector_string(&sel))).await?;
            for ns in &list {
                if ns["status"]["phase"] != "Terminating" {
                    namespaces.insert(s(&ns["metadata"]["name"]));
                }
            }
        }
        let name = s(&ces["metadata"]["name"]);
        let es_name = spec["externalSecretName"].as_str().filter(|n| !n.is_empty()).unwrap_or(&name).to_string();
        let (mut provisioned, mut failed) = (Vec::new(), Vec::new());
        for ns in &namespaces {
            match ensure(client, ces, &es_name, ns, &existing).await {
                Ok(()) => provisioned.push(ns.clone()),
                Err(e) => failed.push(json!({"namespace": ns, "reason": e})),
            }
        }
        let ready = if failed.is_empty() { "True" } else { "False" };
        let status = json!({"status": {"externalSecretName": es_name, "provisionedNamespaces": provisioned, "failedNamespaces": failed,
            "conditions": [{"type": "Ready", "status": ready, "message": if failed.is_empty() { "all namespaces provisioned" } else { "some namespaces failed" }}]}});
        if ces["status"]["provisionedNamespaces"] != status["status"]["provisionedNamespaces"]
            || ces["status"]["failedNamespaces"] != status["status"]["failedNamespaces"]
        {
            let _ = EsoKind::ClusterExternalSecret.api_all(client).patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
        }
        wanted.insert(s(&ces["metadata"]["uid"]), (es_name, namespaces));
    }
    // ExternalSecrets whose ClusterExternalSecret is gone or no longer picks their namespace.
    for es in &existing {
        for r in es["metadata"]["ownerReferences"].as_array().into_iter().flatten().filter(|r| r["kind"] == "ClusterExternalSecret") {
            let ns = s(&es["metadata"]["namespace"]);
            let keep = wanted.get(&s(&r["uid"])).is_some_and(|(n, nss)| *n == s(&es["metadata"]["name"]) && nss.contains(&ns));
            if !keep {
                let _ = EsoKind::ExternalSecret.api(client, &ns).delete(&s(&es["metadata"]["name"]), &DeleteParams::default()).await;
            }
        }
    }
    Ok(())
}

/// Creates or updates one namespace's ExternalSecret. One this ClusterExternalSecret does not own
/// is left alone and reported.
async fn ensure(client: &Client, ces: &Value, es_name: &str, ns: &str, existing: &[Value]) -> Result<(), String> {
    let meta = &ces["spec"]["externalSecretMetadata"];
    let labels = meta["labels"].as_object().cloned().unwrap_or_default();
    let annotations = meta["annotations"].as_object().cloned().unwrap_or_default();
    let owner = json!([{"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret", "name": ces["metadata"]["name"], "uid": ces["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
    let spec = &ces["spec"]["externalSecretSpec"];
    let current = existing.iter().find(|e| e["metadata"]["namespace"] == ns && e["metadata"]["name"] == es_name);
    match current {
        None => {
            let es = json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": es_name, "namespace": ns, "labels": labels, "annotations": annotations, "ownerReferences": owner}, "spec": spec});
            EsoKind::ExternalSecret.api(client, ns).create(&PostParams::default(), &typed(es)?).await.map(|_| ()).map_err(|e| crate::short(&e))
        }
        Some(es) if !owned_by(es, &ces["metadata"]["uid"]) => Err(format!("an ExternalSecret {es_name:?} not owned by this ClusterExternalSecret exists")),
        Some(es) => {
            let same_meta =
                labels.iter().all(|(k, v)| es["metadata"]["labels"][k] == *v) && annotations.iter().all(|(k, v)| es["metadata"]["annotations"][k] == *v);
            if es["spec"] == *spec && same_meta {
                return Ok(());
            }
            // PUT with the resourceVersion read: fields removed from the template go too.
            let mut next = es.clone();
            next["spec"] = spec.clone();
            for (k, v) in labels {
                next["metadata"]["labels"][k] = v;
            }
            for (k, v) in annotations {
                next["metadata"]["annotations"][k] = v;
            }
            EsoKind::ExternalSecret.api(client, ns).replace(es_name, &PostParams::default(), &typed(next)?).await.map(|_| ()).map_err(|e| crate::short(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_in_query_form() {
        let sel = json!({"matchLabels": {"team": "a"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev", "qa"]}, {"key": "x", "operator": "DoesNotExist"}]});
        assert_eq!(selector_string(&sel), "team=a,env in (dev,qa),!x");
    }
}
