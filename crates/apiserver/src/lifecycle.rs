//! Server-side housekeeping that kube-apiserver and kube-controller-manager do for these kinds:
//! the built-in namespaces, namespace termination (delete the contents, then the namespace),
//! and periodic compaction of the store's history.

use std::sync::Arc;
use std::time::Duration;

use api::kinds::{self, Resource};
use api::object;
use serde_json::{json, Value};

use crate::rest::{DeleteOptions, ListOptions, Registry, WriteOptions};

pub const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

pub async fn ensure_builtin_namespaces(reg: &Registry) -> anyhow::Result<()> {
    for ns in BUILTIN_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match reg.create(&kinds::NAMESPACES, "", obj, &WriteOptions { field_manager: "lockbox".into(), ..Default::default() }).await {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => anyhow::bail!("creating namespace {ns}: {e}"),
        }
    }
    Ok(())
}

/// Finalizes terminating namespaces: deletes everything in them, then drops the `kubernetes`
/// finalizer, which removes the namespace. Woken by every cache event, at most every 100 ms.
pub async fn namespace_finalizer(reg: Arc<Registry>) {
    let mut rx = match reg.cache.subscribe(reg.cache.current_revision()) {
        Ok((_, rx)) => rx,
        Err(_) => return,
    };
    loop {
        if let Err(e) = finalize_pass(&reg).await {
            tracing::warn!(error = %e, "namespace finalization pass failed");
        }
        tokio::select! {
            r = rx.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r { return },
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
    }
}

async fn finalize_pass(reg: &Registry) -> Result<(), api::ApiError> {
    let namespaces = reg.list(&kinds::NAMESPACES, "", &ListOptions::default()).await?;
    for ns in namespaces.items.iter().filter(|n| object::is_deleting(n)) {
        let name = object::name(ns).to_string();
        let mut left = Remaining::default();
        for res in kinds::stored().filter(|r| r.namespaced) {
            delete_all(reg, res, &name, &mut left).await?;
        }
        let mut done: Value = (**ns).clone();
        *object::member_at(&mut done, &["status", "conditions"]) = left.conditions(&ns["status"]["conditions"]);
        if !left.resources.is_empty() {
            // Still waiting: say on what (kubectl describe namespace shows it), once.
            if done != **ns {
                match reg.write_raw(&kinds::NAMESPACES, "", &name, ns, Some(&done)).await {
                    Ok(_) | Err(api::ApiError { reason: api::Reason::AlreadyExists | api::Reason::Conflict, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            continue;
        }
        let fins: Vec<Value> = done["spec"]["finalizers"].as_array().cloned().unwrap_or_default().into_iter().filter(|f| f != "kubernetes").collect();
        done["spec"]["finalizers"] = json!(fins);
        let gone = fins.is_empty() && object::finalizers(&done).is_empty();
        // Other finalizers (metadata's, or another spec finalizer) are someone else's to
        // remove; rewriting an unchanged namespace would only wake every watcher, and this loop.
        if !gone && done == **ns {
            continue;
        }
        match reg.write_raw(&kinds::NAMESPACES, "", &name, ns, if gone { None } else { Some(&done) }).await {
            Ok(_) => tracing::info!(namespace = %name, "namespace finalized"),
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a terminating namespace still holds: objects per resource, and their finalizers.
#[derive(Default)]
struct Remaining {
    resources: std::collections::BTreeMap<String, usize>,
    finalizers: std::collections::BTreeMap<String, usize>,
}

impl Remaining {
    /// The namespace controller's status conditions, keeping each one's lastTransitionTime while
    /// its status stays the same (so an unchanged state is not rewritten).
    fn conditions(&self, previous: &Value) -> Value {
        let list = |m: &std::collections::BTreeMap<String, usize>, what: &str| {
            m.iter().map(|(k, n)| format!("{k} {what} {n} resource instances")).collect::<Vec<_>>().join(", ")
        };
        let content = if self.resources.is_empty() {
            ("False", "ContentRemoved", "All content successfully removed".to_string())
        } else {
            ("True", "SomeResourcesRemain", format!("Some resources are remaining: {}", list(&self.resources, "has")))
        };
        let finalizers = if self.finalizers.is_empty() {
            ("False", "ContentHasNoFinalizers", "All content-preserving finalizers finished".to_string())
        } else {
            ("True", "SomeFinalizersRemain", format!("Some content in the namespace has finalizers remaining: {}", list(&self.finalizers, "in")))
        };
        let wanted = [
            ("NamespaceDeletionDiscoveryFailure", ("False", "ResourcesDiscovered", "All resources successfully discovered".to_string())),
            ("NamespaceDeletionGroupVersionParsingFailure", ("False", "ParsedGroupVersions", "All legacy kube types successfully parsed".to_string())),
            ("NamespaceDeletionContentFailure", ("False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization".to_string())),
            ("NamespaceContentRemaining", content),
            ("NamespaceFinalizersRemaining", finalizers),
        ];
        let now = object::now_rfc3339();
        Value::Array(
            wanted
                .into_iter()
                .map(|(type_, (status, reason, message))| {
                    let before = previous.as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_));
                    let since = before.filter(|c| c["status"] == status).map(|c| c["lastTransitionTime"].clone()).unwrap_or_else(|| json!(now));
                    json!({"type": type_, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
                })
                .collect(),
        )
    }
}

/// Deletes every object of `res` in `ns`, noting in `left` what is still there (finalizers).
async fn delete_all(reg: &Registry, res: &Resource, ns: &str, left: &mut Remaining) -> Result<(), api::ApiError> {
    let list = reg.list(res, ns, &ListOptions::default()).await?;
    for obj in list.items {
        match reg.delete(res, ns, object::name(&obj), &DeleteOptions::default()).await {
            Ok(crate::rest::DeleteOutcome::Pending(pending)) => {
                *left.resources.entry(format!("{}.{}", res.plural, res.group)).or_default() += 1;
                for f in object::finalizers(&pending) {
                    *left.finalizers.entry(f).or_default() += 1;
                }
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Compacts the store's history every `every`, to the revision seen one period earlier, as
/// kube-apiserver does (default 5 minutes).
pub async fn compactor(reg: Arc<Registry>, every: Duration) {
    let mut previous = reg.store.revision();
    loop {
        tokio::time::sleep(every).await;
        let now = reg.store.revision();
        if previous > reg.store.compacted_revision() {
            match reg.store.compact(previous).await {
                Ok(()) => reg.cache.compacted(previous),
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            }
        }
        previous = now;
    }
}
