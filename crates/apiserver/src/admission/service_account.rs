//! The ServiceAccount admission plugin, as kube-apiserver's: the pod's
//! ServiceAccount must exist, and unless automounting is off (on the pod or its ServiceAccount)
//! every container gets the `kube-api-access-*` projected volume at
//! `/var/run/secrets/kubernetes.io/serviceaccount`: a bound token, the cluster CA
//! (`kube-root-ca.crt`) and the namespace.

use serde_json::{json, Value};

use api::{kinds, object, ApiError, ApiResult};

use crate::rest::Registry;

pub const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Admits a pod being created in `ns`.
pub async fn admit(reg: &Registry, ns: &str, pod: &mut Value) -> ApiResult<()> {
    let sa_name = account_name(pod);
    *object::member_at(pod, &["spec", "serviceAccountName"]) = json!(sa_name);
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
    if !mounts_token_itself(pod) {
        mount_token(pod);
    }
    Ok(())
}

/// The pod's ServiceAccount: serviceAccountName, else the deprecated serviceAccount, else
/// `default`.
fn account_name(pod: &Value) -> String {
    pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or(pod["spec"]["serviceAccount"].as_str().filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string()
}

/// A container already mounts something at the token's path: the pod is left as it is.
fn mounts_token_itself(pod: &Value) -> bool {
    let containers = pod["spec"]["containers"].as_array().map(Vec::as_slice).unwrap_or_default();
    containers.iter().any(|c| c["volumeMounts"].as_array().is_some_and(|m| m.iter().any(|m| m["mountPath"] == SA_MOUNT)))
}

/// Adds the `kube-api-access-*` volume and mounts it in every container.
fn mount_token(pod: &mut Value) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_volume_is_projected_into_every_container() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}], "initContainers": [{"name": "i"}]}});
        mount_token(&mut pod);
        let vol = pod["spec"]["volumes"][0]["name"].as_str().unwrap().to_string();
        assert!(vol.starts_with("kube-api-access-"), "{vol}");
        let sources = &pod["spec"]["volumes"][0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        for c in ["containers", "initContainers"] {
            for container in pod["spec"][c].as_array().unwrap() {
                let mounts = container["volumeMounts"].as_array().unwrap();
                assert!(mounts.iter().any(|m| m["name"] == vol.as_str() && m["mountPath"] == SA_MOUNT && m["readOnly"] == true), "{container}");
            }
        }
        assert_eq!(pod["spec"]["containers"][1]["volumeMounts"][0]["name"], "x");
    }

    #[test]
    fn a_pod_that_mounts_the_path_itself_gets_no_volume() {
        let own = json!({"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "own", "mountPath": SA_MOUNT}]}]}});
        assert!(mounts_token_itself(&own));
        let plain = json!({"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "v", "mountPath": "/etc/x"}]}]}});
        assert!(!mounts_token_itself(&plain));
    }

    #[test]
    fn the_account_name_defaults_and_the_deprecated_field_is_read() {
        assert_eq!(account_name(&json!({"spec": {}})), "default");
        assert_eq!(account_name(&json!({"spec": {"serviceAccount": "old"}})), "old");
        assert_eq!(account_name(&json!({"spec": {"serviceAccount": "old", "serviceAccountName": "new"}})), "new");
    }
}
