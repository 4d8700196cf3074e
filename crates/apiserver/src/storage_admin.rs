//! Storage administration for key rotation: which provider and key each stored object was
//! written with (`lockbox storage status`), and rewriting the stale ones with the current write
//! key (`lockbox storage migrate`).
//!
//! Both run against a stopped data dir directly on the store, and against a running server
//! through it: status by `GET /lockbox/v1/storage/status`, migration by no-op updates through
//! the API, which the server turns into rewrites of stale objects. Every rewrite is a
//! compare-and-swap on the key's revision, so a concurrent write is never lost; a migration
//! interrupted half way is resumed by running it again (only stale objects are touched).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use crypt::config::ResourceTransformers;
use crypt::Transformer;
use serde::{Deserialize, Serialize};
use store::{Compare, Op, Store, Txn, TxnResult};

use crate::negotiate;
use crate::request::Query;
use crate::rest::Registry;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Objects by `provider:key` that wrote them (`identity` for plaintext).
    pub counts: BTreeMap<String, u64>,
    /// The write key of each resource seen.
    pub write_keys: BTreeMap<String, String>,
    /// Storage keys of objects not written with their resource's current write key.
    pub stale: Vec<String>,
    /// Storage keys that no configured provider can read.
    pub unreadable: Vec<String>,
    pub total: u64,
}

fn prefix_for(resource: Option<&str>) -> String {
    match resource {
        Some(r) => format!("/registry/{}/", r.split('.').next().unwrap_or(r)),
        None => "/registry/".into(),
    }
}

/// Visits every stored object under the prefix, a page at a time.
async fn for_each(store: &dyn Store, prefix: &str, mut f: impl FnMut(store::KeyValue)) -> Result<(), String> {
    let mut start: Option<String> = None;
    loop {
        let page = store.range(prefix, start.as_deref(), 500).await.map_err(|e| e.to_string())?;
        let more = page.more;
        start = page.kvs.last().map(|kv| kv.key.clone());
        for kv in page.kvs {
            f(kv);
        }
        if !more {
            return Ok(());
        }
    }
}

pub async fn status(store: &dyn Store, enc: &ResourceTransformers, resource: Option<&str>) -> Result<StatusReport, String> {
    let mut report = StatusReport::default();
    for_each(store, &prefix_for(resource), |kv| {
        report.total += 1;
        *report.counts.entry(crypt::prefix::describe(&kv.value)).or_default() += 1;
        let res = crypt::config::resource_of(&kv.key).to_string();
        report.write_keys.entry(res).or_insert_with(|| enc.chain(&kv.key).map(|c| c.write_label().to_string()).unwrap_or_else(|| "identity".into()));
        match enc.transform_from_storage(&kv.value, &kv.key) {
            Ok((_, info)) if info.stale => report.stale.push(kv.key),
            Ok(_) => {}
            Err(_) => report.unreadable.push(kv.key),
        }
    })
    .await?;
    Ok(report)
}

#[derive(Debug, Default, Serialize)]
pub struct MigrateReport {
    pub rewritten: u64,
    pub already_current: u64,
    pub unreadable: Vec<String>,
}

/// Rewrites stale objects directly in the store (the server must not be running).
pub async fn migrate_offline(
    store: &dyn Store,
    enc: &ResourceTransformers,
    resource: Option<&str>,
    progress: &dyn Fn(u64, u64),
) -> Result<MigrateReport, String> {
    let mut keys = Vec::new();
    for_each(store, &prefix_for(resource), |kv| keys.push(kv.key)).await?;
    let total = keys.len() as u64;
    let mut report = MigrateReport::default();
    for (i, key) in keys.iter().enumerate() {
        // Re-read and compare-and-swap; on a concurrent change, look again.
        for _attempt in 0..5 {
            let Some(kv) = store.get(key).await.map_err(|e| e.to_string())? else { break };
            let (plain, info) = match enc.transform_from_storage(&kv.value, key) {
                Ok(r) => r,
                Err(_) => {
                    report.unreadable.push(key.clone());
                    break;
                }
            };
            if !info.stale {
                report.already_current += 1;
                break;
            }
            let value = enc.transform_to_storage(&plain, key).map_err(|e| e.to_string())?;
            match store
                .txn(Txn { compare: vec![Compare::ModRevision(key.clone(), kv.mod_revision)], success: vec![Op::Put(key.clone(), value)] })
                .await
                .map_err(|e| e.to_string())?
            {
                TxnResult::Committed { .. } => {
                    report.rewritten += 1;
                    break;
                }
                TxnResult::Failed { .. } => continue,
            }
        }
        progress(i as u64 + 1, total);
    }
    // The history still holds the old values: drop it.
    store.compact(store.revision()).await.map_err(|e| e.to_string())?;
    Ok(report)
}

/// `POST /lockbox/v1/storage/compact`: drops the store's history up to now, so that values
/// rewritten by a migration do not linger in it. Watches older than now get 410 Gone.
pub async fn compact_response(reg: &Arc<Registry>) -> api::ApiResult<Response<Body>> {
    let rev = reg.store.revision();
    reg.store.compact(rev).await.map_err(crate::rest::storage_error)?;
    reg.cache.compacted(rev);
    Ok(negotiate::json(StatusCode::OK, &serde_json::json!({"compactedRevision": rev})))
}

/// `GET /lockbox/v1/storage/status[?resource=secrets]` on a running server.
pub async fn status_response(reg: &Arc<Registry>, encryption: &crypt::reload::Reloading, q: &Query) -> api::ApiResult<Response<Body>> {
    let enc = encryption.current();
    let report = status(reg.store.as_ref(), &enc, q.get("resource").filter(|r| !r.is_empty())).await.map_err(api::ApiError::internal)?;
    Ok(negotiate::json(StatusCode::OK, &serde_json::to_value(&report).unwrap_or_default()))
}
