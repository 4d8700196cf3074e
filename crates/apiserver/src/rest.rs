//! Generic REST storage: the verbs, for any kind, over the store and the watch cache.
//!
//! Writes go to the store with a compare-and-swap on the key's mod revision, so a stale
//! `resourceVersion` is a 409 and never a lost write. Reads wait until the watch cache has
//! caught up with the store, so a client always reads its own writes.

use std::sync::Arc;
use std::time::Duration;

use api::kinds::{self, Resource};
use api::object;
use api::selector::{FieldSelector, LabelSelector};
use api::validation::{self, FieldError};
use api::{ApiError, ApiResult};
use base64::Engine;
use crypt::Transformer;
use serde_json::{json, Value};
use store::{Compare, Op, Store, Txn, TxnResult};

use crate::cache::{Decoded, WatchCache};

/// How long a read waits for the cache to reach a revision before giving up.
const CACHE_WAIT: Duration = Duration::from_secs(3);

/// How long a write with no precondition keeps retrying conflicts (kube-apiserver's request
/// timeout; its GuaranteedUpdate retries until then).
const CONFLICT_RETRY_DEADLINE: Duration = Duration::from_secs(60);

/// Retries of a read-modify-write that lost a compare-and-swap to a concurrent writer. Only an
/// explicit precondition makes a conflict final (the caller decides); otherwise the writer
/// re-reads and tries again until the request's deadline, with a short random pause so that
/// contending writers spread out instead of colliding again in step.
struct ConflictRetry {
    deadline: std::time::Instant,
    attempts: u32,
}

impl ConflictRetry {
    fn new() -> Self {
        ConflictRetry { deadline: std::time::Instant::now() + CONFLICT_RETRY_DEADLINE, attempts: 0 }
    }

    /// Whether to try again after `e`; waits before saying yes.
    async fn again(&mut self, e: &ApiError) -> bool {
        if !(e.is_write_conflict() || e.is_already_exists()) || std::time::Instant::now() >= self.deadline {
            return false;
        }
        self.attempts += 1;
        let ceiling = u64::from(self.attempts.min(20));
        tokio::time::sleep(Duration::from_micros(rand::random_range(0..=ceiling * 1000))).await;
        true
    }
}

/// How one attempt of a read-modify-write ended.
enum Attempt<T> {
    Done(T),
    /// Lost to a concurrent writer (a stale revision, or a create another create beat): read
    /// again and retry, until the deadline.
    Lost(ApiError),
}

impl ConflictRetry {
    /// The end of one attempt of a read-modify-write (kube-apiserver's GuaranteedUpdate):
    /// its result when done; `None` to try again after losing to another writer (having
    /// waited); the loss as the error once the deadline has passed.
    async fn settle<T>(&mut self, attempt: ApiResult<Attempt<T>>) -> Option<ApiResult<T>> {
        match attempt {
            Ok(Attempt::Done(t)) => Some(Ok(t)),
            Ok(Attempt::Lost(e)) if self.again(&e).await => None,
            Ok(Attempt::Lost(e)) | Err(e) => Some(Err(e)),
        }
    }
}

/// Which strategy a read-modify-write goes through.
#[derive(Clone, Copy)]
enum Through {
    Object,
    Status,
}

/// An error that a fresh read may cure is a lost race, unless `pinned` (the client named the
/// revision it expects).
fn lost_unless_pinned<T>(result: ApiResult<T>, pinned: bool) -> ApiResult<Attempt<T>> {
    match result {
        Ok(t) => Ok(Attempt::Done(t)),
        Err(e) if !pinned && e.is_write_conflict() => Ok(Attempt::Lost(e)),
        Err(e) => Err(e),
    }
}

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub cache: Arc<WatchCache>,
    pub transformer: Arc<dyn Transformer>,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    /// managedFields were already computed (server-side apply); do not record an Update.
    pub ownership_recorded: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

pub struct ListResult {
    pub items: Vec<Arc<Value>>,
    pub resource_version: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    /// `gracePeriodSeconds`; pods on a node terminate gracefully unless it is 0.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`: Orphan and Foreground hand the dependents to the garbage collector
    /// through the `orphan` and `foregroundDeletion` finalizers.
    pub propagation: Option<String>,
    /// `orphanDependents: false` was given: the one case where kube-apiserver answers a
    /// deletion that is still pending with 202 rather than 200.
    pub orphan_dependents_false: bool,
}

pub enum DeleteOutcome {
    /// Gone from storage: the last state.
    Deleted(Arc<Value>),
    /// Marked for deletion; finalizers still pending.
    Pending(Arc<Value>),
}

/// Keys under which a namespace's objects live, for every namespaced kind.
pub fn namespace_prefixes(ns: &str) -> Vec<String> {
    kinds::stored().filter(|r| r.namespaced).map(|r| format!("{}{}/", r.key_prefix(), ns)).collect()
}

impl Registry {
    /// The decode function the watch cache uses: transformer, then JSON, then resourceVersion.
    pub fn decoder(transformer: Arc<dyn Transformer>) -> crate::cache::DecodeFn {
        Arc::new(move |key: &str, bytes: &[u8], rev: i64| -> (Decoded, bool) {
            let (plain, info) = match transformer.transform_from_storage(bytes, key) {
                Ok(r) => r,
                // Names the object and the failure; never the data.
                Err(e) => return (Err(format!("unable to transform key \"{key}\": {e}")), false),
            };
            // kube-apiserver stores protobuf (`k8s\0` + runtime.Unknown); lockbox stores JSON.
            // Both read, so data written by either moves to the other.
            let parsed = if plain.starts_with(api::protobuf::MAGIC) {
                api::protobuf::decode(&plain)
            } else {
                serde_json::from_slice::<Value>(&plain).map_err(|e| e.to_string())
            };
            let obj = parsed.map(|mut obj| {
                object::set_meta(&mut obj, "resourceVersion", rev.to_string());
                Arc::new(obj)
            });
            (obj.map_err(|e| format!("unable to decode key \"{key}\": {e}")), info.stale)
        })
    }

    fn encode(&self, key: &str, obj: &Value) -> ApiResult<bytes::Bytes> {
        let mut stored = obj.clone();
        object::meta_mut(&mut stored).remove("resourceVersion");
        let plain = serde_json::to_vec(&stored).map_err(|e| ApiError::internal(e.to_string()))?;
        self.transformer.transform_to_storage(&plain, key).map_err(|e| ApiError::internal(format!("failed to encrypt data for {key}: {e}")))
    }

    /// Waits until the cache reflects every write acknowledged so far.
    pub async fn sync(&self) -> ApiResult<()> {
        let rev = self.store.revision();
        if self.cache.wait_for(rev, CACHE_WAIT).await {
            Ok(())
        } else {
            Err(ApiError::too_large_resource_version(rev, self.cache.current_revision()))
        }
    }

    fn unwrap_decoded(res: &Resource, name: &str, d: Decoded) -> ApiResult<Arc<Value>> {
        d.map_err(|e| {
            let _ = (res, name);
            ApiError::internal(e)
        })
    }

    /// Is the stored value written with a key other than the current write key? Judged from the
    /// store with the configuration in force now (the cache's flag predates config reloads).
    pub async fn is_stale(&self, res: &Resource, ns: &str, name: &str) -> bool {
        let key = res.key(ns, name);
        match self.store.get(&key).await {
            Ok(Some(kv)) => self.transformer.transform_from_storage(&kv.value, &key).map(|(_, info)| info.stale).unwrap_or(false),
            _ => false,
        }
    }

    pub async fn get(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        self.sync().await?;
        self.get_cached(res, ns, name)
    }

    fn get_cached(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        match self.cache.get(&res.key(ns, name)) {
            Some(e) => Self::unwrap_decoded(res, name, e.object),
            None => Err(ApiError::not_found(res.group, res.plural, name)),
        }
    }

    pub async fn list(&self, res: &Resource, ns: &str, opts: &ListOptions) -> ApiResult<ListResult> {
        let prefix = if res.namespaced && !ns.is_empty() { format!("{}{}/", res.key_prefix(), ns) } else { res.key_prefix() };
        let mut start_after: Option<String> = None;
        let mut at: Option<i64> = None;
        if let Some(token) = &opts.continue_token {
            let (rv, start) = decode_continue(token, &prefix)?;
            at = Some(rv);
            start_after = Some(start);
        } else {
            match (opts.resource_version.as_deref(), opts.resource_version_match.as_deref()) {
                (None | Some(""), Some(m)) if !m.is_empty() => {
                    return Err(ApiError::invalid(
                        "meta.k8s.io",
                        "ListOptions",
                        "",
                        &[FieldError::forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided")],
                    ));
                }
                (None | Some(""), _) => self.sync().await?,
                (Some("0"), _) => {}
                (Some(rv), m) => {
                    let rv: i64 = rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
                    match m {
                        Some("Exact") => {
                            if !self.cache.wait_for(rv, CACHE_WAIT).await {
                                return Err(ApiError::too_large_resource_version(rv, self.cache.current_revision()));
                            }
                            at = Some(rv);
                        }
                        None | Some("") | Some("NotOlderThan") => {
                            if !self.cache.wait_for(rv, CACHE_WAIT).await {
                                return Err(ApiError::too_large_resource_version(rv, self.cache.current_revision()));
                            }
                        }
                        Some(other) => {
                            return Err(ApiError::invalid(
                                "meta.k8s.io",
                                "ListOptions",
                                "",
                                &[FieldError::not_supported("resourceVersionMatch", other, &["Exact", "NotOlderThan", ""])],
                            ));
                        }
                    }
                }
            }
        }
        let (entries, revision) = self.cache.list(&prefix, at).map_err(|_| {
            if opts.continue_token.is_some() {
                ApiError::resource_expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            } else {
                // The etcd3 store's words for a list at a compacted revision.
                ApiError::resource_expired("The resourceVersion for the provided list is too old.")
            }
        })?;
        let mut items = Vec::new();
        let mut last_key = None;
        let mut matched_after_limit = 0usize;
        for (key, entry) in entries {
            if start_after.as_ref().is_some_and(|s| key.as_str() <= s.as_str()) {
                continue;
            }
            let obj = Self::unwrap_decoded(res, &key, entry.object)?;
            if !self.matches(res, &obj, opts) {
                continue;
            }
            if opts.limit > 0 && items.len() >= opts.limit {
                matched_after_limit += 1;
                continue;
            }
            last_key = Some(key);
            items.push(obj);
        }
        let continue_token = (matched_after_limit > 0).then(|| encode_continue(revision, last_key.as_deref().unwrap_or_default(), &prefix));
        Ok(ListResult { items, resource_version: revision, remaining: continue_token.as_ref().map(|_| matched_after_limit), continue_token })
    }

    pub fn matches(&self, res: &Resource, obj: &Value, opts: &ListOptions) -> bool {
        opts.label_selector.matches(object::labels(obj)) && opts.field_selector.matches(|f| res.field_value(obj, f))
    }

    /// Fails unless `ns` exists and is not being deleted.
    async fn check_namespace_open(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<()> {
        // The cache may trail a namespace created a moment ago: look again once it has caught
        // up (kube-apiserver's lifecycle admission also falls back to a live read on a miss).
        let nsobj = match self.get_cached(&kinds::NAMESPACES, "", ns) {
            Err(e) if e.is_not_found() => {
                self.sync().await?;
                self.get_cached(&kinds::NAMESPACES, "", ns)?
            }
            other => other?,
        };
        if object::is_deleting(&nsobj) || nsobj["status"]["phase"] == "Terminating" {
            let mut e = ApiError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                api::status::qualified(res.group, res.plural),
                name,
                ns
            ));
            e.details = Some(api::status::Details {
                name: name.into(),
                group: res.group.into(),
                kind: res.plural.into(),
                causes: vec![api::status::Cause {
                    reason: "NamespaceTerminating".into(),
                    message: format!("namespace {ns} is being terminated"),
                    field: "metadata.namespace".into(),
                }],
                retry_after_seconds: None,
            });
            return Err(e);
        }
        Ok(())
    }

    fn validate(&self, res: &Resource, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
        let mut errs = Vec::new();
        validation::validate_object_meta(obj, res.namespaced, res.name_rule, &mut errs);
        match old {
            None => res.strategy.validate(obj, &mut errs),
            Some(old) => {
                validation::validate_object_meta_update(obj, old, &mut errs);
                res.strategy.validate_update(obj, old, &mut errs);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            let name = object::name(obj);
            let name = if name.is_empty() { obj["metadata"]["generateName"].as_str().unwrap_or_default() } else { name };
            Err(ApiError::invalid(res.group, res.kind, name, &errs))
        }
    }

    /// Creates `obj` (already decoded, type-checked and placed in `ns`).
    pub async fn create(&self, res: &Resource, ns: &str, mut obj: Value, opts: &WriteOptions) -> ApiResult<Value> {
        res.strategy.prepare_create(&mut obj)?;
        {
            let meta = object::meta_mut(&mut obj);
            for f in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "uid", "creationTimestamp", "generation"] {
                meta.remove(f);
            }
        }
        if object::name(&obj).is_empty() {
            if let Some(prefix) = obj["metadata"]["generateName"].as_str().filter(|s| !s.is_empty()) {
                // names.SimpleNameGenerator: the prefix is cut to 58 characters, so that the
                // name with its 5 random ones fits in 63 (a ReplicaSet of a long-named
                // Deployment still gets pods).
                let base: String = prefix.chars().take(58).collect();
                let generated = format!("{base}{}", object::random_suffix());
                object::set_meta(&mut obj, "name", generated);
            }
        }
        self.validate(res, &obj, None)?;
        let name = object::name(&obj).to_string();
        if res.namespaced {
            self.check_namespace_open(res, ns, &name).await.map_err(|e| if e.is_not_found() { ApiError::not_found("", "namespaces", ns) } else { e })?;
        }
        object::set_meta(&mut obj, "uid", uuid::Uuid::new_v4().to_string());
        object::set_meta(&mut obj, "creationTimestamp", object::now_rfc3339());
        if res.strategy.tracks_generation() {
            object::set_meta(&mut obj, "generation", 1);
        }
        if !opts.ownership_recorded {
            object::meta_mut(&mut obj).remove("managedFields");
            api::fieldmanager::record_update(None, &mut obj, &opts.field_manager, "", res);
        }
        object::drop_empty_meta(&mut obj);
        if opts.dry_run {
            return Ok(obj);
        }
        let key = res.key(ns, &name);
        let bytes = self.encode(&key, &obj)?;
        match self.store.txn(Txn { compare: vec![Compare::ModRevision(key.clone(), 0)], success: vec![Op::Put(key, bytes)] }).await.map_err(storage_error)? {
            TxnResult::Committed { revision } => {
                object::set_meta(&mut obj, "resourceVersion", revision.to_string());
                Ok(obj)
            }
            TxnResult::Failed { .. } => Err(ApiError::already_exists(res.group, res.plural, &name)),
        }
    }

    /// Writes `new` over `current`. Returns the stored object, and whether the write deleted it
    /// (the last finalizer of an object being deleted was removed).
    pub async fn update_from(&self, res: &Resource, ns: &str, current: &Value, mut new: Value, opts: &WriteOptions) -> ApiResult<Value> {
        let name = object::name(current).to_string();
        let current_rv = object::resource_version(current).to_string();
        let requested_rv = object::resource_version(&new).to_string();
        if !requested_rv.is_empty() && requested_rv != current_rv {
            return Err(ApiError::stale_update(res.group, res.plural, &name));
        }
        res.strategy.prepare_update(&mut new, current)?;
        {
            let old_meta = &current["metadata"];
            let meta = object::meta_mut(&mut new);
            for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
                // A uid the client sets must match (validation says so); everything else here is
                // the server's and silently keeps its stored value, as in kube-apiserver.
                let client_uid = f == "uid" && meta.get(f).is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()));
                if client_uid {
                    continue;
                }
                match old_meta.get(f) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("selfLink");
            meta.insert("resourceVersion".into(), json!(current_rv));
        }
        if object::is_deleting(current) {
            let old_fins = object::finalizers(current);
            let added: Vec<String> = object::finalizers(&new).into_iter().filter(|f| !old_fins.contains(f)).collect();
            if !added.is_empty() {
                // ValidateObjectMetaUpdate words it with Go's %#v of the new names.
                let list = added.iter().map(|f| api::validation::go_quote(f)).collect::<Vec<_>>().join(", ");
                return Err(ApiError::invalid(
                    res.group,
                    res.kind,
                    &name,
                    &[FieldError::forbidden(
                        "metadata.finalizers",
                        format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{list}}}"),
                    )],
                ));
            }
        }
        if res.strategy.tracks_generation() && spec_changed(current, &new) {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object::set_meta(&mut new, "generation", g);
        }
        self.validate(res, &new, Some(current))?;
        if !opts.ownership_recorded {
            api::fieldmanager::record_update(Some(current), &mut new, &opts.field_manager, "", res);
        }
        object::drop_empty_meta(&mut new);
        // A no-op update writes nothing, unless the stored bytes are stale (not encrypted with
        // the current write key): then it rewrites them, which is how re-encryption works.
        if api::fieldmanager::same_ignoring_timestamps(current, &new) && !self.is_stale(res, ns, &name).await {
            return Ok(current.clone());
        }
        if opts.dry_run {
            return Ok(new);
        }
        let key = res.key(ns, &name);
        let expected: i64 = current_rv.parse().unwrap_or(0);
        let finished = object::is_deleting(&new) && object::finalizers(&new).is_empty();
        let op = if finished { Op::Delete(key.clone()) } else { Op::Put(key.clone(), self.encode(&key, &new)?) };
        match self.store.txn(Txn { compare: vec![Compare::ModRevision(key, expected)], success: vec![op] }).await.map_err(storage_error)? {
            TxnResult::Committed { revision } => {
                object::set_meta(&mut new, "resourceVersion", revision.to_string());
                Ok(new)
            }
            TxnResult::Failed { current } if current.first().is_some_and(Option::is_none) => Err(ApiError::not_found(res.group, res.plural, &name)),
            TxnResult::Failed { .. } => Err(ApiError::stale_update(res.group, res.plural, &name)),
        }
    }

    pub async fn update(&self, res: &Resource, ns: &str, name: &str, new: Value, opts: &WriteOptions) -> ApiResult<Value> {
        let current = self.get(res, ns, name).await?;
        self.update_from(res, ns, &current, new, opts).await
    }

    /// Reads the object, applies `mutate` and writes it back, retrying on conflicts as
    /// kube-apiserver does for patches that carry no resourceVersion precondition.
    pub async fn guaranteed_update<F>(&self, res: &Resource, ns: &str, name: &str, opts: &WriteOptions, mutate: F) -> ApiResult<Value>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        self.read_modify_write(res, ns, name, opts, Through::Object, mutate).await
    }

    /// The one read-modify-write: read, `mutate`, write through the object's strategy or its
    /// status strategy, and on a lost compare-and-swap read again, until the deadline. A
    /// resourceVersion other than the one read is the client's precondition, and its
    /// conflict is final (a patch carries the one read, which is no precondition).
    async fn read_modify_write<F>(&self, res: &Resource, ns: &str, name: &str, opts: &WriteOptions, through: Through, mut mutate: F) -> ApiResult<Value>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        let mut retry = ConflictRetry::new();
        loop {
            let attempt = async {
                let current = self.get(res, ns, name).await?;
                let new = mutate(&current)?;
                let pinned = !object::resource_version(&new).is_empty() && object::resource_version(&new) != object::resource_version(&current);
                let written = match through {
                    Through::Object => self.update_from(res, ns, &current, new, opts).await,
                    Through::Status => self.write_status(res, ns, &current, new, opts).await,
                };
                lost_unless_pinned(written, pinned)
            }
            .await;
            if let Some(result) = retry.settle(attempt).await {
                return result;
            }
        }
    }

    /// Server-side apply: creates the object when missing. Returns (object, created).
    pub async fn apply(&self, res: &Resource, ns: &str, name: &str, applied: &Value, force: bool, opts: &WriteOptions) -> ApiResult<(Value, bool)> {
        let opts = WriteOptions { ownership_recorded: true, ..opts.clone() };
        // Lost to a concurrent writer (a stale update, or a create that another create beat):
        // apply again on what is there now, unless the applied object names a version.
        let pinned = !object::resource_version(applied).is_empty();
        let mut retry = ConflictRetry::new();
        loop {
            let attempt = async {
                let current = match self.get(res, ns, name).await {
                    Ok(c) => Some(c),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e),
                };
                let new = api::fieldmanager::apply(current.as_deref(), applied, &opts.field_manager, "", force, res)?;
                match &current {
                    None => match self.create(res, ns, new, &opts).await {
                        Err(e) if e.is_already_exists() && !pinned => Ok(Attempt::Lost(e)),
                        other => other.map(|o| Attempt::Done((o, true))),
                    },
                    Some(cur) => {
                        let mut new = new;
                        if object::resource_version(applied).is_empty() {
                            object::set_meta(&mut new, "resourceVersion", object::resource_version(cur).to_string());
                        }
                        lost_unless_pinned(self.update_from(res, ns, cur, new, &opts).await.map(|o| (o, false)), pinned)
                    }
                }
            }
            .await;
            if let Some(result) = retry.settle(attempt).await {
                return result;
            }
        }
    }

    /// A write through the kind's status strategy (the `status` subresource): `incoming`
    /// makes the wanted object from the stored one (a PUT's body, or the patched object); only
    /// its status is taken. Type-checked by the caller; validated here (metadata and the
    /// kind's status rules); the resourceVersion, when given, is a precondition; the write is
    /// recorded in managedFields as the manager's through `status`.
    pub async fn update_status<F>(&self, res: &Resource, ns: &str, name: &str, opts: &WriteOptions, incoming: F) -> ApiResult<Value>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        self.read_modify_write(res, ns, name, opts, Through::Status, incoming).await
    }

    /// Server-side apply to the `status` subresource: the applied status is merged with field
    /// ownership of its own (managedFields entries with `subresource: status`); the object
    /// must exist.
    pub async fn apply_status(&self, res: &Resource, ns: &str, name: &str, applied: &Value, force: bool, opts: &WriteOptions) -> ApiResult<Value> {
        let opts = WriteOptions { ownership_recorded: true, ..opts.clone() };
        let pinned = !object::resource_version(applied).is_empty();
        // Only the status is applied: spec and metadata in the body are not this manager's
        // through `status` (kube's reset-fields strategy for status).
        let mut status_only = json!({"apiVersion": applied["apiVersion"], "kind": applied["kind"], "metadata": {"name": name}});
        if let Some(st) = applied.get("status") {
            status_only["status"] = st.clone();
        }
        let mut retry = ConflictRetry::new();
        loop {
            let attempt = async {
                let current = self.get(res, ns, name).await?;
                let mut new = api::fieldmanager::apply(Some(&current), &status_only, &opts.field_manager, "status", force, res)?;
                let rv = if pinned { object::resource_version(applied) } else { object::resource_version(&current) };
                object::set_meta(&mut new, "resourceVersion", rv.to_string());
                lost_unless_pinned(self.write_status(res, ns, &current, new, &opts).await, pinned)
            }
            .await;
            if let Some(result) = retry.settle(attempt).await {
                return result;
            }
        }
    }

    /// One status write of `new` over `current`: the status strategy's preparation and
    /// validation, ownership, then the compare-and-swap.
    async fn write_status(&self, res: &Resource, ns: &str, current: &Value, mut new: Value, opts: &WriteOptions) -> ApiResult<Value> {
        let name = object::name(current).to_string();
        let requested_rv = object::resource_version(&new).to_string();
        if !requested_rv.is_empty() && requested_rv != object::resource_version(current) {
            return Err(ApiError::stale_update(res.group, res.plural, &name));
        }
        let owned = new["metadata"]["managedFields"].clone();
        res.strategy.prepare_status_update(&mut new, current);
        if opts.ownership_recorded {
            object::set_meta(&mut new, "managedFields", owned);
        } else {
            api::fieldmanager::record_update(Some(current), &mut new, &opts.field_manager, "status", res);
        }
        let mut errs = Vec::new();
        validation::validate_object_meta_update(&new, current, &mut errs);
        res.strategy.validate_status_update(&new, current, &mut errs);
        if !errs.is_empty() {
            return Err(ApiError::invalid(res.group, res.kind, &name, &errs));
        }
        object::drop_empty_meta(&mut new);
        if api::fieldmanager::same_ignoring_timestamps(current, &new) || opts.dry_run {
            return Ok(if opts.dry_run { new } else { current.clone() });
        }
        let revision = self.write_raw(res, ns, &name, current, Some(&new)).await?;
        object::set_meta(&mut new, "resourceVersion", revision.to_string());
        Ok(new)
    }

    pub async fn delete(&self, res: &Resource, ns: &str, name: &str, opts: &DeleteOptions) -> ApiResult<DeleteOutcome> {
        if res.strategy.undeletable(name) {
            let mut e = ApiError::forbidden(format!("{} \"{name}\" is forbidden: this {} may not be deleted", res.plural, res.singular));
            e.details = Some(api::status::Details { name: name.into(), kind: res.plural.into(), ..Default::default() });
            return Err(e);
        }
        let mut retry = ConflictRetry::new();
        loop {
            let attempt = async {
                let current = self.get(res, ns, name).await?;
                check_delete_preconditions(res, name, &current, opts)?;
                let mut extra_finalizers: Vec<&str> = Vec::new();
                match opts.propagation.as_deref() {
                    Some("Orphan") => extra_finalizers.push("orphan"),
                    Some("Foreground") => extra_finalizers.push("foregroundDeletion"),
                    _ => {}
                }
                let grace = res.strategy.deletion_grace(&current, opts.grace_period);
                let graceful =
                    !object::finalizers(&current).is_empty() || !extra_finalizers.is_empty() || grace.is_some() || res.strategy.deletion_waits(&current);
                if !graceful
                    || (object::is_deleting(&current)
                        && res.strategy.graceful_deletion()
                        && opts.grace_period == Some(0)
                        && object::finalizers(&current).is_empty())
                {
                    // Nothing to wait for; or an object already terminating, deleted at once when
                    // asked with grace 0.
                    if !opts.dry_run {
                        if let Err(e) = self.write_raw(res, ns, name, &current, None).await {
                            return lost_unless_pinned(Err(e), false);
                        }
                    }
                    return Ok(Attempt::Done(DeleteOutcome::Deleted(current)));
                }
                if object::is_deleting(&current) {
                    return Ok(Attempt::Done(DeleteOutcome::Pending(current)));
                }
                let mut marked = (*current).clone();
                object::set_meta(&mut marked, "deletionTimestamp", object::now_rfc3339());
                object::set_meta(&mut marked, "deletionGracePeriodSeconds", grace.unwrap_or(0));
                let mut fins = object::finalizers(&marked);
                for f in &extra_finalizers {
                    if !fins.iter().any(|x| x == f) {
                        fins.push(f.to_string());
                    }
                }
                if !fins.is_empty() {
                    object::set_meta(&mut marked, "finalizers", fins);
                }
                res.strategy.mark_deleting(&mut marked);
                if !opts.dry_run {
                    match self.write_raw(res, ns, name, &current, Some(&marked)).await {
                        Ok(rev) => object::set_meta(&mut marked, "resourceVersion", rev.to_string()),
                        Err(e) => return lost_unless_pinned(Err(e), false),
                    }
                }
                Ok(Attempt::Done(DeleteOutcome::Pending(Arc::new(marked))))
            }
            .await;
            if let Some(result) = retry.settle(attempt).await {
                return result;
            }
        }
    }

    /// Writes (or with `None`, deletes) an object the server itself changes, bypassing
    /// strategies; compare-and-swap on the current revision.
    pub async fn write_raw(&self, res: &Resource, ns: &str, name: &str, current: &Value, new: Option<&Value>) -> ApiResult<i64> {
        let key = res.key(ns, name);
        let expected: i64 = object::resource_version(current).parse().unwrap_or(0);
        let op = match new {
            Some(obj) => Op::Put(key.clone(), self.encode(&key, obj)?),
            None => Op::Delete(key.clone()),
        };
        match self.store.txn(Txn { compare: vec![Compare::ModRevision(key, expected)], success: vec![op] }).await.map_err(storage_error)? {
            TxnResult::Committed { revision } => Ok(revision),
            TxnResult::Failed { .. } => Err(ApiError::stale_update(res.group, res.plural, name)),
        }
    }
}

/// DeleteOptions.preconditions: a uid or resourceVersion that must match; a mismatch is a
/// final 409.
fn check_delete_preconditions(res: &Resource, name: &str, current: &Value, opts: &DeleteOptions) -> ApiResult<()> {
    if let Some(uid) = opts.precondition_uid.as_deref().filter(|u| *u != object::uid(current)) {
        let why = format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", object::uid(current));
        return Err(ApiError::precondition_failed(res.group, res.plural, name, &why));
    }
    if let Some(rv) = opts.precondition_rv.as_deref().filter(|rv| *rv != object::resource_version(current)) {
        let why = format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", object::resource_version(current));
        return Err(ApiError::precondition_failed(res.group, res.plural, name, &why));
    }
    Ok(())
}

fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

pub fn storage_error(e: store::Error) -> ApiError {
    tracing::error!(error = %e, "storage error");
    ApiError::internal(e.to_string())
}

fn encode_continue(rv: i64, last_key: &str, prefix: &str) -> String {
    let start = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::bad_request(format!("invalid continue token: {token}"));
    let raw =
        base64::engine::general_purpose::URL_SAFE.decode(token).or_else(|_| base64::engine::general_purpose::STANDARD.decode(token)).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, format!("{prefix}{start}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use prost::Message;

    /// A Secret as kube-apiserver stores it in etcd: protobuf, with its metadata and
    /// managedFields, reads like one lockbox wrote.
    #[test]
    fn reads_what_kube_apiserver_stores() {
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("moved".into()),
                namespace: Some("prod".into()),
                uid: Some("6f1e0c1a-0000-4000-8000-000000000001".into()),
                creation_timestamp: Some(meta::Time { seconds: Some(1_700_000_000), nanos: Some(0) }),
                managed_fields: vec![meta::ManagedFieldsEntry {
                    manager: Some("kubectl-create".into()),
                    operation: Some("Update".into()),
                    api_version: Some("v1".into()),
                    fields_type: Some("FieldsV1".into()),
                    fields_v1: Some(meta::FieldsV1 { raw: Some(br#"{"f:data":{".":{},"f:pw":{}}}"#.to_vec()) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            data: [("pw".to_string(), b"s3cret".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta { api_version: Some("v1".into()), kind: Some("Secret".into()) }),
            raw: Some(secret.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let stored = [api::protobuf::MAGIC, &unknown.encode_to_vec()].concat();
        let decode = Registry::decoder(Arc::new(crypt::Identity));
        let (obj, _) = decode("/registry/secrets/prod/moved", &stored, 42);
        let obj = obj.unwrap();
        assert_eq!(obj["data"]["pw"], "czNjcmV0");
        assert_eq!(obj["metadata"]["resourceVersion"], "42");
        assert_eq!(obj["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(obj["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]["f:pw"], serde_json::json!({}));
    }
}
