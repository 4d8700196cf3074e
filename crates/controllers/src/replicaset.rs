//! The replicaset controller (pkg/controller/replicaset): keeps `spec.replicas` pods of the
//! template, owned by the ReplicaSet, and reports how many are ready.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::{benign, controlled_by, pod_ready, MANAGER};

pub async fn pass(client: &Client) -> kube::Result<()> {
    let sets = Api::<ReplicaSet>::all(client.clone()).list(&ListParams::default()).await?;
    for rs in sets.items {
        if rs.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Err(e) = reconcile(client, &rs).await {
            if !benign(&e) {
                tracing::warn!(replicaset = %rs.name_any(), error = %e, "replicaset reconcile failed");
            }
        }
    }
    Ok(())
}

/// The live (not terminating) pods this ReplicaSet controls, adopting orphans its selector
/// matches.
async fn owned_pods(api: &Api<Pod>, rs: &ReplicaSet) -> kube::Result<Vec<Pod>> {
    let uid = rs.uid().unwrap_or_default();
    let selector = rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    let owner = crate::controller_ref(rs, "apps/v1", "ReplicaSet");
    let mut out = Vec::new();
    for p in api.list(&ListParams::default()).await?.items {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if controlled_by(&p.metadata, &uid) {
            out.push(p);
        } else if let Some(adopted) = crate::adopt(api, &p.metadata, &selector, owner.clone()).await? {
            out.push(adopted);
        }
    }
    Ok(out)
}

const BURST_REPLICAS: i32 = 500;

async fn reconcile(client: &Client, rs: &ReplicaSet) -> kube::Result<()> {
    let ns = rs.namespace().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut pods = owned_pods(&pods_api, rs).await?;
    let have = pods.len() as i32;
    if have < desired {
        let template = spec.template.clone().unwrap_or_default();
        // The ReplicaSet controller's burstReplicas: at most 500 creations per sync, so that
        // `replicas: 2147483647` is a long series of passes, not one that never ends.
        for _ in have..desired.min(have.saturating_add(BURST_REPLICAS)) {
            let mut meta: ObjectMeta = template.metadata.clone().unwrap_or_default();
            meta.generate_name = Some(format!("{}-", rs.name_any()));
            meta.namespace = Some(ns.clone());
            meta.owner_references = Some(vec![crate::controller_ref(rs, "apps/v1", "ReplicaSet")]);
            let pod = Pod { metadata: meta, spec: template.spec.clone(), status: None };
            let created = pods_api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &pod).await?;
            event(client, rs, "SuccessfulCreate", &format!("Created pod: {}", created.name_any())).await;
        }
    } else if have > desired {
        // Remove the least useful first: unscheduled, then not ready, then the newest.
        pods.sort_by_key(|p| {
            (p.spec.as_ref().and_then(|s| s.node_name.clone()).is_some(), pod_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)))
        });
        for p in pods.iter().take((have - desired) as usize) {
            match pods_api.delete(&p.name_any(), &DeleteParams::default()).await {
                Ok(_) => event(client, rs, "SuccessfulDelete", &format!("Deleted pod: {}", p.name_any())).await,
                Err(e) if benign(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let live = owned_pods(&pods_api, rs).await?;
    let ready = live.iter().filter(|p| pod_ready(p)).count() as i32;
    let status = ReplicaSetStatus {
        replicas: live.len() as i32,
        fully_labeled_replicas: Some(live.len() as i32),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        observed_generation: rs.metadata.generation,
        ..Default::default()
    };
    if rs.status.as_ref() != Some(&status) {
        Api::<ReplicaSet>::namespaced(client.clone(), &ns)
            .patch_status(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
            .await?;
    }
    Ok(())
}

/// Records a Normal event about a ReplicaSet, from the replicaset controller.
async fn event(client: &Client, rs: &ReplicaSet, reason: &str, message: &str) {
    crate::record_event(client, crate::object_ref(rs, "apps/v1", "ReplicaSet"), "replicaset-controller", "Normal", reason, message).await;
}
