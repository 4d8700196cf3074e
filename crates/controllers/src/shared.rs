//! What the workload controllers share: the client, the reflector stores they look objects
//! up in (instead of listing them), the expectations that keep a controller from acting twice
//! on a store that has not yet shown its own writes, and the per-object back-off of failed
//! reconciles.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::Stream;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

/// The context every reconcile gets. Each controller looks objects up in the store of the
/// very watch that wakes it (`reflected`), so a reconcile woken by a change finds that change.
pub struct Context {
    pub client: Client,
    /// The scheduler's own pods (its primary store), for the load of each node.
    pub scheduler_pods: Store<Pod>,
    /// The nodes whose changes wake the scheduler.
    pub nodes: Store<Node>,
    /// The pods whose changes wake the ReplicaSet controller.
    pub replicaset_pods: Store<Pod>,
    /// The ReplicaSets and pods whose changes wake the Deployment controller.
    pub deployment_replicasets: Store<ReplicaSet>,
    pub deployment_pods: Store<Pod>,
    /// Pods created or deleted by the ReplicaSet controller that the pod store has not shown.
    pub pod_expectations: Expectations,
    /// Failed Deployments, retried ever more rarely.
    pub deployment_backoff: Backoff,
}

/// A watch of `api` whose objects reach the returned store before they reach the controller
/// they wake.
pub fn reflected<K>(api: Api<K>, cfg: watcher::Config) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    (reader, watcher(api, cfg).default_backoff().reflect(writer).touched_objects())
}

impl Context {
    /// The objects of `store` in `namespace`.
    pub fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<std::sync::Arc<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        store.state().into_iter().filter(|o| o.namespace().as_deref() == Some(namespace)).collect()
    }
}

/// kube's ControllerExpectations, by name: the creations and deletions an owner made that its
/// store has not shown yet. Until it has (or the expectation is old), the owner does not
/// count its children again, so a lagging store never makes it create or delete twice.
#[derive(Default)]
pub struct Expectations(Mutex<HashMap<String, Expected>>);

struct Expected {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Instant,
}

/// kube's ExpectationsTimeout: an expectation this old is given up.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

impl Expectations {
    /// Records what `owner` just created and deleted.
    pub fn expect(&self, owner: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let e = all.entry(owner.to_string()).or_insert_with(|| Expected { created: HashSet::new(), deleted: HashSet::new(), since: Instant::now() });
        e.created.extend(created);
        e.deleted.extend(deleted);
        e.since = Instant::now();
    }

    /// Whether the store shows everything `owner` did: `seen(name)` is None for a name the
    /// store lacks, else whether it is terminating.
    pub fn satisfied(&self, owner: &str, seen: impl Fn(&str) -> Option<bool>) -> bool {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = all.get_mut(owner) else { return true };
        e.created.retain(|n| seen(n).is_none());
        e.deleted.retain(|n| seen(n) == Some(false));
        if (e.created.is_empty() && e.deleted.is_empty()) || e.since.elapsed() > EXPECTATIONS_TIMEOUT {
            all.remove(owner);
            return true;
        }
        false
    }

    pub fn forget(&self, owner: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(owner);
    }
}

/// The workqueue's per-item exponential back-off (5 ms doubling to 1000 s), so that an object
/// that cannot progress (a Deployment whose ReplicaSet name is invalid, say) costs a retry and
/// a log line ever more rarely. A new generation (the user changed the spec) starts again.
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, (i64, Duration)>>);

impl Backoff {
    /// The delay before retrying `uid` at `generation` after another failure.
    pub fn failed(&self, uid: &str, generation: i64) -> Duration {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let delay = match all.get(uid) {
            Some((g, d)) if *g == generation => (*d * 2).min(Duration::from_secs(1000)),
            _ => Duration::from_millis(5),
        };
        all.insert(uid.to_string(), (generation, delay));
        delay
    }

    pub fn succeeded(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_hold_until_the_store_shows_the_writes() {
        let e = Expectations::default();
        assert!(e.satisfied("rs", |_| None), "nothing expected");
        e.expect("rs", vec!["a".into(), "b".into()], vec!["old".into()]);
        // The store has seen one creation and still shows the deleted pod as live.
        assert!(!e.satisfied("rs", |n| match n {
            "a" | "old" => Some(false),
            _ => None,
        }));
        // Now both creations, and the deleted pod terminating.
        assert!(e.satisfied("rs", |n| match n {
            "old" => Some(true),
            _ => Some(false),
        }));
        assert!(e.satisfied("rs", |_| None), "a satisfied expectation is forgotten");
    }

    #[test]
    fn backoff_doubles_per_generation_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.failed("d", 1), Duration::from_millis(5));
        assert_eq!(b.failed("d", 1), Duration::from_millis(10));
        assert_eq!(b.failed("d", 2), Duration::from_millis(5), "a new generation starts again");
        for _ in 0..30 {
            b.failed("d", 2);
        }
        assert_eq!(b.failed("d", 2), Duration::from_secs(1000));
        b.succeeded("d");
        assert_eq!(b.failed("d", 2), Duration::from_millis(5));
    }
}
