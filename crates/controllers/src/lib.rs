//! The workload controllers, as API clients only (they would run against any Kubernetes):
//! deployments, replicasets, the scheduler, the garbage collector, reload on change, and the
//! external-secrets sync.
//!
//! The deployment, replicaset and scheduler controllers are kube-runtime `Controller`s: one
//! reconcile per object, woken by changes to it and to what it owns or watches, with requeue
//! and back-off, looking other objects up in reflector stores (`shared`). The garbage
//! collector keeps its own graph from metadata watches (`gc`). The ExternalSecret sync and
//! reload on change are `Controller`s too: one requeued for each ExternalSecret's refresh, the
//! other per Deployment, woken by metadata changes of what it follows; and ClusterExternalSecrets,
//! woken by the ExternalSecrets they own and by namespace changes.

pub mod clusterexternalsecrets;
pub mod deployment;
pub mod eso_api;
pub mod externalsecrets;
pub mod gc;
pub mod metrics;
pub mod providers;
pub mod reload;
pub mod replicaset;
pub mod scheduler;
pub mod shared;
pub mod template;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};

pub const MANAGER: &str = "lockbox-controller-manager";

/// Runs every controller until the process ends. If one of them panics, the panic ends this
/// future (and the others with it), so that the caller's supervisor starts them all again
/// instead of one dying quietly.
pub async fn run(client: Client) {
    let cfg = watcher::Config::default();
    let mut running = tokio::task::JoinSet::new();
    // The garbage collector keeps its own graph, from metadata watches of every kind.
    running.spawn(gc::run(client.clone()));

    let scheduler = Controller::new(Api::<Pod>::all(client.clone()), cfg.clone());
    let replicasets = Controller::new(Api::<ReplicaSet>::all(client.clone()), cfg.clone());
    let deployments = Controller::new(Api::<Deployment>::all(client.clone()), cfg.clone());
    let (nodes, node_changes) = shared::reflected(Api::<Node>::all(client.clone()), cfg.clone());
    let (replicaset_pods, replicaset_pod_changes) = shared::reflected(Api::<Pod>::all(client.clone()), cfg.clone());
    let (deployment_replicasets, deployment_rs_changes) = shared::reflected(Api::<ReplicaSet>::all(client.clone()), cfg.clone());
    let (deployment_pods, deployment_pod_changes) = shared::reflected(Api::<Pod>::all(client.clone()), cfg.clone());
    let ctx = Arc::new(shared::Context {
        client: client.clone(),
        scheduler_pods: scheduler.store(),
        nodes,
        replicaset_pods,
        deployment_replicasets,
        deployment_pods,
        pod_expectations: Default::default(),
        deployment_backoff: Default::default(),
    });
    let pods = ctx.scheduler_pods.clone();
    running.spawn(
        scheduler
            .watches_stream(node_changes, move |_| scheduler::unscheduled(&pods))
            .run(scheduler::reconcile, scheduler::error_policy, ctx.clone())
            .for_each(drain("scheduler")),
    );
    let rs_store = replicasets.store();
    running.spawn(
        replicasets
            .watches_stream(replicaset_pod_changes, move |p| replicaset::owners_of(&p, &rs_store))
            .run(replicaset::reconcile, replicaset::error_policy, ctx.clone())
            .for_each(drain("replicaset")),
    );
    let (rs_store, dep_store) = (ctx.deployment_replicasets.clone(), deployments.store());
    running.spawn(
        deployments
            .watches_stream(deployment_rs_changes, move |rs| deployment::owners_of_replicaset(&rs, &dep_store))
            .watches_stream(deployment_pod_changes, move |p| deployment::owner_of_pod(&p, &rs_store))
            .run(deployment::reconcile, deployment::error_policy, ctx.clone())
            .for_each(drain("deployment")),
    );
    running.spawn(externalsecrets::run(client.clone(), cfg.clone()));
    running.spawn(reload::run(client.clone(), cfg.clone()));
    running.spawn(clusterexternalsecrets::run(client, cfg));
    if let Some(Err(e)) = running.join_next().await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// What a controller's stream says: reconciles that failed were logged by their error
/// policy; this only traces them.
fn drain<T, E: std::fmt::Display>(name: &'static str) -> impl FnMut(Result<T, E>) -> futures::future::Ready<()> {
    move |r| {
        if let Err(e) = r {
            tracing::debug!(controller = name, error = %e, "controller event");
        }
        futures::future::ready(())
    }
}

/// Adopts an orphan (no controller reference, not being deleted) whose labels the owner's
/// selector matches, as the controller-ref manager does; returns it as adopted. An empty
/// selector adopts nothing.
pub async fn adopt<K>(
    api: &kube::Api<K>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> kube::Result<Option<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::core::SelectorExt;
    let refs = meta.owner_references.clone().unwrap_or_default();
    if refs.iter().any(|r| r.controller == Some(true)) || meta.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty()) && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty());
    let Ok(sel) = kube::core::Selector::try_from(selector.clone()) else { return Ok(None) };
    if empty || !sel.matches(&meta.labels.clone().unwrap_or_default()) {
        return Ok(None);
    }
    let mut refs = refs;
    refs.push(owner);
    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
    match api.patch(meta.name.as_deref().unwrap_or_default(), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
        Ok(adopted) => Ok(Some(adopted)),
        Err(e) if benign(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The controller reference an owner puts on what it makes (controller and blockOwnerDeletion).
pub fn controller_ref<K: kube::Resource>(owner: &K, api_version: &str, kind: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    let m = owner.meta();
    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The reference an event makes to the object it is about.
pub fn object_ref<K: kube::Resource>(o: &K, api_version: &str, kind: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    let m = o.meta();
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        ..Default::default()
    }
}

/// Records a core/v1 Event, as `kubectl describe` lists them.
pub async fn record_event(client: &Client, involved: k8s_openapi::api::core::v1::ObjectReference, component: &str, type_: &str, reason: &str, message: &str) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let ns = involved.namespace.clone().unwrap_or_else(|| "default".into());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let ev = k8s_openapi::api::core::v1::Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", involved.name.clone().unwrap_or_default())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(k8s_openapi::api::core::v1::EventSource { component: Some(component.into()), host: None }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let _ = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns).create(&Default::default(), &ev).await;
}

/// Ignores conflicts and missing objects: the next pass sees the new state.
pub fn benign(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists() || s.is_not_found())
}

/// Resolves an int-or-percent against a total (k8s.io/apimachinery intstr).
pub fn int_or_percent(v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let owned;
    let v = match v {
        Some(v) => v,
        None => {
            owned = IntOrString::String(default.into());
            &owned
        }
    };
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let p: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = p * total as f64 / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as i32
        }
    }
}

/// An API error without echoing any object content.
pub fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string().chars().take(200).collect(),
    }
}

/// Is this pod Ready (its Ready condition is True)?
pub fn pod_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Does `owner_uid` control this object?
pub fn controlled_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.controller == Some(true) && r.uid == owner_uid))
}
