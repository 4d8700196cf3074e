//! A container's environment, built as the kubelet builds it (pkg/kubelet/kubelet_pods.go
//! makeEnvironmentVariables): the service variables first, then `envFrom` in order (with
//! `prefix`; keys that are not valid variable names are skipped and reported), then `env` in
//! order, each value `$(VAR)`-expanded against what came before. A missing ConfigMap, Secret or
//! key that is not `optional` is a CreateContainerConfigError with the kubelet's message.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client, ResourceExt};

use crate::expand::expand;

/// What makes a container's env: the values, and keys skipped for being invalid names.
pub struct Env {
    pub vars: Vec<(String, String)>,
    pub skipped: Vec<String>,
}

/// IsEnvVarName: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn valid_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || "-._".contains(c)) && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

async fn configmap(client: &Client, ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
    Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(name).await.map_err(|e| format!("failed to get configmap {ns}/{name}: {}", short(&e)))
}

async fn secret(client: &Client, ns: &str, name: &str) -> Result<Option<Secret>, String> {
    Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await.map_err(|e| format!("failed to get secret {ns}/{name}: {}", short(&e)))
}

/// An API error without echoing any object content.
pub fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string().chars().take(200).collect(),
    }
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()
}

/// What env can take from a ConfigMap: `data` only; the kubelet never puts binaryData in env.
fn configmap_data(c: &ConfigMap) -> BTreeMap<String, String> {
    c.data.clone().unwrap_or_default()
}

/// The value of a downward-API field of the pod.
pub fn field_value(pod: &Pod, path: &str, host_ip: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let key_of = |p: &str, prefix: &str| p.strip_prefix(prefix).map(|k| k.trim_start_matches('[').trim_end_matches(']').trim_matches('\'').to_string());
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.podIP" => status.pod_ip.unwrap_or_else(|| host_ip.to_string()),
        "status.podIPs" => status.pod_ip.unwrap_or_else(|| host_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => status.host_ip.unwrap_or_else(|| host_ip.to_string()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        p if p.starts_with("metadata.labels") => key_of(p, "metadata.labels").and_then(|k| meta.labels.as_ref()?.get(&k).cloned()).unwrap_or_default(),
        p if p.starts_with("metadata.annotations") => {
            key_of(p, "metadata.annotations").and_then(|k| meta.annotations.as_ref()?.get(&k).cloned()).unwrap_or_default()
        }
        other => return Err(format!("unsupported fieldRef path {other:?}")),
    })
}

/// `key="value"` lines, sorted, as the downward API renders a map.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")).unwrap_or_default()
}

/// resourceFieldRef: requests and limits, defaulting a missing limit to the node's capacity.
pub fn resource_value(c: &Container, resource: &str, divisor: Option<&str>) -> Result<String, String> {
    let res = c.resources.clone().unwrap_or_default();
    let (kind, name) = resource.split_once('.').ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let map = if kind == "limits" { res.limits } else { res.requests };
    let raw = map.and_then(|m| m.get(name).map(|q| q.0.clone()));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let value = match (name, raw) {
        (_, Some(q)) => parse_quantity(&q),
        ("cpu", None) => {
            if kind == "limits" {
                cores as f64
            } else {
                0.0
            }
        }
        ("memory", None) => {
            if kind == "limits" {
                let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) } as f64;
                let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
                pages * size
            } else {
                0.0
            }
        }
        // The node's allocatable ephemeral storage is its root filesystem's size.
        ("ephemeral-storage", None) => {
            if kind == "limits" {
                let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
                if unsafe { libc::statvfs(c"/".as_ptr(), &mut st) } == 0 {
                    st.f_blocks as f64 * st.f_frsize as f64
                } else {
                    0.0
                }
            } else {
                0.0
            }
        }
        (other, None) => return Err(format!("unsupported resource {other:?}")),
    };
    let div = divisor.map(parse_quantity).filter(|d| *d > 0.0).unwrap_or(1.0);
    Ok(((value / div).ceil() as i64).to_string())
}

fn parse_quantity(q: &str) -> f64 {
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("Pi", 1125899906842624.0),
        ("P", 1e15),
        ("E", 1e18),
        ("Ei", 1152921504606846976.0),
    ];
    for (s, m) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().unwrap_or(0.0) * m;
        }
    }
    q.parse().unwrap_or(0.0)
}

/// Builds the env, or fails with the kubelet's CreateContainerConfigError message.
pub async fn build(client: &Client, pod: &Pod, c: &Container, service_env: &[(String, String)], host_ip: &str) -> Result<Env, String> {
    let ns = pod.namespace().unwrap_or_default();
    let mut vars: Vec<(String, String)> = service_env.to_vec();
    let mut skipped = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| match vars.iter_mut().find(|(n, _)| *n == k) {
        Some(slot) => slot.1 = v,
        None => vars.push((k, v)),
    };
    for src in c.env_from.clone().unwrap_or_default() {
        let prefix = src.prefix.clone().unwrap_or_default();
        if let Some(r) = &src.config_map_ref {
            match configmap(client, &ns, &r.name).await? {
                Some(cm) => {
                    let mut invalid = Vec::new();
                    for (k, v) in configmap_data(&cm) {
                        let name = format!("{prefix}{k}");
                        if valid_name(&name) {
                            set(&mut vars, name, v);
                        } else {
                            invalid.push(k);
                        }
                    }
                    if !invalid.is_empty() {
                        skipped.push(format!(
                            "Keys [{}] from the EnvFrom configMap {ns}/{} were skipped since they are considered invalid environment variable names.",
                            invalid.join(", "),
                            r.name
                        ));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &src.secret_ref {
            match secret(client, &ns, &r.name).await? {
                Some(s) => {
                    let mut invalid = Vec::new();
                    for (k, v) in secret_data(&s) {
                        let name = format!("{prefix}{k}");
                        if valid_name(&name) {
                            set(&mut vars, name, String::from_utf8_lossy(&v).into_owned());
                        } else {
                            invalid.push(k);
                        }
                    }
                    if !invalid.is_empty() {
                        skipped.push(format!(
                            "Keys [{}] from the EnvFrom secret {ns}/{} were skipped since they are considered invalid environment variable names.",
                            invalid.join(", "),
                            r.name
                        ));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for e in c.env.clone().unwrap_or_default() {
        let value = if let Some(v) = &e.value {
            let snapshot = vars.clone();
            Some(expand(v, |k| snapshot.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())))
        } else if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                match configmap(client, &ns, &r.name).await? {
                    Some(cm) => match configmap_data(&cm).get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if r.optional == Some(true) => None,
                        None => return Err(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name)),
                    },
                    None if r.optional == Some(true) => None,
                    None => return Err(format!("configmap {:?} not found", r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                match secret(client, &ns, &r.name).await? {
                    Some(s) => match secret_data(&s).get(&r.key) {
                        Some(v) => Some(String::from_utf8_lossy(v).into_owned()),
                        None if r.optional == Some(true) => None,
                        None => return Err(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name)),
                    },
                    None if r.optional == Some(true) => None,
                    None => return Err(format!("secret {:?} not found", r.name)),
                }
            } else if let Some(f) = &from.field_ref {
                Some(field_value(pod, &f.field_path, host_ip)?)
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) => pod.spec.as_ref().and_then(|s| s.containers.iter().find(|x| x.name == n)).cloned().unwrap_or_else(|| c.clone()),
                    None => c.clone(),
                };
                Some(resource_value(&target, &r.resource, r.divisor.as_ref().map(|q| q.0.as_str()))?)
            } else {
                None
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(Env { vars, skipped })
}

/// Decodes a Secret's data for volumes (values are raw bytes).
pub fn decode_b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names() {
        assert!(valid_name("MAX_BATCH_SIZE"));
        assert!(valid_name("hf_token"));
        assert!(valid_name("a.b-c"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), 0.5);
        assert_eq!(parse_quantity("64Mi"), 67108864.0);
        assert_eq!(parse_quantity("2"), 2.0);
    }
}
