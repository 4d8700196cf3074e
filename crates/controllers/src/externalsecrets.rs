//! ExternalSecret sync, as the External Secrets Operator does it: read the referenced
//! SecretStore or ClusterSecretStore, fetch the values from its provider, and write the target
//! Secret (`creationPolicy` Owner, Orphan, Merge or None; `deletionPolicy` Retain, Delete or
//! Merge; `target.template` rendered by the `template` module), then report a `Ready` condition
//! (`SecretSynced` / `SecretSyncedError`) and an event. Provider errors back off exponentially
//! (capped at 5 minutes) and keep the last good Secret; editing the ExternalSecret or setting the
//! `force-sync` annotation syncs at once.
//!
//! The providers (fake, vault, aws, azurekv) are in `providers`. Values never appear in
//! conditions, events or logs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use serde_json::{json, Value};

use crate::eso_api::{get_json, s, typed, EsoKind, GROUP};
use crate::providers::{Provider, NOT_FOUND};

const FORCE_SYNC: &str = "force-sync";
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Go duration strings as ESO writes them ("1h", "15s", "1h0m0s", "0").
pub fn parse_duration(d: &str) -> Option<Duration> {
    if d == "0" || d.is_empty() {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let chars: Vec<char> = d.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            i += 1;
            continue;
        }
        let unit: String = if c == 'm' && chars.get(i + 1) == Some(&'s') { "ms".into() } else { c.to_string() };
        i += unit.len();
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    // Go's Duration is int64 nanoseconds: a longer one is "invalid duration" there too.
    Duration::try_from_secs_f64(total).ok().filter(|d| d.as_nanos() <= i64::MAX as u128)
}

/// What the sync remembers of each ExternalSecret: when it is due again, its back-off, and
/// the generation and force-sync annotation it last synced.
#[derive(Default)]
struct State {
    next: Option<Instant>,
    backoff: Duration,
    seen: (i64, String),
}

/// The context of the ExternalSecret controller.
pub struct Sync {
    client: Client,
    http: reqwest::Client,
    state: std::sync::Mutex<HashMap<String, State>>,
}

/// Runs the ExternalSecret controller: a kube-runtime `Controller` over ExternalSecrets,
/// woken by the SecretStores and ClusterSecretStores they reference;
/// each reconcile syncs one ExternalSecret when it changed or its refresh is due, and
/// requeues itself for the next refresh or retry.
pub async fn run(client: Client, cfg: kube::runtime::watcher::Config) {
    use futures::StreamExt;
    use kube::runtime::Controller;
    let es = EsoKind::ExternalSecret.resource();
    let controller = Controller::new_with(EsoKind::ExternalSecret.api_all(&client), cfg.clone(), es.clone());
    let store = controller.store();
    let ctx = Arc::new(Sync {
        client: client.clone(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
        state: Default::default(),
    });
    tokio::spawn(forget_deleted(ctx.clone(), store.clone()));
    let referencing = |store: Store<DynamicObject>, kind: &'static str| {
        move |changed: DynamicObject| {
            let (name, ns) = (changed.metadata.name.clone().unwrap_or_default(), changed.metadata.namespace.clone());
            store
                .state()
                .iter()
                .filter(|e| {
                    let r = &e.data["spec"]["secretStoreRef"];
                    r["name"] == name.as_str()
                        && r["kind"].as_str().filter(|k| !k.is_empty()).unwrap_or("SecretStore") == kind
                        && (ns.is_none() || e.metadata.namespace == ns)
                })
                .map(|e| ObjectRef::from_obj_with(e.as_ref(), EsoKind::ExternalSecret.resource()))
                .collect::<Vec<_>>()
        }
    };
    // Not woken by its Secrets: a reconcile acts only on a change of the ExternalSecret or a
    // due refresh, and a watch of every Secret would cost each Secret write an event.
    controller
        .watches_with(EsoKind::SecretStore.api_all(&client), EsoKind::SecretStore.resource(), cfg.clone(), referencing(store.clone(), "SecretStore"))
        .watches_with(EsoKind::ClusterSecretStore.api_all(&client), EsoKind::ClusterSecretStore.resource(), cfg, referencing(store, "ClusterSecretStore"))
        .run(reconcile, |_, _: &std::convert::Infallible, _| Action::await_change(), ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Drops the state and metrics of ExternalSecrets that are gone (a reconcile never runs for
/// a deleted object).
async fn forget_deleted(ctx: Arc<Sync>, store: Store<DynamicObject>) {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let live: std::collections::HashSet<String> = store
            .state()
            .iter()
            .map(|e| format!("{}/{}", e.metadata.namespace.as_deref().unwrap_or_default(), e.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        ctx.state.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| {
            let kept = live.contains(k);
            if !kept {
                let (ns, name) = k.split_once('/').unwrap_or_default();
                crate::metrics::forget(ns, name);
            }
            kept
        });
    }
}

/// One ExternalSecret: synced when its generation or force-sync annotation changed or its
/// refresh (or retry) is due; otherwise left until then.
async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Sync>) -> Result<Action, std::convert::Infallible> {
    let client = &ctx.client;
    let es = serde_json::to_value(obj.as_ref()).unwrap_or_default();
    let ns = s(&es["metadata"]["namespace"]);
    let name = s(&es["metadata"]["name"]);
    let key = format!("{ns}/{name}");
    let generation = es["metadata"]["generation"].as_i64().unwrap_or(0);
    let force = s(&es["metadata"]["annotations"][FORCE_SYNC]);
    let until = |next: Option<Instant>| match next {
        Some(t) => Action::requeue(t.saturating_duration_since(Instant::now()).max(Duration::from_millis(10))),
        None => Action::await_change(),
    };
    {
        let mut all = ctx.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = all.entry(key.clone()).or_default();
        let changed = st.seen != (generation, force.clone());
        if !changed && st.next.is_none_or(|t| Instant::now() < t) {
            return Ok(until(st.next));
        }
        st.seen = (generation, force);
    }
    let refresh = parse_duration(&s(&es["spec"]["refreshInterval"])).unwrap_or(Duration::from_secs(3600));
    let started = Instant::now();
    let mut provider = None;
    let result = sync(client, &ctx.http, &es, &mut provider).await;
    let store = &es["spec"]["secretStoreRef"];
    let store_kind = store["kind"].as_str().filter(|k| !k.is_empty()).unwrap_or("SecretStore");
    let store_ns = if store_kind == "ClusterSecretStore" { "" } else { ns.as_str() };
    crate::metrics::sync(&ns, &name, Some((store_kind, store_ns, store["name"].as_str().unwrap_or_default())), provider, started.elapsed(), result.is_ok());
    let next = {
        let mut all = ctx.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = all.entry(key.clone()).or_default();
        match &result {
            Ok(()) => {
                st.backoff = Duration::ZERO;
                st.next = (!refresh.is_zero()).then(|| Instant::now().checked_add(refresh)).flatten();
            }
            Err(_) => {
                st.backoff = if st.backoff.is_zero() { Duration::from_secs(1) } else { (st.backoff * 2).min(MAX_BACKOFF) };
                st.next = Instant::now().checked_add(st.backoff);
            }
        }
        st.next
    };
    match result {
        Ok(()) => set_ready(client, &es, true, "SecretSynced", "secret synced").await,
        Err(e) => {
            tracing::info!(externalsecret = %key, error = %e, "sync failed");
            set_ready(client, &es, false, "SecretSyncedError", &e).await;
        }
    }
    Ok(until(next))
}

async fn set_ready(client: &Client, es: &Value, ok: bool, reason: &str, message: &str) {
    let ns = s(&es["metadata"]["namespace"]);
    let name = s(&es["metadata"]["name"]);
    let prev = es["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Ready")).cloned().unwrap_or(Value::Null);
    let status = if ok { "True" } else { "False" };
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let transition = if prev["status"] == status && prev["reason"] == reason { prev["lastTransitionTime"].clone() } else { json!(now) };
    let mut st = json!({"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message, "lastTransitionTime": transition}]});
    if ok {
        st["refreshTime"] = json!(now);
        st["syncedResourceVersion"] =
            json!(format!("{}-{}", es["metadata"]["generation"].as_i64().unwrap_or(0), s(&es["metadata"]["annotations"][FORCE_SYNC])));
        st["binding"] = json!({"name": es["spec"]["target"]["name"].as_str().filter(|n| !n.is_empty()).unwrap_or(&name)});
    }
    let _ = EsoKind::ExternalSecret.api(client, &ns).patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": st}))).await;
    if prev["status"] != status || prev["reason"] != reason || !ok {
        let involved = ObjectReference {
            api_version: Some(format!("{GROUP}/v1")),
            kind: Some("ExternalSecret".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: es["metadata"]["uid"].as_str().map(String::from),
            ..Default::default()
        };
        let (type_, reason) = if ok { ("Normal", "Updated") } else { ("Warning", "UpdateFailed") };
        crate::record_event(client, involved, "external-secrets", type_, reason, message).await;
    }
}

/// Fetches from the provider and writes the target Secret.
async fn sync(client: &Client, http: &reqwest::Client, es: &Value, kind: &mut Option<&'static str>) -> Result<(), String> {
    let ns = s(&es["metadata"]["namespace"]);
    let name = s(&es["metadata"]["name"]);
    let spec = &es["spec"];
    let store_ref = &spec["secretStoreRef"];
    let store_kind = if store_ref["kind"] == "ClusterSecretStore" { EsoKind::ClusterSecretStore } else { EsoKind::SecretStore };
    let store = get_json(&store_kind.api(client, &ns), &s(&store_ref["name"]))
        .await?
        .ok_or_else(|| format!("could not get SecretStore {:?}", s(&store_ref["name"])))?;
    *kind = Provider::kind_of(&store);
    let provider = Provider::from_store(client, http, &store, &ns).await?;
    // deletionPolicy Delete or Merge: a secret gone at the source drops its keys instead of
    // failing the sync (Retain, the default, keeps the last good Secret and reports the error).
    let deletion = spec["target"]["deletionPolicy"].as_str().unwrap_or("Retain");
    let tolerate = |r: Result<(), String>| match r {
        Err(e) if deletion != "Retain" && e.starts_with(NOT_FOUND) => Ok(()),
        other => other,
    };
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for d in spec["data"].as_array().cloned().unwrap_or_default() {
        let r = &d["remoteRef"];
        tolerate(provider.get(&s(&r["key"]), &s(&r["property"]), &s(&r["version"])).await.map(|v| {
            data.insert(s(&d["secretKey"]), v);
        }))?;
    }
    for df in spec["dataFrom"].as_array().cloned().unwrap_or_default() {
        if let Some(ex) = df.get("extract").filter(|e| e.is_object()) {
            tolerate(provider.get_map(&s(&ex["key"]), &s(&ex["version"])).await.map(|m| data.extend(m)))?;
        }
        if let Some(find) = df.get("find").filter(|f| f.is_object()) {
            data.extend(provider.find(&s(&find["name"]["regexp"]), find["tags"].as_object()).await?);
        }
    }
    if data.is_empty() && deletion == "Delete" {
        return delete_target(client, es, &ns, &name).await;
    }
    write_target(client, es, &ns, &name, data).await
}

/// deletionPolicy Delete with nothing left at the source: the Secret goes, if this
/// ExternalSecret manages it.
async fn delete_target(client: &Client, es: &Value, ns: &str, name: &str) -> Result<(), String> {
    let secret_name = es["spec"]["target"]["name"].as_str().filter(|n| !n.is_empty()).unwrap_or(name).to_string();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    match get_json(&secrets, &secret_name).await? {
        Some(sec) if sec["metadata"]["labels"]["reconcile.external-secrets.io/managed"] == "true" => {
            match secrets.delete(&secret_name, &DeleteParams::default()).await {
                Err(e) if !crate::benign(&e) => Err(crate::short(&e)),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The target Secret's data: the fetched values, or the rendered `target.template.data`
/// (alone with mergePolicy Replace, over the fetched values with Merge).
fn templated(template: &Value, fetched: BTreeMap<String, Vec<u8>>) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let Some(tdata) = template["data"].as_object().filter(|d| !d.is_empty()) else { return Ok(fetched) };
    let mut out = if template["mergePolicy"] == "Merge" { fetched.clone() } else { BTreeMap::new() };
    for (k, src) in tdata {
        out.insert(k.clone(), crate::template::render(k, src.as_str().unwrap_or_default(), &fetched)?.into_bytes());
    }
    Ok(out)
}

async fn write_target(client: &Client, es: &Value, ns: &str, name: &str, data: BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let target = &es["spec"]["target"];
    let secret_name = target["name"].as_str().filter(|n| !n.is_empty()).unwrap_or(name).to_string();
    let policy = target["creationPolicy"].as_str().unwrap_or("Owner");
    if policy == "None" {
        return Ok(());
    }
    let data = templated(&target["template"], data)?;
    let b64: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let existing = get_json(&secrets, &secret_name).await?;
    let mut labels = json!({"reconcile.external-secrets.io/managed": "true"});
    if let Some(l) = target["template"]["metadata"]["labels"].as_object() {
        for (k, v) in l {
            labels[k] = v.clone();
        }
    }
    let annotations = json!(target["template"]["metadata"]["annotations"].as_object().cloned().unwrap_or_default());
    match (existing, policy) {
        (None, "Merge") => Err(format!("the target Secret {secret_name:?} does not exist and creationPolicy is Merge")),
        (None, _) => {
            let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name, "namespace": ns, "labels": labels, "annotations": annotations}, "type": target["template"]["type"].as_str().unwrap_or("Opaque"), "data": b64});
            if policy == "Owner" {
                secret["metadata"]["ownerReferences"] = json!([{"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": name, "uid": es["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
            }
            secrets.create(&PostParams::default(), &typed(secret)?).await.map(|_| ()).map_err(|e| crate::short(&e))
        }
        (Some(current), _) => {
            let mut merged = if policy == "Merge" { current["data"].as_object().cloned().unwrap_or_default() } else { serde_json::Map::new() };
            merged.extend(b64);
            let meta_current =
                current["metadata"]["labels"].as_object().is_some_and(|have| labels.as_object().into_iter().flatten().all(|(k, v)| have.get(k) == Some(v)))
                    && annotations.as_object().into_iter().flatten().all(|(k, v)| current["metadata"]["annotations"][k] == *v);
            if current["data"] == Value::Object(merged.clone()) && (policy == "Merge" || meta_current) {
                return Ok(());
            }
            let mut patch = json!({"data": merged});
            if policy != "Merge" {
                patch["metadata"] = json!({"labels": labels, "annotations": annotations});
            }
            // A merge patch with the full data replaces keys that disappeared at the source.
            let mut full = patch.clone();
            if policy != "Merge" {
                if let Some(old) = current["data"].as_object() {
                    for k in old.keys() {
                        if !merged.contains_key(k) {
                            full["data"][k] = Value::Null;
                        }
                    }
                }
            }
            secrets.patch(&secret_name, &PatchParams::default(), &Patch::Merge(&full)).await.map(|_| ()).map_err(|e| crate::short(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h0m0s"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("x"), None);
    }
}
