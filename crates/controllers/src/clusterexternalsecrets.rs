//! ClusterExternalSecret, as ESO does it: one ExternalSecret (owned by the ClusterExternalSecret)
//! in every namespace its `namespaceSelectors`, `namespaceSelector` or `namespaces` pick, kept
//! equal to `externalSecretSpec`; removed from namespaces that stop matching and when the
//! ClusterExternalSecret goes. The status lists the provisioned and failed namespaces. A
//! kube-runtime `Controller` over ClusterExternalSecrets.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::Client;
use serde_json::{json, Value};

use crate::eso_api::{get_json, list_json, s, typed, EsoKind, SyncError};

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

/// Runs the ClusterExternalSecret controller: a kube-runtime `Controller` over
/// ClusterExternalSecrets, woken by the ExternalSecrets they own and by any namespace change
/// (a namespace may start or stop matching a selector). An ExternalSecret whose
/// ClusterExternalSecret is deleted goes with it through the garbage collector (it is owned).
pub async fn run(client: Client, cfg: watcher::Config) {
    let controller = Controller::new_with(EsoKind::ClusterExternalSecret.api_all(&client), cfg.clone(), EsoKind::ClusterExternalSecret.resource());
    let store = controller.store();
    let every =
        move |_: Namespace| store.state().iter().map(|c| ObjectRef::from_obj_with(c.as_ref(), EsoKind::ClusterExternalSecret.resource())).collect::<Vec<_>>();
    controller
        .owns_with(EsoKind::ExternalSecret.api_all(&client), EsoKind::ExternalSecret.resource(), cfg.clone())
        .watches(Api::<Namespace>::all(client.clone()), cfg, every)
        .run(
            reconcile,
            |_, e: &SyncError, _| {
                tracing::debug!(controller = "clusterexternalsecrets", error = %e, "reconcile failed; will retry");
                Action::requeue(Duration::from_secs(1))
            },
            Arc::new(client),
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// One ClusterExternalSecret: its ExternalSecret in every namespace it picks, none in the
/// namespaces it no longer picks, and its status.
async fn reconcile(obj: Arc<DynamicObject>, client: Arc<Client>) -> Result<Action, SyncError> {
    let client = client.as_ref();
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ces = serde_json::to_value(obj.as_ref()).unwrap_or_default();
    let existing: Vec<Value> = list_json(&EsoKind::ExternalSecret.api_all(client), &ListParams::default())
        .await
        .map_err(SyncError)?
        .into_iter()
        .filter(|es| owned_by(es, &ces["metadata"]["uid"]))
        .collect();
    let spec = &ces["spec"];
    let mut namespaces: BTreeSet<String> = spec["namespaces"].as_array().into_iter().flatten().map(s).collect();
    let mut selectors: Vec<Value> = spec["namespaceSelectors"].as_array().cloned().unwrap_or_default();
    if spec["namespaceSelector"].is_object() {
        selectors.push(spec["namespaceSelector"].clone());
    }
    for sel in selectors {
        let list = list_json(&Api::<Namespace>::all(client.clone()), &ListParams::default().labels(&selector_string(&sel))).await.map_err(SyncError)?;
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
        let current = get_json(&EsoKind::ExternalSecret.api(client, ns), &es_name).await.map_err(SyncError)?;
        match ensure(client, &ces, &es_name, ns, current.as_ref()).await {
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
    // Its ExternalSecrets in namespaces it no longer picks, or under an old name.
    for es in &existing {
        let ns = s(&es["metadata"]["namespace"]);
        if s(&es["metadata"]["name"]) != es_name || !namespaces.contains(&ns) {
            let _ = EsoKind::ExternalSecret.api(client, &ns).delete(&s(&es["metadata"]["name"]), &DeleteParams::default()).await;
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Creates or updates one namespace's ExternalSecret. One this ClusterExternalSecret does not own
/// is left alone and reported.
async fn ensure(client: &Client, ces: &Value, es_name: &str, ns: &str, current: Option<&Value>) -> Result<(), String> {
    let meta = &ces["spec"]["externalSecretMetadata"];
    let labels = meta["labels"].as_object().cloned().unwrap_or_default();
    let annotations = meta["annotations"].as_object().cloned().unwrap_or_default();
    let owner = json!([{"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret", "name": ces["metadata"]["name"], "uid": ces["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
    let spec = &ces["spec"]["externalSecretSpec"];
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
