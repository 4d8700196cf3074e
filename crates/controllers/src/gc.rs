//! The garbage collector (pkg/controller/garbagecollector), for every kind the server serves:
//! it keeps a graph of all objects' metadata (uid, ownerReferences, finalizers) from metadata
//! watches, and after each change moves the graph one step:
//!
//! - a dependent whose owners are all gone is deleted (background propagation);
//! - a dependent of an owner deleted in the foreground is deleted (in the foreground itself if
//!   it has dependents), and the owner's `foregroundDeletion` finalizer is removed once none are
//!   left;
//! - a dependent of an owner deleted with `orphan` loses that ownerReference, and the owner's
//!   `orphan` finalizer is then removed;
//! - ownerReferences to owners that are gone, beside live ones, are removed.
//!
//! An owner missing from the graph is confirmed gone with a live GET before anything is
//! deleted, as kube-controller-manager does: the graph can trail a just-created owner.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

use crate::benign;

/// One object, as far as garbage collection cares.
#[derive(Clone)]
struct Node {
    resource: usize,
    namespace: String,
    name: String,
    resource_version: String,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl Node {
    fn from_meta(resource: usize, m: &PartialObjectMeta<DynamicObject>) -> Option<(String, Node)> {
        let md = &m.metadata;
        let uid = md.uid.clone()?;
        Some((
            uid,
            Node {
                resource,
                namespace: md.namespace.clone().unwrap_or_default(),
                name: md.name.clone().unwrap_or_default(),
                resource_version: md.resource_version.clone().unwrap_or_default(),
                owners: md.owner_references.clone().unwrap_or_default(),
                finalizers: md.finalizers.clone().unwrap_or_default(),
                deleting: md.deletion_timestamp.is_some(),
            },
        ))
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// A served resource the collector watches.
struct Watched {
    ar: ApiResource,
    namespaced: bool,
}

/// What one step of the graph asks for.
#[derive(Debug, PartialEq)]
enum Action {
    /// Delete a dependent; `foreground` when it has dependents of its own and its owner is
    /// being deleted in the foreground.
    Delete { uid: String, foreground: bool, confirm_gone: Vec<OwnerReference> },
    /// Replace a dependent's ownerReferences (orphaning, or dropping dangling ones).
    SetOwners { uid: String, keep: Vec<OwnerReference>, confirm_gone: Vec<OwnerReference> },
    /// Remove `finalizer` from an owner whose dependents are all gone.
    Release { uid: String, finalizer: &'static str },
}

/// One step for every object in the graph.
fn plan(graph: &HashMap<String, Node>, namespaced: &dyn Fn(usize) -> bool) -> Vec<Action> {
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (uid, n) in graph {
        for r in &n.owners {
            dependents.entry(r.uid.as_str()).or_default().push(uid.as_str());
        }
    }
    let mut actions = Vec::new();
    for (uid, n) in graph {
        if n.owners.is_empty() {
            continue;
        }
        // An owner is live if the graph has its uid, in the dependent's namespace unless the
        // owner is cluster-scoped.
        let live = |r: &OwnerReference| graph.get(&r.uid).filter(|o| !namespaced(o.resource) || o.namespace == n.namespace);
        let gone: Vec<OwnerReference> = n.owners.iter().filter(|r| live(r).is_none()).cloned().collect();
        let orphaning: HashSet<&str> =
            n.owners.iter().filter(|r| live(r).is_some_and(|o| o.deleting && o.has_finalizer("orphan"))).map(|r| r.uid.as_str()).collect();
        let foreground = n.owners.iter().any(|r| live(r).is_some_and(|o| o.deleting && o.has_finalizer("foregroundDeletion")));
        if !orphaning.is_empty() {
            let keep = n.owners.iter().filter(|r| !orphaning.contains(r.uid.as_str())).cloned().collect();
            actions.push(Action::SetOwners { uid: uid.clone(), keep, confirm_gone: vec![] });
        } else if (gone.len() == n.owners.len() || foreground) && !n.deleting {
            let has_dependents = dependents.contains_key(uid.as_str());
            let confirm_gone = if foreground { vec![] } else { gone };
            actions.push(Action::Delete { uid: uid.clone(), foreground: foreground && has_dependents, confirm_gone });
        } else if !gone.is_empty() && gone.len() < n.owners.len() {
            let keep = n.owners.iter().filter(|r| live(r).is_some()).cloned().collect();
            actions.push(Action::SetOwners { uid: uid.clone(), keep, confirm_gone: gone });
        }
    }
    for (uid, o) in graph.iter().filter(|(_, o)| o.deleting) {
        for finalizer in ["foregroundDeletion", "orphan"] {
            // A dependent still being deleted counts: foreground deletion waits until it is gone.
            if o.has_finalizer(finalizer) && !dependents.contains_key(uid.as_str()) {
                actions.push(Action::Release { uid: uid.clone(), finalizer });
            }
        }
    }
    actions
}

/// Runs the collector until the process ends.
pub async fn run(client: Client) {
    let watched = loop {
        match discover(&client).await {
            Ok(w) => break w,
            Err(e) => {
                tracing::debug!(error = %e, "garbage collector: discovery failed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, watcher::Event<PartialObjectMeta<DynamicObject>>)>();
    for (i, w) in watched.iter().enumerate() {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &w.ar);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(e) = events.next().await {
                match e {
                    Ok(e) => {
                        if tx.send((i, e)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "garbage collector: watch failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    let mut graph: HashMap<String, Node> = HashMap::new();
    // Objects listed so far by a watch that is (re)listing, per resource.
    let mut relisting: HashMap<usize, HashMap<String, Node>> = HashMap::new();
    let mut synced: HashSet<usize> = HashSet::new();
    loop {
        let first = tokio::select! {
            e = rx.recv() => match e { Some(e) => Some(e), None => return },
            // Retries actions that failed, and owners whose deletion raced a watch.
            _ = tokio::time::sleep(Duration::from_secs(10)) => None,
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (i, e) in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            apply(&mut graph, &mut relisting, &mut synced, i, e);
        }
        // Until every resource has been listed once, a missing owner may just be unlisted.
        if synced.len() < watched.len() {
            continue;
        }
        let actions = plan(&graph, &|r| watched[r].namespaced);
        for a in actions {
            if let Err(e) = execute(&client, &watched, &graph, a).await {
                tracing::debug!(error = %e, "garbage collector: action failed; will retry");
            }
        }
    }
}

async fn discover(client: &Client) -> kube::Result<Vec<Watched>> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if usable(&caps) {
                out.push(Watched { ar, namespaced: caps.scope == Scope::Namespaced });
            }
        }
    }
    Ok(out)
}

fn usable(caps: &ApiCapabilities) -> bool {
    [verbs::LIST, verbs::WATCH, verbs::DELETE, verbs::PATCH].iter().all(|v| caps.supports_operation(v))
}

fn apply(
    graph: &mut HashMap<String, Node>,
    relisting: &mut HashMap<usize, HashMap<String, Node>>,
    synced: &mut HashSet<usize>,
    resource: usize,
    event: watcher::Event<PartialObjectMeta<DynamicObject>>,
) {
    match event {
        watcher::Event::Apply(m) => {
            if let Some((uid, n)) = Node::from_meta(resource, &m) {
                graph.insert(uid, n);
            }
        }
        watcher::Event::Delete(m) => {
            if let Some(uid) = m.metadata.uid {
                graph.remove(&uid);
            }
        }
        watcher::Event::Init => {
            relisting.insert(resource, HashMap::new());
        }
        watcher::Event::InitApply(m) => {
            if let Some((uid, n)) = Node::from_meta(resource, &m) {
                relisting.entry(resource).or_default().insert(uid, n);
            }
        }
        watcher::Event::InitDone => {
            let fresh = relisting.remove(&resource).unwrap_or_default();
            graph.retain(|_, n| n.resource != resource);
            graph.extend(fresh);
            synced.insert(resource);
        }
    }
}

/// Is the owner really gone? The graph can trail the server; ask it.
async fn confirmed_gone(client: &Client, watched: &[Watched], namespace: &str, r: &OwnerReference) -> kube::Result<bool> {
    let (group, version) = r.api_version.rsplit_once('/').unwrap_or(("", r.api_version.as_str()));
    let Some(w) = watched.iter().find(|w| w.ar.group == group && w.ar.version == version && w.ar.kind == r.kind) else {
        // A kind the server does not serve cannot have a live object.
        return Ok(true);
    };
    let api: Api<DynamicObject> = if w.namespaced { Api::namespaced_with(client.clone(), namespace, &w.ar) } else { Api::all_with(client.clone(), &w.ar) };
    Ok(api.get_metadata_opt(&r.name).await?.is_none_or(|o| o.metadata.uid.as_deref() != Some(r.uid.as_str())))
}

async fn execute(client: &Client, watched: &[Watched], graph: &HashMap<String, Node>, action: Action) -> kube::Result<()> {
    let uid = match &action {
        Action::Delete { uid, .. } | Action::SetOwners { uid, .. } | Action::Release { uid, .. } => uid.clone(),
    };
    let Some(n) = graph.get(&uid) else { return Ok(()) };
    let w = &watched[n.resource];
    let api: Api<DynamicObject> = if w.namespaced { Api::namespaced_with(client.clone(), &n.namespace, &w.ar) } else { Api::all_with(client.clone(), &w.ar) };
    let confirm = match &action {
        Action::Delete { confirm_gone, .. } | Action::SetOwners { confirm_gone, .. } => confirm_gone.as_slice(),
        Action::Release { .. } => &[],
    };
    for r in confirm {
        if !confirmed_gone(client, watched, &n.namespace, r).await? {
            return Ok(());
        }
    }
    let result = match action {
        Action::Delete { foreground, .. } => {
            // The uid precondition: never delete a namesake created since the graph saw it.
            let mut dp = if foreground { DeleteParams::foreground() } else { DeleteParams::background() };
            dp.preconditions = Some(kube::api::Preconditions { uid: Some(uid.clone()), resource_version: None });
            api.delete(&n.name, &dp).await.map(|_| ())
        }
        Action::SetOwners { keep, .. } => {
            let patch = json!({"metadata": {"resourceVersion": n.resource_version, "ownerReferences": keep}});
            api.patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
        }
        Action::Release { finalizer, .. } => {
            let keep: Vec<&String> = n.finalizers.iter().filter(|f| *f != finalizer).collect();
            let patch = json!({"metadata": {"resourceVersion": n.resource_version, "finalizers": keep}});
            api.patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
        }
    };
    match result {
        Err(e) if benign(&e) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ns: &str, owners: &[&str], finalizers: &[&str], deleting: bool) -> Node {
        Node {
            resource: 0,
            namespace: ns.into(),
            name: "x".into(),
            resource_version: "1".into(),
            owners: owners.iter().map(|u| OwnerReference { uid: u.to_string(), ..Default::default() }).collect(),
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            deleting,
        }
    }

    fn graph(nodes: &[(&str, Node)]) -> HashMap<String, Node> {
        nodes.iter().map(|(u, n)| (u.to_string(), n.clone())).collect()
    }

    fn plan_of(g: &HashMap<String, Node>) -> Vec<Action> {
        let mut a = plan(g, &|_| true);
        a.sort_by_key(|a| format!("{a:?}"));
        a
    }

    #[test]
    fn orphans_of_any_kind_are_deleted_and_live_owners_keep_theirs() {
        let g = graph(&[("cm", node("a", &[], &[], false)), ("pod", node("a", &["cm"], &[], false)), ("orphan", node("a", &["gone"], &[], false))]);
        let a = plan_of(&g);
        assert_eq!(a.len(), 1);
        assert!(matches!(&a[0], Action::Delete { uid, foreground: false, confirm_gone } if uid == "orphan" && confirm_gone.len() == 1));
    }

    #[test]
    fn an_owner_in_another_namespace_is_not_an_owner() {
        let g = graph(&[("cm", node("a", &[], &[], false)), ("pod", node("b", &["cm"], &[], false))]);
        assert!(matches!(&plan_of(&g)[..], [Action::Delete { uid, .. }] if uid == "pod"));
    }

    #[test]
    fn foreground_deletes_dependents_then_releases_the_owner() {
        let g = graph(&[("d", node("a", &[], &["foregroundDeletion"], true)), ("rs", node("a", &["d"], &[], false)), ("pod", node("a", &["rs"], &[], false))]);
        assert!(matches!(&plan_of(&g)[..], [Action::Delete { uid, foreground: true, .. }] if uid == "rs"));
        let g = graph(&[("d", node("a", &[], &["foregroundDeletion"], true))]);
        assert_eq!(plan_of(&g), vec![Action::Release { uid: "d".into(), finalizer: "foregroundDeletion" }]);
    }

    #[test]
    fn orphan_drops_the_reference_then_releases_the_owner() {
        let g = graph(&[("o", node("a", &[], &["orphan"], true)), ("other", node("a", &[], &[], false)), ("dep", node("a", &["o", "other"], &[], false))]);
        match &plan_of(&g)[..] {
            [Action::SetOwners { uid, keep, .. }] => {
                assert_eq!(uid, "dep");
                assert_eq!(keep.iter().map(|r| r.uid.as_str()).collect::<Vec<_>>(), vec!["other"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dangling_references_beside_live_ones_are_dropped() {
        let g = graph(&[("live", node("a", &[], &[], false)), ("dep", node("a", &["live", "gone"], &[], false))]);
        assert!(matches!(&plan_of(&g)[..], [Action::SetOwners { keep, confirm_gone, .. }] if keep.len() == 1 && confirm_gone.len() == 1));
    }
}
