//! The watch cache: every object under `/registry/`, decoded, in memory, kept current by one
//! watch on the store.
//!
//! Reads, lists and watches are served from here, never by re-reading the store (as
//! kube-apiserver's cacher does). It keeps a window of recent events, each with the object's
//! previous state, so that a watch can resume from a recent resourceVersion and a list can be
//! answered exactly at a recent resourceVersion (by undoing the newer events). Anything older
//! than the window is `410 Gone`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use store::{EventKind, Store};
use tokio::sync::{broadcast, watch};

/// How many recent events the cache remembers for watches and exact lists.
const HISTORY: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A decoded object, or why it could not be decoded (e.g. it cannot be decrypted). The error
/// names the failure, never the data.
pub type Decoded = Result<Arc<Value>, String>;

#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub key: String,
    pub revision: i64,
    pub object: Decoded,
    pub prev: Option<Decoded>,
}

#[derive(Clone)]
pub struct Entry {
    pub mod_revision: i64,
    pub object: Decoded,
    /// Read with a key other than the current write key: a rewrite would re-encrypt it.
    pub stale: bool,
}

/// Turns stored bytes into an object (value transformer, then codec, then resourceVersion),
/// and says whether they were stale.
pub type DecodeFn = Arc<dyn Fn(&str, &[u8], i64) -> (Decoded, bool) + Send + Sync>;

struct State {
    objects: BTreeMap<String, Entry>,
    history: VecDeque<Arc<CacheEvent>>,
    revision: i64,
    /// Every event after this revision is in `history`.
    history_floor: i64,
}

pub struct WatchCache {
    state: RwLock<State>,
    events: broadcast::Sender<Arc<CacheEvent>>,
    revision: watch::Sender<i64>,
}

#[derive(Debug)]
pub struct TooOld {
    pub requested: i64,
    pub oldest: i64,
}

impl WatchCache {
    /// Loads everything from the store and starts following it.
    pub async fn start(store: Arc<dyn Store>, decode: DecodeFn) -> Result<Arc<Self>, store::Error> {
        let all = store.range("/registry/", None, 0).await?;
        let mut objects = BTreeMap::new();
        for kv in all.kvs {
            let (object, stale) = decode(&kv.key, &kv.value, kv.mod_revision);
            objects.insert(kv.key, Entry { mod_revision: kv.mod_revision, object, stale });
        }
        let (events, _) = broadcast::channel(16_384);
        let (revision, _) = watch::channel(all.revision);
        let cache = Arc::new(WatchCache {
            state: RwLock::new(State { objects, history: VecDeque::new(), revision: all.revision, history_floor: all.revision }),
            events,
            revision,
        });
        let follower = cache.clone();
        let (history, rx) = store.watch(all.revision).await?;
        tokio::spawn(async move { follower.follow(store, decode, history, rx).await });
        Ok(cache)
    }

    async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        decode: DecodeFn,
        mut history: Vec<store::Event>,
        mut rx: broadcast::Receiver<Arc<Vec<store::Event>>>,
    ) {
        loop {
            self.apply(std::mem::take(&mut history), &decode);
            match rx.recv().await {
                Ok(batch) => history = batch.as_ref().clone(),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the store's broadcast: replay from the store's history.
                    match store.watch(self.current_revision()).await {
                        Ok((h, r)) => {
                            history = h;
                            rx = r;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "watch cache lost its place in the store's history");
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn apply(&self, events: Vec<store::Event>, decode: &DecodeFn) {
        if events.is_empty() {
            return;
        }
        let mut state = self.state.write().expect("cache lock");
        let mut last = state.revision;
        for ev in events {
            if ev.kv.mod_revision <= state.revision {
                continue; // already seen (history and live stream overlap)
            }
            let key = ev.kv.key.clone();
            let prev = state.objects.get(&key).map(|e| e.object.clone());
            let (kind, object) = match ev.kind {
                EventKind::Put => {
                    let (obj, stale) = decode(&key, &ev.kv.value, ev.kv.mod_revision);
                    state.objects.insert(key.clone(), Entry { mod_revision: ev.kv.mod_revision, object: obj.clone(), stale });
                    (if prev.is_some() { EventType::Modified } else { EventType::Added }, obj)
                }
                EventKind::Delete => {
                    state.objects.remove(&key);
                    (EventType::Deleted, decode(&key, &ev.kv.value, ev.kv.mod_revision).0)
                }
            };
            let event = Arc::new(CacheEvent { kind, key, revision: ev.kv.mod_revision, object, prev });
            state.history.push_back(event.clone());
            if state.history.len() > HISTORY {
                if let Some(old) = state.history.pop_front() {
                    state.history_floor = old.revision;
                }
            }
            last = ev.kv.mod_revision;
            // Sent under the write lock, so a subscriber sees history and live events without a gap.
            let _ = self.events.send(event);
        }
        state.revision = last;
        drop(state);
        self.revision.send_replace(last);
    }

    /// The store compacted its history up to `revision`: older revisions can no longer be
    /// listed or watched from, here either (410), as with kube-apiserver on a compacted etcd.
    pub fn compacted(&self, revision: i64) {
        let mut state = self.state.write().expect("cache lock");
        // Never past what the cache has applied: a watch from its current revision stays valid.
        let revision = revision.min(state.revision);
        if revision > state.history_floor {
            state.history_floor = revision;
            while state.history.front().is_some_and(|e| e.revision <= revision) {
                state.history.pop_front();
            }
        }
    }

    pub fn current_revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Waits until the cache has caught up with `revision`; false on timeout.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await;
        matches!(reached, Ok(Ok(_)))
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        self.state.read().expect("cache lock").objects.get(key).cloned()
    }

    /// Objects under `prefix` after `start_after`, at the current revision or, when `at` is
    /// given, exactly at that revision. Returns the entries and the revision they reflect.
    pub fn list(&self, prefix: &str, at: Option<i64>) -> Result<(Vec<(String, Entry)>, i64), TooOld> {
        let state = self.state.read().expect("cache lock");
        let current: Vec<(String, Entry)> =
            state.objects.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, e)| (k.clone(), e.clone())).collect();
        let Some(at) = at.filter(|a| *a < state.revision) else {
            return Ok((current, state.revision));
        };
        if at < state.history_floor {
            return Err(TooOld { requested: at, oldest: state.history_floor });
        }
        // Undo every event newer than `at`, newest first.
        let mut map: BTreeMap<String, Entry> = current.into_iter().collect();
        for ev in state.history.iter().rev().take_while(|e| e.revision > at) {
            if !ev.key.starts_with(prefix) {
                continue;
            }
            match &ev.prev {
                Some(prev) => {
                    let rv = prev.as_ref().ok().and_then(|o| o["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok())).unwrap_or(0);
                    map.insert(ev.key.clone(), Entry { mod_revision: rv, object: prev.clone(), stale: false });
                }
                None => {
                    map.remove(&ev.key);
                }
            }
        }
        Ok((map.into_iter().collect(), at))
    }

    /// Events after `after`, then a live feed. Fails when `after` is older than the window.
    pub fn subscribe(&self, after: i64) -> Result<(Vec<Arc<CacheEvent>>, broadcast::Receiver<Arc<CacheEvent>>), TooOld> {
        let state = self.state.read().expect("cache lock");
        if after < state.history_floor {
            return Err(TooOld { requested: after, oldest: state.history_floor });
        }
        let past = state.history.iter().filter(|e| e.revision > after).cloned().collect();
        Ok((past, self.events.subscribe()))
    }
}
