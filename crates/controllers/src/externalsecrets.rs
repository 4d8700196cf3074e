//! ExternalSecret sync, as the External Secrets Operator does it: read the referenced
//! SecretStore or ClusterSecretStore, fetch the values from its provider, and write the target
//! Secret (`creationPolicy` Owner, Orphan, Merge or None; `deletionPolicy` Retain, Delete or
//! Merge; `target.template` rendered by the `template` module), then report a `Ready` condition
//! (`SecretSynced` / `SecretSyncedError`) and an event. Provider errors back off exponentially
//! (capped at 5 minutes) and keep the last good Secret; editing the ExternalSecret or setting the
//! `force-sync` annotation syncs at once.
//!
//! Providers here: `fake` (static data in the store), `vault` (HashiCorp Vault or OpenBao, KV v1
//! and v2, token auth) and `aws` (Secrets Manager, SigV4 with static credentials, version stage
//! or id, JSON properties, `dataFrom.find` by name and tags; `AWS_ENDPOINT_URL` overrides the
//! endpoint as in the AWS SDKs). Provider credentials are read through the API, with this
//! controller's own identity. Values never appear in conditions, events or logs.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use kube::Client;
use serde_json::{json, Value};

const FORCE_SYNC: &str = "force-sync";
/// How every provider reports a remote secret that does not exist (ESO's wording).
const NOT_FOUND: &str = "Secret does not exist: ";
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub(crate) fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

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
    Some(Duration::from_secs_f64(total))
}

#[derive(Default)]
struct State {
    next: Option<Instant>,
    backoff: Duration,
    seen: (i64, String),
}

#[derive(Default)]
pub struct Syncer {
    http: Option<reqwest::Client>,
    state: HashMap<String, State>,
}

pub(crate) async fn get(client: &Client, path: &str) -> Result<Option<Value>, String> {
    let req = http::Request::get(path).body(vec![]).map_err(|e| e.to_string())?;
    match client.request::<Value>(req).await {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(crate::short(&e)),
    }
}

pub(crate) async fn send(client: &Client, method: &str, path: &str, body: &Value, ct: &str) -> Result<Value, String> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", ct)
        .body(serde_json::to_vec(body).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    client.request::<Value>(req).await.map_err(|e| crate::short(&e))
}

impl Syncer {
    /// The earliest time a pass is needed again.
    pub fn next_due(&self) -> Option<Instant> {
        self.state.values().filter_map(|s| s.next).min()
    }

    pub async fn pass(&mut self, client: &Client) -> Result<(), String> {
        let list = get(client, "/apis/external-secrets.io/v1/externalsecrets").await?.unwrap_or_default();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let mut keep = std::collections::BTreeSet::new();
        for es in items {
            let ns = s(&es["metadata"]["namespace"]);
            let name = s(&es["metadata"]["name"]);
            let key = format!("{ns}/{name}");
            keep.insert(key.clone());
            let generation = es["metadata"]["generation"].as_i64().unwrap_or(0);
            let force = s(&es["metadata"]["annotations"][FORCE_SYNC]);
            let st = self.state.entry(key.clone()).or_default();
            let changed = st.seen != (generation, force.clone());
            if !changed && st.next.is_none_or(|t| Instant::now() < t) {
                continue;
            }
            st.seen = (generation, force);
            let refresh = parse_duration(&s(&es["spec"]["refreshInterval"])).unwrap_or(Duration::from_secs(3600));
            let http = self.http.get_or_insert_with(|| reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default()).clone();
            let result = sync(client, &http, &es).await;
            let st = self.state.get_mut(&key).expect("present");
            match result {
                Ok(()) => {
                    st.backoff = Duration::ZERO;
                    st.next = (!refresh.is_zero()).then(|| Instant::now() + refresh);
                    set_ready(client, &es, true, "SecretSynced", "secret synced").await;
                }
                Err(e) => {
                    st.backoff = if st.backoff.is_zero() { Duration::from_secs(1) } else { (st.backoff * 2).min(MAX_BACKOFF) };
                    st.next = Some(Instant::now() + st.backoff);
                    tracing::info!(externalsecret = %key, error = %e, "sync failed");
                    set_ready(client, &es, false, "SecretSyncedError", &e).await;
                }
            }
        }
        self.state.retain(|k, _| keep.contains(k));
        Ok(())
    }
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
    let _ = send(
        client,
        "PATCH",
        &format!("/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets/{name}/status"),
        &json!({"status": st}),
        "application/merge-patch+json",
    )
    .await;
    if prev["status"] != status || prev["reason"] != reason || !ok {
        let ev = json!({
            "metadata": {"generateName": format!("{name}."), "namespace": ns},
            "involvedObject": {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": name, "namespace": ns, "uid": es["metadata"]["uid"]},
            "reason": if ok { "Updated" } else { "UpdateFailed" }, "message": message, "type": if ok { "Normal" } else { "Warning" },
            "source": {"component": "external-secrets"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let _ = send(client, "POST", &format!("/api/v1/namespaces/{ns}/events"), &ev, "application/json").await;
    }
}

/// Fetches from the provider and writes the target Secret.
async fn sync(client: &Client, http: &reqwest::Client, es: &Value) -> Result<(), String> {
    let ns = s(&es["metadata"]["namespace"]);
    let name = s(&es["metadata"]["name"]);
    let spec = &es["spec"];
    let store_ref = &spec["secretStoreRef"];
    let store_path = if store_ref["kind"] == "ClusterSecretStore" {
        format!("/apis/external-secrets.io/v1/clustersecretstores/{}", s(&store_ref["name"]))
    } else {
        format!("/apis/external-secrets.io/v1/namespaces/{ns}/secretstores/{}", s(&store_ref["name"]))
    };
    let store = get(client, &store_path).await?.ok_or_else(|| format!("could not get SecretStore {:?}", s(&store_ref["name"])))?;
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
    let path = format!("/api/v1/namespaces/{ns}/secrets/{secret_name}");
    match get(client, &path).await? {
        Some(sec) if sec["metadata"]["labels"]["reconcile.external-secrets.io/managed"] == "true" => {
            send(client, "DELETE", &path, &json!({}), "application/json").await.map(|_| ())
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
    let path = format!("/api/v1/namespaces/{ns}/secrets/{secret_name}");
    let existing = get(client, &path).await?;
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
            send(client, "POST", &format!("/api/v1/namespaces/{ns}/secrets"), &secret, "application/json").await.map(|_| ())
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
            send(client, "PATCH", &path, &full, "application/merge-patch+json").await.map(|_| ())
        }
    }
}

enum Provider {
    Fake(BTreeMap<String, String>),
    Aws { http: reqwest::Client, endpoint: String, host: String, region: String, creds: crate::sigv4::Credentials },
    Vault { http: reqwest::Client, server: String, path: String, v2: bool, token: String, namespace: Option<String> },
}

impl Provider {
    async fn from_store(client: &Client, http: &reqwest::Client, store: &Value, es_ns: &str) -> Result<Provider, String> {
        let p = &store["spec"]["provider"];
        if let Some(f) = p.get("fake").filter(|f| f.is_object()) {
            let data = f["data"].as_array().cloned().unwrap_or_default().iter().map(|d| (s(&d["key"]), s(&d["value"]))).collect();
            return Ok(Provider::Fake(data));
        }
        if let Some(v) = p.get("vault").filter(|v| v.is_object()) {
            let tref = &v["auth"]["tokenSecretRef"];
            if !tref.is_object() {
                return Err("vault: only token auth is supported (auth.tokenSecretRef)".into());
            }
            // A namespaced store reads credentials from its own namespace only.
            let store_ns = store["metadata"]["namespace"].as_str().map(String::from);
            let ns = store_ns.clone().or_else(|| tref["namespace"].as_str().map(String::from)).unwrap_or_else(|| es_ns.to_string());
            let secret = get(client, &format!("/api/v1/namespaces/{ns}/secrets/{}", s(&tref["name"])))
                .await?
                .ok_or_else(|| format!("could not get the token secret {ns}/{}", s(&tref["name"])))?;
            let key = tref["key"].as_str().unwrap_or("token");
            let token = secret["data"][key]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .ok_or_else(|| format!("the token secret {ns}/{} has no key {key:?}", s(&tref["name"])))?;
            return Ok(Provider::Vault {
                http: http.clone(),
                server: s(&v["server"]).trim_end_matches('/').to_string(),
                path: v["path"].as_str().unwrap_or("secret").trim_matches('/').to_string(),
                v2: v["version"].as_str().unwrap_or("v2") == "v2",
                token: String::from_utf8_lossy(&token).trim().to_string(),
                namespace: v["namespace"].as_str().map(String::from),
            });
        }
        if let Some(a) = p.get("aws").filter(|a| a.is_object()) {
            if a["service"].as_str().unwrap_or("SecretsManager") != "SecretsManager" {
                return Err(format!("aws: service {:?} is not supported (supported: SecretsManager)", s(&a["service"])));
            }
            let region = a["region"].as_str().unwrap_or("us-east-1").to_string();
            let sref = &a["auth"]["secretRef"];
            let store_ns = store["metadata"]["namespace"].as_str().map(String::from);
            let read = |r: Value| {
                let ns = store_ns.clone().or_else(|| r["namespace"].as_str().map(String::from)).unwrap_or_else(|| es_ns.to_string());
                async move {
                    if !r.is_object() {
                        return Ok::<Option<String>, String>(None);
                    }
                    let sec = get(client, &format!("/api/v1/namespaces/{ns}/secrets/{}", s(&r["name"])))
                        .await?
                        .ok_or_else(|| format!("could not get the credentials secret {ns}/{}", s(&r["name"])))?;
                    let v = sec["data"][s(&r["key"])]
                        .as_str()
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .ok_or_else(|| format!("the credentials secret {ns}/{} has no key {:?}", s(&r["name"]), s(&r["key"])))?;
                    Ok(Some(String::from_utf8_lossy(&v).trim().to_string()))
                }
            };
            let access_key = read(sref["accessKeyIDSecretRef"].clone()).await?.ok_or("aws: auth.secretRef.accessKeyIDSecretRef is required")?;
            let secret_key = read(sref["secretAccessKeySecretRef"].clone()).await?.ok_or("aws: auth.secretRef.secretAccessKeySecretRef is required")?;
            let session_token = read(sref["sessionTokenSecretRef"].clone()).await?;
            // The AWS SDKs' standard override, which tests point at moto.
            let endpoint = std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|_| format!("https://secretsmanager.{region}.amazonaws.com"));
            let host = endpoint.split("://").nth(1).unwrap_or_default().trim_end_matches('/').to_string();
            return Ok(Provider::Aws {
                http: http.clone(),
                endpoint,
                host,
                region,
                creds: crate::sigv4::Credentials { access_key, secret_key, session_token },
            });
        }
        Err("the store's provider is not supported by lockbox yet (supported: fake, vault, aws)".into())
    }

    /// One Secrets Manager call.
    async fn aws(&self, target: &str, body: Value) -> Result<Value, String> {
        let Provider::Aws { http, endpoint, host, region, creds } = self else { unreachable!("aws call on another provider") };
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let date = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let mut req = http.post(format!("{}/", endpoint.trim_end_matches('/'))).body(body.clone());
        for (k, v) in crate::sigv4::sign(creds, region, "secretsmanager", host, &format!("secretsmanager.{target}"), &body, &date) {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach AWS Secrets Manager: {}", e.without_url()))?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 {
            return Ok(v);
        }
        let kind = s(&v["__type"]);
        Err(if kind.contains("ResourceNotFound") { "ResourceNotFoundException".into() } else { format!("AWS Secrets Manager answered {status} {kind}") })
    }

    async fn aws_value(&self, key: &str, version: &str) -> Result<Vec<u8>, String> {
        let mut body = json!({"SecretId": key});
        match version.strip_prefix("uuid/") {
            Some(id) => body["VersionId"] = json!(id),
            None if !version.is_empty() => body["VersionStage"] = json!(version),
            None => {}
        }
        let v = self.aws("GetSecretValue", body).await.map_err(|e| if e == "ResourceNotFoundException" { format!("{NOT_FOUND}{key}") } else { e })?;
        match (v["SecretString"].as_str(), v["SecretBinary"].as_str()) {
            (Some(s), _) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| e.to_string()),
            _ => Err(format!("secret {key:?} has no value")),
        }
    }

    /// Secrets whose name matches `regexp` and which carry `tags` (dataFrom.find).
    async fn find(&self, regexp: &str, tags: Option<&serde_json::Map<String, Value>>) -> Result<BTreeMap<String, Vec<u8>>, String> {
        if !matches!(self, Provider::Aws { .. }) {
            return Err("dataFrom.find is supported for the aws provider only".into());
        }
        let re = regex::Regex::new(if regexp.is_empty() { ".*" } else { regexp }).map_err(|e| format!("invalid name regexp: {e}"))?;
        let mut filters = Vec::new();
        for (k, v) in tags.into_iter().flatten() {
            filters.push(json!({"Key": "tag-key", "Values": [k]}));
            filters.push(json!({"Key": "tag-value", "Values": [v]}));
        }
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"MaxResults": 100});
            if !filters.is_empty() {
                body["Filters"] = json!(filters);
            }
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = self.aws("ListSecrets", body).await?;
            for sec in page["SecretList"].as_array().cloned().unwrap_or_default() {
                let name = s(&sec["Name"]);
                let tagged =
                    tags.into_iter().flatten().all(|(k, v)| sec["Tags"].as_array().into_iter().flatten().any(|t| t["Key"] == k.as_str() && t["Value"] == *v));
                if re.is_match(&name) && tagged {
                    out.insert(name.replace('/', "_"), self.aws_value(&name, "").await?);
                }
            }
            match page["NextToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    /// All properties of a remote secret.
    async fn get_map(&self, key: &str, version: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        match self {
            Provider::Fake(data) => {
                let raw = data.get(key).ok_or_else(|| format!("{NOT_FOUND}{key}"))?;
                let v: Value = serde_json::from_str(raw).map_err(|_| format!("key {key:?} is not a JSON object"))?;
                Ok(v.as_object().cloned().unwrap_or_default().into_iter().map(|(k, v)| (k, value_bytes(&v))).collect())
            }
            Provider::Aws { .. } => {
                let raw = self.aws_value(key, version).await?;
                let v: Value = serde_json::from_slice(&raw).map_err(|_| format!("secret {key:?} is not a JSON object"))?;
                Ok(v.as_object()
                    .cloned()
                    .ok_or_else(|| format!("secret {key:?} is not a JSON object"))?
                    .into_iter()
                    .map(|(k, v)| (k, value_bytes(&v)))
                    .collect())
            }
            Provider::Vault { http, server, path, v2, token, namespace } => {
                let url = if *v2 {
                    let q = if version.is_empty() { String::new() } else { format!("?version={version}") };
                    format!("{server}/v1/{path}/data/{}{q}", key.trim_start_matches('/'))
                } else {
                    format!("{server}/v1/{path}/{}", key.trim_start_matches('/'))
                };
                let mut req = http.get(&url).header("X-Vault-Token", token);
                if let Some(n) = namespace {
                    req = req.header("X-Vault-Namespace", n);
                }
                let resp = req.send().await.map_err(|e| format!("cannot reach the vault server: {}", e.without_url()))?;
                match resp.status().as_u16() {
                    200 => {}
                    404 => return Err(format!("{NOT_FOUND}{key}")),
                    403 => return Err("vault: permission denied (check the token)".into()),
                    code => return Err(format!("vault answered {code}")),
                }
                let body: Value = resp.json().await.map_err(|e| format!("vault: malformed response: {}", e.without_url()))?;
                let data = if *v2 { &body["data"]["data"] } else { &body["data"] };
                Ok(data.as_object().cloned().unwrap_or_default().into_iter().map(|(k, v)| (k, value_bytes(&v))).collect())
            }
        }
    }

    /// One value: a property of the secret, or the whole secret.
    async fn get(&self, key: &str, property: &str, version: &str) -> Result<Vec<u8>, String> {
        if let Provider::Fake(data) = self {
            let raw = data.get(key).ok_or_else(|| format!("{NOT_FOUND}{key}"))?;
            if property.is_empty() {
                return Ok(raw.clone().into_bytes());
            }
        }
        if matches!(self, Provider::Aws { .. }) {
            let raw = self.aws_value(key, version).await?;
            if property.is_empty() {
                return Ok(raw);
            }
            // A property is a dotted path into the secret's JSON, as ESO's gjson paths are.
            let v: Value = serde_json::from_slice(&raw).map_err(|_| format!("secret {key:?} is not JSON, so property {property:?} cannot be read"))?;
            let found =
                property.split('.').try_fold(&v, |cur, seg| cur.get(seg)).ok_or_else(|| format!("property {property:?} not found in secret {key:?}"))?;
            return Ok(value_bytes(found));
        }
        let map = self.get_map(key, version).await?;
        if property.is_empty() {
            return serde_json::to_vec(&map.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect::<BTreeMap<_, _>>())
                .map_err(|e| e.to_string());
        }
        map.get(property).cloned().ok_or_else(|| format!("property {property:?} not found in secret {key:?}"))
    }
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
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
