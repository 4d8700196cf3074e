//! The external-secrets.io/v1 kinds as the controllers reach them: no Rust types are
//! generated for them, so they go through kube's dynamic API with their ApiResource, and the
//! controllers read them (and the Secrets they write) as JSON.

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::Client;
use serde_json::Value;

/// A JSON string member, or "".
pub(crate) fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The external-secrets.io/v1 kinds. No Rust types are generated for them, so they are
/// reached through kube's dynamic API with their ApiResource, and read as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EsoKind {
    ExternalSecret,
    SecretStore,
    ClusterSecretStore,
    ClusterExternalSecret,
}

impl EsoKind {
    pub const ALL: [EsoKind; 4] = [EsoKind::ExternalSecret, EsoKind::SecretStore, EsoKind::ClusterSecretStore, EsoKind::ClusterExternalSecret];

    fn names(self) -> (&'static str, &'static str, bool) {
        match self {
            EsoKind::ExternalSecret => ("ExternalSecret", "externalsecrets", true),
            EsoKind::SecretStore => ("SecretStore", "secretstores", true),
            EsoKind::ClusterSecretStore => ("ClusterSecretStore", "clustersecretstores", false),
            EsoKind::ClusterExternalSecret => ("ClusterExternalSecret", "clusterexternalsecrets", false),
        }
    }

    pub fn resource(self) -> ApiResource {
        let (kind, plural, _) = self.names();
        ApiResource { group: GROUP.into(), version: "v1".into(), api_version: format!("{GROUP}/v1"), kind: kind.into(), plural: plural.into() }
    }

    /// Every object of the kind, in every namespace.
    pub fn api_all(self, client: &Client) -> Api<DynamicObject> {
        Api::all_with(client.clone(), &self.resource())
    }

    /// The objects of the kind in `ns` (for a cluster-scoped kind, all of them).
    pub fn api(self, client: &Client, ns: &str) -> Api<DynamicObject> {
        if self.names().2 {
            Api::namespaced_with(client.clone(), ns, &self.resource())
        } else {
            self.api_all(client)
        }
    }
}

pub const GROUP: &str = "external-secrets.io";

/// An object as JSON, or None when it does not exist.
pub(crate) async fn get_json<K>(api: &Api<K>, name: &str) -> Result<Option<Value>, String>
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(o) => Ok(o.map(|o| serde_json::to_value(o).unwrap_or_default())),
        Err(e) => Err(crate::short(&e)),
    }
}

/// Every object `api` lists, as JSON.
pub(crate) async fn list_json<K>(api: &Api<K>, params: &ListParams) -> Result<Vec<Value>, String>
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let list = api.list(params).await.map_err(|e| crate::short(&e))?;
    Ok(list.items.into_iter().map(|o| serde_json::to_value(o).unwrap_or_default()).collect())
}

/// A JSON object as the typed value an API call takes.
pub(crate) fn typed<K: serde::de::DeserializeOwned>(v: Value) -> Result<K, String> {
    serde_json::from_value(v).map_err(|e| format!("invalid object: {e}"))
}

/// A failed sync step, as its message (which names objects and failures, never values).
#[derive(Debug)]
pub struct SyncError(pub String);

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SyncError {}
