//! The scheduler: binds each unscheduled pod to a ready node (the one running the fewest pods)
//! through the `pods/binding` subresource, as kube-scheduler does.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::benign;

fn node_ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true)
}

pub async fn pass(client: &Client) -> kube::Result<()> {
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items;
    let pending: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.as_deref().unwrap_or_default().is_empty()) && p.metadata.deletion_timestamp.is_none())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let nodes: Vec<Node> = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items.into_iter().filter(node_ready).collect();
    if nodes.is_empty() {
        return Ok(());
    }
    let mut load: Vec<(String, usize)> = nodes
        .iter()
        .map(|n| (n.name_any(), pods.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(n.name_any().as_str())).count()))
        .collect();
    for p in pending {
        load.sort_by_key(|(_, n)| *n);
        let node = load[0].0.clone();
        let ns = p.namespace().unwrap_or_default();
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": p.name_any(), "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{}/binding", p.name_any()))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&binding).unwrap_or_default());
        let Ok(req) = req else { continue };
        match client.request::<serde_json::Value>(req).await {
            Ok(_) => {
                load[0].1 += 1;
                let message = format!("Successfully assigned {ns}/{} to {node}", p.name_any());
                crate::record_event(client, crate::object_ref(p, "v1", "Pod"), "default-scheduler", "Normal", "Scheduled", &message).await;
            }
            Err(e) if benign(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
