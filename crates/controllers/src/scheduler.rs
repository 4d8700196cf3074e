//! The scheduler: binds each unscheduled pod to a ready node (the one running the fewest pods)
//! through the `pods/binding` subresource, as kube-scheduler does. A kube-runtime `Controller`
//! over pods, woken by nodes; pods and nodes are looked up in stores.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::benign;
use crate::shared::Context;

fn node_ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true)
}

/// Binds one pod, if it is unscheduled, to the ready node (from the node store) running the
/// fewest pods (from the pod store).
pub async fn reconcile(p: Arc<Pod>, ctx: Arc<Context>) -> kube::Result<Action> {
    let unscheduled = p.spec.as_ref().is_some_and(|s| s.node_name.as_deref().unwrap_or_default().is_empty());
    if !unscheduled || p.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let pods = ctx.scheduler_pods.state();
    let load = |node: &str| pods.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)).count();
    let Some(node) = ctx.nodes.state().into_iter().filter(|n| node_ready(n)).map(|n| n.name_any()).min_by_key(|n| load(n)) else {
        // No ready node: a node turning ready wakes every unscheduled pod.
        return Ok(Action::await_change());
    };
    let client = &ctx.client;
    let ns = p.namespace().unwrap_or_default();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": p.name_any(), "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    // kube-rs has no typed call for pods/binding (a create on a subresource with another
    // kind): the request is made by hand.
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{}/binding", p.name_any()))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&binding).unwrap_or_default())
        .map_err(kube::Error::HttpError)?;
    match client.request::<serde_json::Value>(req).await {
        Ok(_) => {
            let message = format!("Successfully assigned {ns}/{} to {node}", p.name_any());
            crate::record_event(client, crate::object_ref(p.as_ref(), "v1", "Pod"), "default-scheduler", "Normal", "Scheduled", &message).await;
        }
        Err(e) if benign(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}

pub fn error_policy(p: Arc<Pod>, e: &kube::Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(pod = %p.name_any(), error = %crate::short(e), "binding failed; will retry");
    Action::requeue(std::time::Duration::from_secs(1))
}

/// The pods a node's change concerns: every unscheduled one (a node that turns ready can
/// take them).
pub fn unscheduled(pods: &Store<Pod>) -> Vec<ObjectRef<Pod>> {
    pods.state()
        .iter()
        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.as_deref().unwrap_or_default().is_empty()))
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}
