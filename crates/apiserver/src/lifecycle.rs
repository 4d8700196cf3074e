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
            Err(e) if e.code == 409 => {}
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
        let mut remaining = 0;
        for res in kinds::stored().filter(|r| r.namespaced) {
            remaining += delete_all(reg, res, &name).await?;
        }
        if remaining > 0 {
            continue;
        }
        let mut done: Value = (**ns).clone();
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
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes every object of `res` in `ns`; returns how many are still there (finalizers).
async fn delete_all(reg: &Registry, res: &Resource, ns: &str) -> Result<usize, api::ApiError> {
    let list = reg.list(res, ns, &ListOptions::default()).await?;
    let mut remaining = 0;
    for obj in list.items {
        match reg.delete(res, ns, object::name(&obj), &DeleteOptions::default()).await {
            Ok(crate::rest::DeleteOutcome::Pending(_)) => remaining += 1,
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(remaining)
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
