//! In-process control loops for identity, as kube-apiserver and kube-controller-manager run
//! them: the bootstrap RBAC policy, a `default` ServiceAccount in every namespace, the legacy
//! ServiceAccount token Secrets, and ClusterRole aggregation. Each pass is idempotent; the loop
//! runs one after any change in the cache (at most every 100 ms) and every 2 s.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use api::kinds::{self, Resource};
use api::rbac_kinds::{CLUSTERROLEBINDINGS, CLUSTERROLES};
use api::selector::LabelSelector;
use api::{object, ApiResult};
use auth::tokens::{ObjectRef, TokenSigner};

use crate::rest::{ListOptions, Registry, WriteOptions};

pub struct Identity {
    pub registry: Arc<Registry>,
    pub signer: Arc<TokenSigner>,
    pub ca_pem: String,
}

fn manager(name: &str) -> WriteOptions {
    WriteOptions { field_manager: name.into(), ..Default::default() }
}

async fn create_if_missing(reg: &Registry, res: &Resource, ns: &str, obj: Value, who: &str) -> ApiResult<()> {
    match reg.create(res, ns, obj, &manager(who)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

impl Identity {
    /// Creates the bootstrap ClusterRoles and ClusterRoleBindings that are missing, and
    /// reconciles those that exist as kube-apiserver does for objects annotated
    /// `rbac.authorization.kubernetes.io/autoupdate: "true"`: missing labels, rules, aggregation
    /// rules and subjects are put back; nothing an administrator added is removed.
    pub async fn bootstrap_policy(&self) -> ApiResult<()> {
        for role in auth::bootstrap::cluster_roles() {
            self.reconcile_bootstrap(&CLUSTERROLES, role, &["rules", "aggregationRule"]).await?;
        }
        for binding in auth::bootstrap::cluster_role_bindings() {
            self.reconcile_bootstrap(&CLUSTERROLEBINDINGS, binding, &["subjects"]).await?;
        }
        Ok(())
    }

    async fn reconcile_bootstrap(&self, res: &'static Resource, want: Value, fields: &[&str]) -> ApiResult<()> {
        let reg = &self.registry;
        let name = object::name(&want).to_string();
        let current = match reg.get(res, "", &name).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return create_if_missing(reg, res, "", want, "lockbox-bootstrap").await,
            Err(e) => return Err(e),
        };
        if current["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "false" {
            return Ok(());
        }
        let mut next = (*current).clone();
        for (k, v) in want["metadata"]["labels"].as_object().into_iter().flatten() {
            if next["metadata"]["labels"][k] != *v {
                if !next["metadata"]["labels"].is_object() {
                    next["metadata"]["labels"] = json!({});
                }
                next["metadata"]["labels"][k] = v.clone();
            }
        }
        for field in fields {
            match &want[*field] {
                // Lists (rules, subjects): every wanted entry must be there.
                Value::Array(items) if !(*field == "rules" && want["aggregationRule"].is_object()) => {
                    let mut have = next[*field].as_array().cloned().unwrap_or_default();
                    for item in items {
                        if !have.contains(item) {
                            have.push(item.clone());
                        }
                    }
                    next[*field] = json!(have);
                }
                Value::Object(_) if next[*field] != want[*field] => next[*field] = want[*field].clone(),
                _ => {}
            }
        }
        if next == *current {
            return Ok(());
        }
        match reg.update_from(res, "", &current, next, &manager("lockbox-bootstrap")).await {
            Ok(_) => tracing::info!(name = %name, kind = res.kind, "reconciled a bootstrap RBAC object"),
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    pub async fn run(self: Arc<Self>) {
        let mut rx = match self.registry.cache.subscribe(self.registry.cache.current_revision()) {
            Ok((_, rx)) => rx,
            Err(_) => return,
        };
        // Every pass runs at start and every 2 s; in between, only the passes that a changed
        // key concerns, so a stream of ordinary Secret and ConfigMap writes costs nothing here.
        let mut due = Due::all();
        loop {
            let report = |what: &str, r: ApiResult<()>| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "{what} pass failed");
                }
            };
            if due.service_accounts {
                report("service accounts", self.default_service_accounts().await);
            }
            if due.token_secrets {
                report("token secrets", self.token_secrets().await);
            }
            if due.aggregation {
                report("aggregation", self.aggregate().await);
            }
            due = Due::default();
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => due.note(&ev),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => due = Due::all(),
                },
                _ = tokio::time::sleep(Duration::from_secs(2)) => due = Due::all(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            loop {
                match rx.try_recv() {
                    Ok(ev) => due.note(&ev),
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => due = Due::all(),
                    Err(_) => break,
                }
            }
        }
    }

    async fn default_service_accounts(&self) -> ApiResult<()> {
        let reg = &self.registry;
        let namespaces = reg.list(&kinds::NAMESPACES, "", &ListOptions::default()).await?;
        for ns in namespaces.items.iter().filter(|n| !object::is_deleting(n)) {
            let name = object::name(ns);
            if reg.cache.get(&kinds::CONFIGMAPS.key(name, "kube-root-ca.crt")).is_none() {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": name, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": self.ca_pem}});
                match create_if_missing(reg, &kinds::CONFIGMAPS, name, cm, "lockbox-root-ca-cert-publisher").await {
                    Err(e) if e.is_forbidden() => {}
                    other => other?,
                }
            }
            if reg.cache.get(&kinds::SERVICEACCOUNTS.key(name, "default")).is_none() {
                let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}});
                match create_if_missing(reg, &kinds::SERVICEACCOUNTS, name, sa, "lockbox-serviceaccount-controller").await {
                    Err(e) if e.is_forbidden() => {} // the namespace started terminating meanwhile
                    other => other?,
                }
            }
        }
        Ok(())
    }

    /// Fills legacy `kubernetes.io/service-account-token` Secrets with a token, the CA and the
    /// namespace (each key that is missing), and deletes those whose ServiceAccount is gone or
    /// was re-created, as the token controller does.
    async fn token_secrets(&self) -> ApiResult<()> {
        let reg = &self.registry;
        let opts = ListOptions {
            field_selector: api::selector::FieldSelector::parse("type=kubernetes.io/service-account-token")
                .map_err(|e| api::ApiError::bad_request(e.to_string()))?,
            ..Default::default()
        };
        let secrets = reg.list(&kinds::SECRETS, "", &opts).await?;
        let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
        for s in secrets.items {
            if object::is_deleting(&s) {
                continue;
            }
            let ns = object::namespace(&s).to_string();
            let annotations = &s["metadata"]["annotations"];
            let sa_name = annotations["kubernetes.io/service-account.name"].as_str().unwrap_or_default().to_string();
            let wanted_uid = annotations["kubernetes.io/service-account.uid"].as_str().unwrap_or_default();
            let sa = match reg.get(&kinds::SERVICEACCOUNTS, &ns, &sa_name).await {
                Ok(sa) if wanted_uid.is_empty() || wanted_uid == object::uid(&sa) => sa,
                Ok(_) | Err(api::ApiError { reason: api::Reason::NotFound, .. }) => {
                    match reg.delete(&kinds::SECRETS, &ns, object::name(&s), &Default::default()).await {
                        Ok(_) => tracing::info!(namespace = %ns, secret = object::name(&s), "deleted a token secret whose service account is gone"),
                        Err(e) if e.is_not_found() || e.is_conflict() => {}
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let missing = |k: &str| s["data"][k].as_str().unwrap_or_default().is_empty();
            if !missing("token") && !missing("ca.crt") && !missing("namespace") {
                continue;
            }
            let sa_ref = ObjectRef { name: sa_name.clone(), uid: object::uid(&sa).into() };
            let mut filled = (*s).clone();
            if missing("token") {
                let token = self.signer.issue_legacy(&ns, &sa_ref, object::name(&s)).map_err(api::ApiError::internal)?;
                filled["data"]["token"] = json!(b64(&token));
            }
            if missing("ca.crt") {
                filled["data"]["ca.crt"] = json!(b64(&self.ca_pem));
            }
            if missing("namespace") {
                filled["data"]["namespace"] = json!(b64(&ns));
            }
            filled["metadata"]["annotations"]["kubernetes.io/service-account.uid"] = json!(sa_ref.uid);
            match reg.update_from(&kinds::SECRETS, &ns, &s, filled, &manager("lockbox-token-controller")).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() || e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// ClusterRoles with an aggregationRule get the rules of every ClusterRole its selectors
    /// match, in name order.
    async fn aggregate(&self) -> ApiResult<()> {
        let reg = &self.registry;
        let roles = reg.list(&CLUSTERROLES, "", &ListOptions::default()).await?;
        for role in roles.items.iter().filter(|r| r["aggregationRule"].is_object()) {
            let selectors: Vec<LabelSelector> = role["aggregationRule"]["clusterRoleSelectors"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| LabelSelector::from_object(s).ok()).collect())
                .unwrap_or_default();
            let mut rules: Vec<Value> = Vec::new();
            for other in roles.items.iter().filter(|o| object::name(o) != object::name(role)) {
                if selectors.iter().any(|s| !s.is_empty() && s.matches(object::labels(other))) {
                    for r in other["rules"].as_array().cloned().unwrap_or_default() {
                        if !rules.contains(&r) {
                            rules.push(r);
                        }
                    }
                }
            }
            if role["rules"].as_array().cloned().unwrap_or_default() != rules {
                let mut updated = (**role).clone();
                updated["rules"] = json!(rules);
                match reg.update_from(&CLUSTERROLES, "", role, updated, &manager("lockbox-clusterrole-aggregation-controller")).await {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// Which identity passes a batch of changes calls for.
#[derive(Default)]
struct Due {
    service_accounts: bool,
    token_secrets: bool,
    aggregation: bool,
}

impl Due {
    fn all() -> Due {
        Due { service_accounts: true, token_secrets: true, aggregation: true }
    }

    fn note(&mut self, ev: &crate::cache::CacheEvent) {
        let k = ev.key.as_str();
        if k.starts_with("/registry/namespaces/") || k.starts_with("/registry/serviceaccounts/") || k.ends_with("/kube-root-ca.crt") {
            self.service_accounts = true;
        }
        let token_secret = |d: &crate::cache::Decoded| d.as_ref().is_ok_and(|o| o["type"] == "kubernetes.io/service-account-token");
        if k.starts_with("/registry/serviceaccounts/")
            || (k.starts_with("/registry/secrets/") && (token_secret(&ev.object) || ev.prev.as_ref().is_some_and(token_secret)))
        {
            self.token_secrets = true;
        }
        if k.starts_with("/registry/clusterroles/") {
            self.aggregation = true;
        }
    }
}
