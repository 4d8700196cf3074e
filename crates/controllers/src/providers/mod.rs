//! The secret providers behind SecretStores and ClusterSecretStores, as the External Secrets
//! Operator names them: `fake`, `vault` (HashiCorp Vault or OpenBao), `aws` (Secrets Manager)
//! and `azurekv` (Azure Key Vault). Each one only fetches a remote secret; what is shared
//! (properties, JSON extraction, the wording of errors) lives here, so the providers agree.
//!
//! Credentials are read from Secrets through the API with the controller's own identity, and a
//! remote value never appears in an error.

mod aws;
mod azure;
mod fake;
pub(crate) mod sigv4;
mod vault;

use std::collections::BTreeMap;

use base64::Engine;
use kube::Client;
use serde_json::Value;

use crate::eso_api::{get_json, s};

/// How every provider reports a remote secret that does not exist (ESO's wording).
pub const NOT_FOUND: &str = "Secret does not exist: ";

/// A remote secret as its provider holds it.
pub enum Remote {
    /// One opaque value (AWS, Azure, fake); properties are JSON paths into it.
    Raw(Vec<u8>),
    /// A map of fields (Vault's KV).
    Map(serde_json::Map<String, Value>),
}

/// The providers served, by their key under a store's `spec.provider`.
const KINDS: [&str; 4] = ["fake", "vault", "aws", "azurekv"];

pub enum Provider {
    Fake(fake::Fake),
    Vault(vault::Vault),
    Aws(aws::Aws),
    Azure(azure::Azure),
}

impl Provider {
    pub async fn from_store(client: &Client, http: &reqwest::Client, store: &Value, es_ns: &str) -> Result<Provider, String> {
        let p = &store["spec"]["provider"];
        let creds = Credentials { client, store_ns: store["metadata"]["namespace"].as_str().map(String::from), es_ns: es_ns.to_string() };
        let section = |name: &str| p.get(name).filter(|v| v.is_object());
        if let Some(f) = section("fake") {
            return Ok(Provider::Fake(fake::Fake::new(f)));
        }
        if let Some(v) = section("vault") {
            return vault::Vault::connect(http, v, &creds).await.map(Provider::Vault);
        }
        if let Some(a) = section("aws") {
            return aws::Aws::new(http, a, &creds).await.map(Provider::Aws);
        }
        if let Some(a) = section("azurekv") {
            return azure::Azure::connect(http, a, &creds).await.map(Provider::Azure);
        }
        Err("the store's provider is not supported by lockbox yet (supported: fake, vault, aws, azurekv)".into())
    }

    /// The provider a store names (its key under `spec.provider`), as metrics label it.
    pub fn kind_of(store: &Value) -> Option<&'static str> {
        let p = store["spec"]["provider"].as_object()?;
        KINDS.iter().copied().find(|k| p.get(*k).is_some_and(Value::is_object))
    }

    fn kind(&self) -> &'static str {
        match self {
            Provider::Fake(_) => "fake",
            Provider::Vault(_) => "vault",
            Provider::Aws(_) => "aws",
            Provider::Azure(_) => "azurekv",
        }
    }

    async fn fetch(&self, key: &str, version: &str) -> Result<Remote, String> {
        match self {
            Provider::Fake(p) => p.fetch(key),
            Provider::Vault(p) => p.fetch(key, version).await,
            Provider::Aws(p) => p.fetch(key, version).await.map(Remote::Raw),
            Provider::Azure(p) => p.fetch(key, version).await.map(Remote::Raw),
        }
    }

    /// One value: a property of the secret, or the whole secret.
    pub async fn get(&self, key: &str, property: &str, version: &str) -> Result<Vec<u8>, String> {
        match self.fetch(key, version).await? {
            Remote::Raw(raw) if property.is_empty() => Ok(raw),
            Remote::Raw(raw) => {
                let v: Value = serde_json::from_slice(&raw).map_err(|_| format!("secret {key:?} is not JSON, so property {property:?} cannot be read"))?;
                property_of(&v, key, property)
            }
            Remote::Map(map) if property.is_empty() => {
                let flat: BTreeMap<_, _> = map.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&value_bytes(v)).into_owned())).collect();
                serde_json::to_vec(&flat).map_err(|e| e.to_string())
            }
            Remote::Map(map) => property_of(&Value::Object(map), key, property),
        }
    }

    /// All properties of a remote secret (dataFrom.extract).
    pub async fn get_map(&self, key: &str, version: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let map = match self.fetch(key, version).await? {
            Remote::Map(m) => m,
            Remote::Raw(raw) => match serde_json::from_slice::<Value>(&raw) {
                Ok(Value::Object(m)) => m,
                _ => return Err(format!("secret {key:?} is not a JSON object")),
            },
        };
        Ok(map.into_iter().map(|(k, v)| (k, value_bytes(&v))).collect())
    }

    /// Secrets whose name matches `regexp` and which carry `tags` (dataFrom.find), keyed by
    /// name with `/` replaced by `_` as ESO does.
    pub async fn find(&self, regexp: &str, tags: Option<&serde_json::Map<String, Value>>) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let re = regex::Regex::new(if regexp.is_empty() { ".*" } else { regexp }).map_err(|e| format!("invalid name regexp: {e}"))?;
        let names = match self {
            Provider::Aws(p) => p.list(tags).await?,
            Provider::Azure(p) => p.list(tags).await?,
            _ => return Err(format!("dataFrom.find is not supported by the {} provider", self.kind())),
        };
        let mut out = BTreeMap::new();
        for name in names.into_iter().filter(|n| re.is_match(n)) {
            let value = match self.fetch(&name, "").await? {
                Remote::Raw(raw) => raw,
                Remote::Map(_) => unreachable!("listing providers hold raw values"),
            };
            out.insert(name.replace('/', "_"), value);
        }
        Ok(out)
    }
}

/// A property: a key of the object, or a dotted path into it (ESO uses gjson paths).
fn property_of(v: &Value, key: &str, property: &str) -> Result<Vec<u8>, String> {
    v.get(property)
        .or_else(|| property.split('.').try_fold(v, |cur, seg| cur.get(seg)))
        .map(value_bytes)
        .ok_or_else(|| format!("property {property:?} not found in secret {key:?}"))
}

/// A JSON value as Secret bytes: strings as they are, anything else as JSON text.
fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// Where a store's credentials come from: Secrets in the store's own namespace (a namespaced
/// store), or the namespace a ClusterSecretStore's reference names, else the ExternalSecret's.
pub struct Credentials<'a> {
    pub client: &'a Client,
    store_ns: Option<String>,
    es_ns: String,
}

impl Credentials<'_> {
    /// The namespace a reference (`{name, key, namespace}`) is read from.
    pub fn namespace(&self, r: &Value) -> String {
        self.store_ns.clone().or_else(|| r["namespace"].as_str().map(String::from)).unwrap_or_else(|| self.es_ns.clone())
    }

    /// The value a `{name, key, namespace}` reference points at, trimmed; None when the
    /// reference is absent.
    pub async fn read(&self, r: &Value, default_key: &str) -> Result<Option<String>, String> {
        if !r.is_object() {
            return Ok(None);
        }
        let ns = self.namespace(r);
        let name = s(&r["name"]);
        let key = r["key"].as_str().filter(|k| !k.is_empty()).unwrap_or(default_key);
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(self.client.clone(), &ns);
        let sec = get_json(&secrets, &name).await?.ok_or_else(|| format!("could not get the secret {ns}/{name}"))?;
        let v = sec["data"][key]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(|| format!("the secret {ns}/{name} has no key {key:?}"))?;
        Ok(Some(String::from_utf8_lossy(&v).trim().to_string()))
    }

    /// Like `read`, for a reference the store must have.
    pub async fn require(&self, r: &Value, default_key: &str, what: &str) -> Result<String, String> {
        self.read(r, default_key).await?.ok_or_else(|| format!("{what} is required"))
    }
}
