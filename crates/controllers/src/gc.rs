//! The garbage collector (pkg/controller/garbagecollector) for the owner chains lockbox makes:
//! Deployment → ReplicaSet → Pod, and ExternalSecret → Secret. Dependents whose owners are gone are deleted (background
//! propagation); an owner held by `foregroundDeletion` waits until its dependents are gone; an
//! owner held by `orphan` lets them go free.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use crate::benign;

/// (kind, namespace, name, uid, finalizers, deleting) of every possible owner.
struct Owner {
    kind: &'static str,
    namespace: String,
    name: String,
    uid: String,
    finalizers: Vec<String>,
    deleting: bool,
}

fn owner(kind: &'static str, m: &ObjectMeta) -> Owner {
    Owner {
        kind,
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
    }
}

pub async fn pass(client: &Client) -> kube::Result<()> {
    let deployments = Api::<Deployment>::all(client.clone()).list(&ListParams::default()).await?.items;
    let sets = Api::<ReplicaSet>::all(client.clone()).list(&ListParams::default()).await?.items;
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items;
    let mut owners: Vec<Owner> = deployments.iter().map(|d| owner("Deployment", &d.metadata)).collect();
    owners.extend(sets.iter().map(|r| owner("ReplicaSet", &r.metadata)));

    // Dependents of owners that are gone, or that are being deleted in the foreground.
    let rs_api = |ns: &str| Api::<ReplicaSet>::namespaced(client.clone(), ns);
    let pod_api = |ns: &str| Api::<Pod>::namespaced(client.clone(), ns);
    let dependents: Vec<(&'static str, &ObjectMeta)> =
        sets.iter().map(|r| ("ReplicaSet", &r.metadata)).chain(pods.iter().map(|p| ("Pod", &p.metadata))).collect();
    for (kind, meta) in &dependents {
        let Some(refs) = meta.owner_references.as_ref().filter(|r| !r.is_empty()) else { continue };
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let live: Vec<&Owner> = refs.iter().filter_map(|r| owners.iter().find(|o| o.uid == r.uid && o.namespace == ns)).collect();
        let orphaning: Vec<&Owner> = live.iter().copied().filter(|o| o.deleting && o.finalizers.iter().any(|f| f == "orphan")).collect();
        if !orphaning.is_empty() {
            let keep: Vec<_> = refs.iter().filter(|r| !orphaning.iter().any(|o| o.uid == r.uid)).cloned().collect();
            let patch = json!({"metadata": {"ownerReferences": keep}});
            let r = match *kind {
                "ReplicaSet" => rs_api(&ns).patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
                _ => pod_api(&ns).patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
            };
            if let Err(e) = r {
                if !benign(&e) {
                    return Err(e);
                }
            }
            continue;
        }
        let all_gone = live.is_empty();
        let foreground = live.iter().any(|o| o.deleting && o.finalizers.iter().any(|f| f == "foregroundDeletion"));
        if (all_gone || foreground) && meta.deletion_timestamp.is_none() {
            // Foreground propagates to dependents that have dependents of their own; a pod has
            // none, so it goes in the background (nothing would ever release its finalizer).
            let dp = if foreground && *kind == "ReplicaSet" { DeleteParams::foreground() } else { DeleteParams::background() };
            let r = match *kind {
                "ReplicaSet" => rs_api(&ns).delete(&name, &dp).await.map(|_| ()),
                _ => pod_api(&ns).delete(&name, &dp).await.map(|_| ()),
            };
            if let Err(e) = r {
                if !benign(&e) {
                    return Err(e);
                }
            }
        }
    }

    // Secrets made by ExternalSecrets with creationPolicy Owner go with their ExternalSecret.
    let req = http::Request::get("/apis/external-secrets.io/v1/externalsecrets").body(vec![]).map_err(|e| kube::Error::Service(e.into()))?;
    if let Ok(list) = client.request::<serde_json::Value>(req).await {
        let live: std::collections::BTreeSet<String> =
            list["items"].as_array().into_iter().flatten().filter_map(|e| e["metadata"]["uid"].as_str().map(String::from)).collect();
        // Only Secrets an ExternalSecret made carry this label: the rest are never listed.
        let managed = ListParams::default().labels("reconcile.external-secrets.io/managed=true");
        let secrets = Api::<k8s_openapi::api::core::v1::Secret>::all(client.clone()).list(&managed).await?.items;
        for sec in secrets {
            let refs = sec.metadata.owner_references.clone().unwrap_or_default();
            let es: Vec<_> = refs.iter().filter(|r| r.kind == "ExternalSecret").collect();
            if es.is_empty() || es.iter().any(|r| live.contains(&r.uid)) || sec.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let ns = sec.metadata.namespace.clone().unwrap_or_default();
            if let Err(e) = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
                .delete(sec.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::background())
                .await
            {
                if !benign(&e) {
                    return Err(e);
                }
            }
        }
    }

    // Owners waiting on their dependents: release them when none are left.
    for o in owners.iter().filter(|o| o.deleting) {
        for fin in ["foregroundDeletion", "orphan"] {
            if !o.finalizers.iter().any(|f| f == fin) {
                continue;
            }
            // A dependent still being deleted counts: foreground deletion waits until it is gone.
            let remaining = dependents.iter().any(|(_, m)| m.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == o.uid)));
            if remaining {
                continue;
            }
            let keep: Vec<&String> = o.finalizers.iter().filter(|f| *f != fin).collect();
            let patch = json!({"metadata": {"finalizers": keep}});
            let r = match o.kind {
                "Deployment" => {
                    Api::<Deployment>::namespaced(client.clone(), &o.namespace).patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
                }
                _ => rs_api(&o.namespace).patch(&o.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
            };
            if let Err(e) = r {
                if !benign(&e) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}
