//! Reload on change, compatible with stakater Reloader's annotations:
//! `reloader.stakater.com/auto: "true"` (everything the pod template references),
//! `configmap.reloader.stakater.com/reload: "a,b"` and `secret.reloader.stakater.com/reload: "c"`.
//!
//! The decision rests on a hash of only the keys the pod template uses (env `valueFrom`,
//! `envFrom`, and volumes, with their `items`), so a change to any other key restarts nothing.
//! When the hash changes, the Deployment's pod template gets a `reloader.stakater.com/last-reloaded-from`
//! annotation: a normal rolling update, visible in `kubectl rollout history`. The first hash a
//! Deployment is seen with is only recorded (no rollout), as is the creation or deletion of a
//! referenced object (Reloader's defaults); changes are debounced: a burst of
//! edits settles for a second before one rollout. Paused Deployments are left alone until resumed.
//! A kube-runtime `Controller` over Deployments, woken by metadata changes of what they follow.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Client, ResourceExt};
use serde_json::json;

pub const AUTO: &str = "reloader.stakater.com/auto";
pub const CONFIGMAPS: &str = "configmap.reloader.stakater.com/reload";
pub const SECRETS: &str = "secret.reloader.stakater.com/reload";
/// Where the last applied hash is kept, on the Deployment itself.
pub const HASH: &str = "lockbox.dev/config-hash";
pub const STAMP: &str = "reloader.stakater.com/last-reloaded-from";
const SETTLE: Duration = Duration::from_secs(1);

/// Which keys of which objects a template uses: None means "every key".
#[derive(Default, Debug, PartialEq)]
pub struct References {
    pub configmaps: BTreeMap<String, Option<BTreeSet<String>>>,
    pub secrets: BTreeMap<String, Option<BTreeSet<String>>>,
}

fn add(map: &mut BTreeMap<String, Option<BTreeSet<String>>>, name: &str, keys: Option<Vec<String>>) {
    let slot = map.entry(name.to_string()).or_insert_with(|| Some(BTreeSet::new()));
    match (slot.as_mut(), keys) {
        (Some(set), Some(keys)) => set.extend(keys),
        _ => *slot = None,
    }
}

/// The ConfigMaps and Secrets (and keys) a pod template reads.
pub fn references(t: &PodTemplateSpec) -> References {
    let mut r = References::default();
    let Some(spec) = &t.spec else { return r };
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(k) = &from.config_map_key_ref {
                    add(&mut r.configmaps, &k.name, Some(vec![k.key.clone()]));
                }
                if let Some(k) = &from.secret_key_ref {
                    add(&mut r.secrets, &k.name, Some(vec![k.key.clone()]));
                }
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(cm) = &e.config_map_ref {
                add(&mut r.configmaps, &cm.name, None);
            }
            if let Some(s) = &e.secret_ref {
                add(&mut r.secrets, &s.name, None);
            }
        }
    }
    let items = |i: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>| i.as_ref().map(|i| i.iter().map(|k| k.key.clone()).collect());
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            add(&mut r.configmaps, &cm.name, items(&cm.items));
        }
        if let Some(s) = &v.secret {
            add(&mut r.secrets, s.secret_name.as_deref().unwrap_or_default(), items(&s.items));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &src.config_map {
                add(&mut r.configmaps, &cm.name, items(&cm.items));
            }
            if let Some(s) = &src.secret {
                add(&mut r.secrets, &s.name, items(&s.items));
            }
        }
    }
    r
}

fn list(annotation: Option<&String>) -> BTreeSet<String> {
    annotation.map(|a| a.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
}

/// Marks a hash taken while a referenced object did not exist.
const ABSENT: &str = "+absent";

/// A hash over the referenced keys' values, in a stable order; absent keys count as absent, and
/// a missing object marks the hash with `ABSENT`.
fn hash(refs: &References, cms: &HashMap<String, BTreeMap<String, Vec<u8>>>, secrets: &HashMap<String, BTreeMap<String, Vec<u8>>>) -> String {
    use std::hash::Hasher;
    // FNV is enough to tell versions apart; the values themselves never leave this function.
    let mut h = fnv::FnvHasher::default();
    let mut absent = false;
    for (kind, names, data) in [("cm", &refs.configmaps, cms), ("secret", &refs.secrets, secrets)] {
        for (name, keys) in names {
            h.write(format!("{kind}/{name}\0").as_bytes());
            let Some(values) = data.get(name) else {
                h.write(b"<absent>\0");
                absent = true;
                continue;
            };
            for (k, v) in values {
                if keys.as_ref().is_none_or(|ks| ks.contains(k)) {
                    h.write(k.as_bytes());
                    h.write(&[0]);
                    h.write(v);
                    h.write(&[0]);
                }
            }
        }
    }
    format!("{:016x}{}", h.finish(), if absent { ABSENT } else { "" })
}

/// The references a Deployment's reload follows: what its template reads, narrowed to the
/// annotated names unless `auto`; None for a Deployment without reload annotations.
fn followed(d: &Deployment) -> Option<References> {
    let a = d.annotations();
    let auto = a.get(AUTO).is_some_and(|v| v == "true");
    if !auto && !a.contains_key(CONFIGMAPS) && !a.contains_key(SECRETS) {
        return None;
    }
    let template = d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut refs = references(&template);
    if !auto {
        let (want_cm, want_s) = (list(a.get(CONFIGMAPS)), list(a.get(SECRETS)));
        refs.configmaps.retain(|n, _| want_cm.contains(n));
        refs.secrets.retain(|n, _| want_s.contains(n));
        // Named but not referenced by the template: the whole object counts.
        for n in want_cm {
            refs.configmaps.entry(n).or_insert(None);
        }
        for n in want_s {
            refs.secrets.entry(n).or_insert(None);
        }
    }
    Some(refs)
}

/// What the reload controller keeps: per Deployment, a changed hash and since when (the
/// debounce).
pub struct Reload {
    client: Client,
    pending: std::sync::Mutex<HashMap<String, (String, Instant)>>,
}

/// Runs reload on change: a kube-runtime `Controller` over Deployments, woken by metadata
/// changes of the ConfigMaps and Secrets a Deployment of the same namespace follows (found in
/// the controller's Deployment store); each reconcile reads only the objects its Deployment
/// references.
pub async fn run(client: Client, cfg: watcher::Config) {
    let controller = Controller::new(Api::<Deployment>::all(client.clone()), cfg.clone());
    let store = controller.store();
    let configmap_followers = {
        let store = store.clone();
        move |changed: PartialObjectMeta<ConfigMap>| followers_of(&store, &changed.metadata, false)
    };
    let secret_followers = move |changed: PartialObjectMeta<Secret>| followers_of(&store, &changed.metadata, true);
    let ctx = Arc::new(Reload { client: client.clone(), pending: Default::default() });
    controller
        // Metadata only: the values are read by the reconcile of a Deployment that follows them.
        .watches(Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()), cfg.clone(), configmap_followers)
        .watches(Api::<PartialObjectMeta<Secret>>::all(client.clone()), cfg, secret_followers)
        .run(
            reconcile,
            |_, e: &kube::Error, _| {
                tracing::debug!(controller = "reloader", error = %crate::short(e), "reconcile failed; will retry");
                Action::requeue(Duration::from_secs(1))
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The Deployments of `meta`'s namespace that follow the ConfigMap (or Secret) it names.
fn followers_of(store: &Store<Deployment>, meta: &ObjectMeta, secret: bool) -> Vec<ObjectRef<Deployment>> {
    let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else { return vec![] };
    crate::shared::Context::in_namespace(store, ns)
        .iter()
        .filter(|d| followed(d).is_some_and(|r| if secret { r.secrets.contains_key(name) } else { r.configmaps.contains_key(name) }))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// One Deployment: the hash of what it follows; recorded at first sight (and when a followed
/// object appears or disappears), rolled out once it has held still for a second.
async fn reconcile(d: Arc<Deployment>, ctx: Arc<Reload>) -> kube::Result<Action> {
    let ns = d.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", d.name_any());
    let forget = |ctx: &Reload| ctx.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    let Some(refs) = followed(&d).filter(|_| d.metadata.deletion_timestamp.is_none()) else {
        forget(&ctx);
        return Ok(Action::await_change());
    };
    let client = &ctx.client;
    let (cm_api, secret_api) = (Api::<ConfigMap>::namespaced(client.clone(), &ns), Api::<Secret>::namespaced(client.clone(), &ns));
    let mut cms = HashMap::new();
    for name in refs.configmaps.keys() {
        if let Some(c) = cm_api.get_opt(name).await? {
            let mut m: BTreeMap<String, Vec<u8>> = c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            m.extend(c.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            cms.insert(name.clone(), m);
        }
    }
    let mut secrets = HashMap::new();
    for name in refs.secrets.keys() {
        if let Some(s) = secret_api.get_opt(name).await? {
            secrets.insert(name.clone(), s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect());
        }
    }
    let now = hash(&refs, &cms, &secrets);
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let record = |hash: String| json!({"metadata": {"annotations": {HASH: hash}}});
    match d.annotations().get(HASH) {
        // First sight, or an object that appears or disappears: record, do not roll. Pods
        // cannot start without what they reference, so a creation needs no restart, and
        // Reloader by default reloads on neither creation nor deletion.
        None => {
            api.patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(&record(now))).await?;
            forget(&ctx);
        }
        Some(old) if *old == now => {
            forget(&ctx);
        }
        Some(old) if old.ends_with(ABSENT) || now.ends_with(ABSENT) => {
            api.patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(&record(now))).await?;
            forget(&ctx);
        }
        Some(_) if d.spec.as_ref().and_then(|s| s.paused) == Some(true) => {}
        Some(_) => {
            // Debounce: roll once the hash has held still for SETTLE.
            let waited = {
                let mut pending = ctx.pending.lock().unwrap_or_else(|p| p.into_inner());
                let entry = pending.entry(key.clone()).or_insert_with(|| (now.clone(), Instant::now()));
                if entry.0 != now {
                    *entry = (now.clone(), Instant::now());
                }
                entry.1.elapsed()
            };
            if waited < SETTLE {
                return Ok(Action::requeue(SETTLE - waited));
            }
            let from = refs
                .configmaps
                .keys()
                .map(|n| format!("configmap/{n}"))
                .chain(refs.secrets.keys().map(|n| format!("secret/{n}")))
                .collect::<Vec<_>>()
                .join(",");
            let stamp = format!("{from} at {}", jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"));
            let patch = json!({"metadata": {"annotations": {HASH: now}}, "spec": {"template": {"metadata": {"annotations": {STAMP: stamp}}}}});
            api.patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            crate::deployment::event(client, &d, "Reloaded", &format!("Rolling out because referenced configuration changed: {from}")).await;
            forget(&ctx);
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_only_the_keys_used() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "i",
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "A"}}}],
            "envFrom": [{"secretRef": {"name": "all"}}]}],
            "volumes": [{"name": "v", "configMap": {"name": "cm", "items": [{"key": "B", "path": "b"}]}}]}}))
        .unwrap();
        let r = references(&t);
        assert_eq!(r.configmaps["cm"], Some(["A".to_string(), "B".to_string()].into()));
        assert_eq!(r.secrets["all"], None);
        let mut cms = HashMap::new();
        cms.insert("cm".to_string(), BTreeMap::from([("A".to_string(), b"1".to_vec()), ("B".to_string(), b"2".to_vec()), ("C".to_string(), b"3".to_vec())]));
        let secrets = HashMap::from([("all".to_string(), BTreeMap::from([("S".to_string(), b"s".to_vec())]))]);
        let h1 = hash(&r, &cms, &secrets);
        cms.get_mut("cm").unwrap().insert("C".into(), b"changed".to_vec());
        assert_eq!(hash(&r, &cms, &secrets), h1, "an unreferenced key does not count");
        cms.get_mut("cm").unwrap().insert("A".into(), b"changed".to_vec());
        assert_ne!(hash(&r, &cms, &secrets), h1);
        assert!(!h1.ends_with(ABSENT));
        let mut r = r;
        r.secrets.insert("missing".into(), None);
        assert!(hash(&r, &cms, &secrets).ends_with(ABSENT), "a missing object marks the hash");
    }
}
