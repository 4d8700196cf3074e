//! Admission for pods, as kube-apiserver's ServiceAccount plugin does it: the pod's
//! ServiceAccount must exist, and unless automounting is off (on the pod or its ServiceAccount)
//! every container gets the `kube-api-access-*` projected volume at
//! `/var/run/secrets/kubernetes.io/serviceaccount`: a bound token, the cluster CA
//! (`kube-root-ca.crt`) and the namespace.

use serde_json::{json, Value};

use api::{kinds, object, ApiError, ApiResult};

use crate::rest::Registry;

pub const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub async fn pod(reg: &Registry, ns: &str, pod: &mut Value) -> ApiResult<()> {
    let sa_name = pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or(pod["spec"]["serviceAccount"].as_str().filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    pod["spec"]["serviceAccountName"] = json!(sa_name);
    let sa = match reg.get(&kinds::SERVICEACCOUNTS, ns, &sa_name).await {
        Ok(sa) => sa,
        Err(e) if e.is_not_found() => {
            let name = object::name(pod);
            let what = if name.is_empty() { "pods".to_string() } else { format!("pods {name:?}") };
            return Err(ApiError::forbidden(format!(
                "{what} is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found"
            )));
        }
        Err(e) => return Err(e),
    };
    let automount = pod["spec"]["automountServiceAccountToken"].as_bool().or(sa["automountServiceAccountToken"].as_bool()).unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    if containers.iter().any(|c| c["volumeMounts"].as_array().is_some_and(|m| m.iter().any(|m| m["mountPath"] == SA_MOUNT))) {
        return Ok(());
    }
    let vol = format!("kube-api-access-{}", object::random_suffix());
    let volume = json!({"name": vol, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}});
    match pod.get_mut("spec").and_then(|v| v.get_mut("volumes")).and_then(serde_json::Value::as_array_mut) {
        Some(v) => v.push(volume),
        None => pod["spec"]["volumes"] = json!([volume]),
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = pod.get_mut("spec").and_then(|v| v.get_mut(list)).and_then(serde_json::Value::as_array_mut) {
            for c in cs {
                let mount = json!({"name": vol, "mountPath": SA_MOUNT, "readOnly": true});
                match c.get_mut("volumeMounts").and_then(serde_json::Value::as_array_mut) {
                    Some(m) => m.push(mount),
                    None => c["volumeMounts"] = json!([mount]),
                }
            }
        }
    }
    Ok(())
}
