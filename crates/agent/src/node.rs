//! The Node this agent runs, and its heartbeats: the Node object (Ready, addresses, the agent's
//! endpoint) and a Lease in `kube-node-lease` renewed every 10 s, as the kubelet does.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// GOARCH, as the kubelet labels and reports it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// When this agent became Ready: the condition's lastTransitionTime, which heartbeats keep.
static READY_SINCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn micro_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub async fn register(client: &Client, name: &str, ip: &str, port: u16) -> kube::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": go_arch()}},
        }))
        .map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e),
        }
    }
    heartbeat(client, name, ip, port).await
}

pub async fn heartbeat(client: &Client, name: &str, ip: &str, port: u16) -> kube::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) as u64 * libc::sysconf(libc::_SC_PAGESIZE) as u64 } / 1024;
    let capacity = json!({"cpu": cores.to_string(), "memory": format!("{mem}Ki"), "pods": "110"});
    let status = json!({
        "capacity": capacity, "allocatable": capacity,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "lockbox agent is posting ready status", "lastHeartbeatTime": now(), "lastTransitionTime": READY_SINCE.get_or_init(now)}],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "osImage": "lockbox process runtime", "containerRuntimeVersion": "lockbox://0.1.0", "kubeletVersion": "v1.32.0", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": go_arch(),
        },
    });
    Api::<Node>::all(client.clone()).patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()}});
    leases.patch(name, &PatchParams::apply("lockbox-agent").force(), &Patch::Apply(&lease)).await?;
    Ok(())
}
