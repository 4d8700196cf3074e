//! The replicaset controller (pkg/controller/replicaset): keeps `spec.replicas` pods of the
//! template, owned by the ReplicaSet, and reports how many are ready. A kube-runtime
//! `Controller` over ReplicaSets, woken by their pods; pods are looked up in the pod store.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::SelectorExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::shared::Context;
use crate::{benign, controlled_by, pod_ready, MANAGER};

/// Reconciles one ReplicaSet: its pods from the pod store, orphans its selector matches
/// adopted, pods created or deleted toward spec.replicas (unless earlier creations and
/// deletions have not shown in the store yet), and its status.
pub async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> kube::Result<Action> {
    if rs.metadata.deletion_timestamp.is_some() {
        ctx.pod_expectations.forget(&rs.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    sync(&ctx, &rs).await?;
    Ok(Action::requeue(RESYNC))
}

/// A failed reconcile is retried soon; a conflict or a vanished object is not an error.
pub fn error_policy(rs: Arc<ReplicaSet>, e: &kube::Error, _ctx: Arc<Context>) -> Action {
    if !benign(e) {
        tracing::warn!(replicaset = %rs.name_any(), error = %crate::short(e), "replicaset reconcile failed");
    }
    Action::requeue(Duration::from_secs(1))
}

/// How often a ReplicaSet is looked at without news (a missed event only delays this long).
const RESYNC: Duration = Duration::from_secs(300);

/// The ReplicaSets a pod change concerns: its controller, or for an orphan every ReplicaSet
/// of its namespace whose selector matches it (which may adopt it).
pub fn owners_of(pod: &Pod, replicasets: &Store<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = pod.owner_references().iter().find(|r| r.controller == Some(true)) {
        return if owner.kind == "ReplicaSet" { vec![ObjectRef::new(&owner.name).within(&ns)] } else { vec![] };
    }
    let labels = pod.labels();
    Context::in_namespace(replicasets, &ns)
        .iter()
        .filter(|rs| {
            rs.spec.as_ref().and_then(|s| kube::core::Selector::try_from(s.selector.clone()).ok()).is_some_and(|sel| !sel.selects_all() && sel.matches(labels))
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

/// The live (not terminating) pods this ReplicaSet controls, adopting orphans its selector
/// matches, from the pod store.
async fn owned_pods(ctx: &Context, api: &Api<Pod>, rs: &ReplicaSet) -> kube::Result<Vec<Pod>> {
    let uid = rs.uid().unwrap_or_default();
    let selector = rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    let owner = crate::controller_ref(rs, "apps/v1", "ReplicaSet");
    let mut out = Vec::new();
    for p in Context::in_namespace(&ctx.replicaset_pods, &rs.namespace().unwrap_or_default()) {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if controlled_by(&p.metadata, &uid) {
            out.push((*p).clone());
        } else if let Some(adopted) = crate::adopt(api, &p.metadata, &selector, owner.clone()).await? {
            out.push(adopted);
        }
    }
    Ok(out)
}

const BURST_REPLICAS: i32 = 500;

async fn sync(ctx: &Context, rs: &ReplicaSet) -> kube::Result<()> {
    let client = &ctx.client;
    let ns = rs.namespace().unwrap_or_default();
    let uid = rs.uid().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut pods = owned_pods(ctx, &pods_api, rs).await?;
    let have = pods.len() as i32;
    let in_store = |name: &str| ctx.replicaset_pods.get(&ObjectRef::new(name).within(&ns)).map(|p| p.metadata.deletion_timestamp.is_some());
    let (mut created, mut deleted) = (Vec::new(), Vec::new());
    if !ctx.pod_expectations.satisfied(&uid, in_store) {
        // Earlier creations or deletions have not shown yet: their events reconcile again.
    } else if have < desired {
        let template = spec.template.clone().unwrap_or_default();
        // The ReplicaSet controller's burstReplicas: at most 500 creations per sync, so that
        // `replicas: 2147483647` is a long series of passes, not one that never ends.
        for _ in have..desired.min(have.saturating_add(BURST_REPLICAS)) {
            let mut meta: ObjectMeta = template.metadata.clone().unwrap_or_default();
            meta.generate_name = Some(format!("{}-", rs.name_any()));
            meta.namespace = Some(ns.clone());
            meta.owner_references = Some(vec![crate::controller_ref(rs, "apps/v1", "ReplicaSet")]);
            let pod = Pod { metadata: meta, spec: template.spec.clone(), status: None };
            let made = match pods_api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &pod).await {
                Ok(made) => made,
                Err(e) => {
                    ctx.pod_expectations.expect(&uid, created, deleted);
                    return Err(e);
                }
            };
            event(client, rs, "SuccessfulCreate", &format!("Created pod: {}", made.name_any())).await;
            created.push(made.name_any());
        }
    } else if have > desired {
        // Remove the least useful first: unscheduled, then not ready, then the newest.
        pods.sort_by_key(|p| {
            (p.spec.as_ref().and_then(|s| s.node_name.clone()).is_some(), pod_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)))
        });
        for p in pods.iter().take((have - desired) as usize) {
            match pods_api.delete(&p.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    event(client, rs, "SuccessfulDelete", &format!("Deleted pod: {}", p.name_any())).await;
                    deleted.push(p.name_any());
                }
                Err(e) if benign(&e) => {}
                Err(e) => {
                    ctx.pod_expectations.expect(&uid, created, deleted);
                    return Err(e);
                }
            }
        }
    }
    ctx.pod_expectations.expect(&uid, created, deleted);
    // The status counts what the store shows; the pods just created or deleted update it
    // when their events arrive.
    let live = pods;
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
