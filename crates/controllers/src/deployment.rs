//! The deployment controller (pkg/controller/deployment): one ReplicaSet per pod template,
//! labelled with its `pod-template-hash`; RollingUpdate within maxSurge and maxUnavailable, or
//! Recreate; revision annotations for `kubectl rollout history|undo`; status for `kubectl
//! rollout status`. A kube-runtime `Controller` over Deployments, woken by their ReplicaSets
//! and those ReplicaSets' pods; both are looked up in stores.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::SelectorExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::shared::Context;
use crate::{benign, controlled_by, int_or_percent, MANAGER};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

/// kube's `rand.SafeEncodeString` of the decimal hash: no vowels, no look-alikes.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

/// The pod-template-hash: FNV-32a over the template's canonical JSON (kube hashes the Go
/// struct; the encoding differs but the role — a stable name per template — is the same).
pub fn template_hash(template: &serde_json::Value, collisions: i32) -> String {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    // FnvHasher is 64-bit; fold to 32 bits as the label does not need more.
    h.write(template.to_string().as_bytes());
    if collisions > 0 {
        h.write(&collisions.to_le_bytes());
    }
    let v = h.finish();
    safe_encode(&(((v >> 32) ^ v) as u32).to_string())
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn template_without_hash(rs: &ReplicaSet) -> serde_json::Value {
    let mut t = serde_json::to_value(rs.spec.as_ref().map(|s| &s.template)).unwrap_or_default();
    if let Some(labels) = t.get_mut("metadata").and_then(|v| v.get_mut("labels")).and_then(serde_json::Value::as_object_mut) {
        labels.remove(HASH_LABEL);
    }
    t
}

/// Reconciles one Deployment. A failure is retried with the shared per-object back-off.
pub async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> kube::Result<Action> {
    let uid = d.uid().unwrap_or_default();
    if d.metadata.deletion_timestamp.is_some() {
        ctx.deployment_backoff.succeeded(&uid);
        return Ok(Action::await_change());
    }
    match sync(&ctx, &d).await {
        Err(e) if !benign(&e) => Err(e),
        _ => {
            ctx.deployment_backoff.succeeded(&uid);
            // A rollout in progress is looked at again for its progress deadline.
            let complete = d
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")));
            Ok(Action::requeue(if complete { Duration::from_secs(300) } else { Duration::from_secs(3) }))
        }
    }
}

pub fn error_policy(d: Arc<Deployment>, e: &kube::Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(deployment = %d.name_any(), error = %crate::short(e), "deployment reconcile failed");
    Action::requeue(ctx.deployment_backoff.failed(&d.uid().unwrap_or_default(), d.metadata.generation.unwrap_or(0)))
}

/// The Deployment a ReplicaSet's pod belongs to, for Recreate's wait on old pods.
pub fn owner_of_pod(pod: &Pod, replicasets: &Store<ReplicaSet>) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace()?;
    let rs_ref = pod.owner_references().iter().find(|r| r.controller == Some(true) && r.kind == "ReplicaSet")?;
    let rs = replicasets.get(&ObjectRef::new(&rs_ref.name).within(&ns))?;
    let d = rs.owner_references().iter().find(|r| r.controller == Some(true) && r.kind == "Deployment")?;
    Some(ObjectRef::new(&d.name).within(&ns))
}

/// The Deployments a ReplicaSet change concerns: its controller, or for an orphan every
/// Deployment of its namespace whose selector matches it (which may adopt it).
pub fn owners_of_replicaset(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(owner) = rs.owner_references().iter().find(|r| r.controller == Some(true)) {
        return if owner.kind == "Deployment" { vec![ObjectRef::new(&owner.name).within(&ns)] } else { vec![] };
    }
    Context::in_namespace(deployments, &ns)
        .iter()
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| kube::core::Selector::try_from(s.selector.clone()).ok())
                .is_some_and(|sel| !sel.selects_all() && sel.matches(rs.labels()))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// Moves the Deployment one step toward its spec; whether its rollout is complete.
async fn sync(ctx: &Context, d: &Deployment) -> kube::Result<bool> {
    let client = &ctx.client;
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let uid = d.uid().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let mut owned = Vec::new();
    // The ReplicaSets of this namespace, from the store: not a list per Deployment.
    for rs in Context::in_namespace(&ctx.deployment_replicasets, &ns) {
        if controlled_by(&rs.metadata, &uid) {
            owned.push((*rs).clone());
        } else if let Some(adopted) = crate::adopt(&rs_api, &rs.metadata, &spec.selector, crate::controller_ref(d, "apps/v1", "Deployment")).await? {
            owned.push(adopted);
        }
    }
    owned.sort_by_key(revision);
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let hash = template_hash(&template, 0);
    let new_rs = owned.iter().find(|rs| template_without_hash(rs) == template).cloned();
    let max_revision = owned.iter().map(revision).max().unwrap_or(0);

    let surge = int_or_percent(spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.max_surge.as_ref()), desired, true, "25%");
    let mut unavailable =
        int_or_percent(spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.max_unavailable.as_ref()), desired, false, "25%");
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let paused = spec.paused == Some(true);
    let replicas_of = |rs: &ReplicaSet| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let status_of = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();

    let new_rs = match new_rs {
        Some(rs) => {
            // Rolling back to an old template makes its ReplicaSet the newest revision.
            if revision(&rs) < max_revision && !paused {
                let patch = json!({"metadata": {"annotations": {REVISION: max_revision.saturating_add(1).to_string()}}});
                rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            rs
        }
        None if paused => return update_status(client, d, &owned, None, unavailable).await,
        None => {
            let others: i32 = owned.iter().map(replicas_of).fold(0, i32::saturating_add);
            let initial = if recreate {
                if others > 0 {
                    0
                } else {
                    desired
                }
            } else {
                desired.saturating_add(surge).saturating_sub(others).clamp(0, desired)
            };
            let mut labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            let mut selector: LabelSelector = spec.selector.clone();
            selector.match_labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
            let mut tmpl = spec.template.clone();
            tmpl.metadata.get_or_insert_with(Default::default).labels = Some(labels.clone());
            let annotations = BTreeMap::from([
                (REVISION.to_string(), max_revision.saturating_add(1).to_string()),
                ("deployment.kubernetes.io/desired-replicas".to_string(), desired.to_string()),
                ("deployment.kubernetes.io/max-replicas".to_string(), desired.saturating_add(surge).to_string()),
            ]);
            let rs = ReplicaSet {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{hash}")),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: Some(annotations),
                    owner_references: Some(vec![crate::controller_ref(d, "apps/v1", "Deployment")]),
                    ..Default::default()
                },
                spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                    replicas: Some(initial),
                    selector,
                    template: Some(tmpl),
                    min_ready_seconds: spec.min_ready_seconds,
                }),
                status: None,
            };
            match rs_api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &rs).await {
                Ok(created) => {
                    crate::deployment::event(client, d, "ScalingReplicaSet", &format!("Scaled up replica set {} from 0 to {initial}", created.name_any()))
                        .await;
                    created
                }
                Err(kube::Error::Api(e)) if !e.is_already_exists() => {
                    // sync.go's getNewReplicaSet: the failure is a Warning event and, as the
                    // Deployment has a progress deadline, its Progressing condition.
                    let msg = format!("Failed to create new replica set \"{}\": {}", rs.name_any(), e.message);
                    crate::record_event(
                        client,
                        crate::object_ref(d, "apps/v1", "Deployment"),
                        "deployment-controller",
                        "Warning",
                        "ReplicaSetCreateError",
                        &msg,
                    )
                    .await;
                    set_condition(client, d, "Progressing", false, "ReplicaSetCreateError", &msg).await?;
                    return Err(kube::Error::Api(e));
                }
                Err(e) => return Err(e),
            }
        }
    };
    let new_name = new_rs.name_any();
    let olds: Vec<&ReplicaSet> = owned.iter().filter(|rs| rs.name_any() != new_name).collect();

    if !paused {
        let new_replicas = replicas_of(&new_rs);
        if recreate {
            for old in &olds {
                if replicas_of(old) > 0 {
                    scale(client, d, &rs_api, old, 0).await?;
                }
            }
            // The new pods wait until no old pod is left, terminating ones included
            // (recreate.go's oldPodsRunning).
            let old_uids: Vec<String> = olds.iter().filter_map(|rs| rs.uid()).collect();
            let pods = Context::in_namespace(&ctx.deployment_pods, &ns);
            let old_pods = pods
                .iter()
                .filter(|p| p.owner_references().iter().any(|r| old_uids.contains(&r.uid)))
                .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
                .count();
            if old_pods == 0 && new_replicas != desired {
                scale(client, d, &rs_api, &new_rs, desired).await?;
            }
        } else {
            // Scale up the new ReplicaSet within maxSurge.
            let total: i32 = owned.iter().map(replicas_of).fold(0, i32::saturating_add).saturating_add(if owned.iter().any(|rs| rs.name_any() == new_name) {
                0
            } else {
                new_replicas
            });
            if new_replicas < desired {
                let room = desired.saturating_add(surge).saturating_sub(total);
                if room > 0 {
                    scale(client, d, &rs_api, &new_rs, new_replicas.saturating_add(room).min(desired)).await?;
                }
            } else if new_replicas > desired {
                scale(client, d, &rs_api, &new_rs, desired).await?;
            }
            // Scale down old ReplicaSets as far as maxUnavailable allows.
            let available: i32 = owned.iter().map(|rs| status_of(rs).available_replicas.unwrap_or(0)).fold(0, i32::saturating_add);
            let mut can_remove = available.saturating_sub(desired.saturating_sub(unavailable));
            for old in &olds {
                let r = replicas_of(old);
                if r == 0 {
                    continue;
                }
                // Replicas that are not available cost nothing to remove.
                let unhealthy = (r - status_of(old).available_replicas.unwrap_or(0)).max(0);
                let remove = unhealthy.saturating_add(can_remove.max(0)).min(r);
                if remove > 0 {
                    scale(client, d, &rs_api, old, r - remove).await?;
                    can_remove -= (remove - unhealthy).max(0);
                }
            }
        }
        // Old revisions beyond revisionHistoryLimit go once they are empty.
        let limit = spec.revision_history_limit.unwrap_or(10) as usize;
        let empty: Vec<&&ReplicaSet> = olds.iter().filter(|rs| replicas_of(rs) == 0 && status_of(rs).replicas == 0).collect();
        if empty.len() > limit {
            for rs in &empty[..empty.len() - limit] {
                let _ = rs_api.delete(&rs.name_any(), &DeleteParams::background()).await;
            }
        }
    }
    // The status counts what the store shows; the ReplicaSets just scaled report back through
    // their events, which reconcile this Deployment again.
    let new_now = owned.iter().find(|rs| rs.name_any() == new_name).cloned().or(Some(new_rs));
    update_status(client, d, &owned, new_now.as_ref(), unavailable).await
}

async fn scale(client: &Client, d: &Deployment, api: &Api<ReplicaSet>, rs: &ReplicaSet, to: i32) -> kube::Result<()> {
    let from = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    if from == to {
        return Ok(());
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let patch = json!({"metadata": {"annotations": {"deployment.kubernetes.io/desired-replicas": desired.to_string()}}, "spec": {"replicas": to}});
    api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let verb = if to > from { "up" } else { "down" };
    event(client, d, "ScalingReplicaSet", &format!("Scaled {verb} replica set {} from {from} to {to}", rs.name_any())).await;
    Ok(())
}

/// Writes the status the ReplicaSets add up to; whether the rollout is complete.
async fn update_status(client: &Client, d: &Deployment, owned: &[ReplicaSet], new_rs: Option<&ReplicaSet>, max_unavailable: i32) -> kube::Result<bool> {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let sum = |f: &dyn Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| {
        owned.iter().map(|rs| rs.status.as_ref().map(f).unwrap_or(0)).fold(0, i32::saturating_add)
    };
    let replicas = sum(&|s| s.replicas);
    let ready = sum(&|s| s.ready_replicas.unwrap_or(0));
    let available = sum(&|s| s.available_replicas.unwrap_or(0));
    let updated = new_rs.and_then(|rs| rs.status.as_ref()).map(|s| s.replicas).unwrap_or(0);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let old = d.status.clone().unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let prev = old.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == type_));
        let status = if ok { "True" } else { "False" }.to_string();
        let transition = prev.filter(|p| p.status == status).and_then(|p| p.last_transition_time.clone()).unwrap_or_else(|| now.clone());
        DeploymentCondition {
            type_: type_.into(),
            status,
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    };
    let new_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    let complete = updated == desired && replicas == desired && available == desired;
    // Progressing, with progressDeadlineSeconds: progress is a change in the new ReplicaSet or
    // in the counts; without any for the deadline, the rollout has failed
    // (ProgressDeadlineExceeded, which `kubectl rollout status` reports and exits on).
    let prev = old.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"));
    let progressed = old.updated_replicas != Some(updated)
        || old.ready_replicas != Some(ready)
        || old.available_replicas != Some(available)
        || prev.is_none_or(|p| !p.message.as_deref().unwrap_or_default().contains(&format!("\"{new_name}\"")));
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600) as i64;
    let last_progress = prev.and_then(|p| p.last_update_time.clone()).filter(|_| !progressed).unwrap_or_else(|| now.clone());
    // Once exceeded, the deadline stays exceeded until the rollout progresses again.
    let exceeded_before = prev.is_some_and(|p| p.reason.as_deref() == Some("ProgressDeadlineExceeded"));
    let stalled = !complete && ((exceeded_before && !progressed) || now.0.as_second() - last_progress.0.as_second() > deadline);
    let mut progressing = if complete {
        condition("Progressing", true, "NewReplicaSetAvailable", format!("ReplicaSet \"{new_name}\" has successfully progressed."))
    } else if stalled {
        condition("Progressing", false, "ProgressDeadlineExceeded", format!("ReplicaSet \"{new_name}\" has timed out progressing."))
    } else {
        condition("Progressing", true, "ReplicaSetUpdated", format!("ReplicaSet \"{new_name}\" is progressing."))
    };
    if !complete && !stalled {
        progressing.last_update_time = Some(last_progress);
    }
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((desired - available).max(0)),
        conditions: Some(vec![
            condition(
                "Available",
                available >= desired - max_unavailable,
                if available >= desired - max_unavailable { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                if available >= desired - max_unavailable {
                    "Deployment has minimum availability.".into()
                } else {
                    "Deployment does not have minimum availability.".into()
                },
            ),
            progressing,
        ]),
        ..Default::default()
    };
    let api: Api<Deployment> = Api::namespaced(client.clone(), &d.namespace().unwrap_or_default());
    let mut needs_status = serde_json::to_value(&old).unwrap_or_default() != serde_json::to_value(&status).unwrap_or_default();
    if needs_status {
        // Timestamps alone do not make a change.
        let strip = |s: &DeploymentStatus| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            if let Some(cs) = v.get_mut("conditions").and_then(serde_json::Value::as_array_mut) {
                for c in cs {
                    c["lastUpdateTime"] = serde_json::Value::Null;
                    c["lastTransitionTime"] = serde_json::Value::Null;
                }
            }
            v
        };
        needs_status = strip(&old) != strip(&status);
    }
    if needs_status {
        api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    if let Some(rs) = new_rs {
        let rev = revision(rs).to_string();
        if d.annotations().get(REVISION) != Some(&rev) {
            api.patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"annotations": {REVISION: rev}}}))).await?;
        }
    }
    Ok(complete)
}

/// Sets one condition of a Deployment's status, keeping the others (and the transition time
/// when the status stays the same); writes nothing when it already says this.
async fn set_condition(client: &Client, d: &Deployment, type_: &str, ok: bool, reason: &str, message: &str) -> kube::Result<()> {
    let status = if ok { "True" } else { "False" };
    let mut conditions = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let prev = conditions.iter().position(|c| c.type_ == type_);
    if let Some(p) = prev.map(|i| &conditions[i]) {
        if p.status == status && p.reason.as_deref() == Some(reason) && p.message.as_deref() == Some(message) {
            return Ok(());
        }
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let transition = prev.map(|i| &conditions[i]).filter(|p| p.status == status).and_then(|p| p.last_transition_time.clone()).unwrap_or_else(|| now.clone());
    let condition = DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now),
        last_transition_time: Some(transition),
    };
    match prev {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), &d.namespace().unwrap_or_default());
    api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": {"conditions": conditions}}))).await?;
    Ok(())
}

/// Records a Normal event about a Deployment, as `kubectl describe` shows them.
pub async fn event(client: &Client, d: &Deployment, reason: &str, message: &str) {
    crate::record_event(client, crate::object_ref(d, "apps/v1", "Deployment"), "deployment-controller", "Normal", reason, message).await;
}
