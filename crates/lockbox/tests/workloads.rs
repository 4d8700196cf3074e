//! Workloads end to end: what the node agent puts into a running process (env, volumes, the
//! ServiceAccount token), how it reacts to changes, rollouts, and that nothing outlives a pod.
//! Pods run as real processes, so these tests need root (namespaces, tmpfs).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use serde_json::{json, Value};

use common::{post, raw, until, Server};

async fn logs(c: &kube::Client, ns: &str, pod: &str) -> String {
    Api::<Pod>::namespaced(c.clone(), ns).logs(pod, &LogParams::default()).await.unwrap_or_default()
}

async fn setup(c: &kube::Client, ns: &str) {
    assert_eq!(post(c, "/api/v1/namespaces", json!({"metadata": {"name": ns}})).await.0, 201);
    // The default ServiceAccount appears shortly after the namespace.
    let c2 = c.clone();
    let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/default");
    until("default service account", 10, || {
        let (c, path) = (c2.clone(), path.clone());
        async move {
            if raw(&c, "GET", &path, "", b"").await.0 == 200 {
                Ok(())
            } else {
                Err("missing".into())
            }
        }
    })
    .await;
}

fn pod(name: &str, script: &str, extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": name}},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]},
    });
    json_patch::merge(&mut p, &extra);
    p
}

#[tokio::test]
async fn env_is_built_like_the_kubelet_and_waits_for_missing_config() {
    let s = Server::start().await;
    let c = s.client().await;
    setup(&c, "env").await;
    assert_eq!(
        post(&c, "/api/v1/namespaces/env/configmaps", json!({"metadata": {"name": "cfg"}, "data": {"A": "from-cm", "B": "b", "1OK": "prefixed-so-valid"}}))
            .await
            .0,
        201
    );
    assert_eq!(
        post(
            &c,
            "/api/v1/namespaces/env/secrets",
            json!({"metadata": {"name": "sec"}, "stringData": {"TOKEN": "s3cr3t-env-value", "A": "from-secret", "1BAD": "skipped"}})
        )
        .await
        .0,
        201
    );
    let p = pod(
        "envtest",
        "env | sort; sleep 3600",
        json!({"spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "env | sort; sleep 3600"],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}, {"secretRef": {"name": "sec"}}, {"configMapRef": {"name": "absent", "optional": true}}],
        "env": [
            {"name": "A", "value": "explicit"},
            {"name": "EXPANDED", "value": "$(A)-$(TOKEN)-$(NOPE)-$$(A)"},
            {"name": "FROM_KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "B"}}},
            {"name": "OPTIONAL_MISSING", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "nope", "optional": true}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "LATE", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "K"}}},
        ]}]}}),
    );
    assert_eq!(post(&c, "/api/v1/namespaces/env/pods", p).await.0, 201);
    // Missing ConfigMap: CreateContainerConfigError with the kubelet's message.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "env");
    let p2 = pods.clone();
    until("CreateContainerConfigError", 20, || {
        let p2 = p2.clone();
        async move {
            let pod = p2.get("envtest").await.map_err(|e| e.to_string())?;
            let w = pod.status.and_then(|s| s.container_statuses).and_then(|cs| cs.first().cloned()).and_then(|c| c.state).and_then(|s| s.waiting);
            match w {
                Some(w) if w.reason.as_deref() == Some("CreateContainerConfigError") => {
                    assert_eq!(w.message.as_deref(), Some("configmap \"late\" not found"));
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    // The container starts once the object appears.
    assert_eq!(post(&c, "/api/v1/namespaces/env/configmaps", json!({"metadata": {"name": "late"}, "data": {"K": "arrived"}})).await.0, 201);
    let c2 = c.clone();
    until("container started with its env", 20, || {
        let c2 = c2.clone();
        async move {
            if logs(&c2, "env", "envtest").await.contains("LATE=arrived") {
                Ok(())
            } else {
                Err("no log yet".into())
            }
        }
    })
    .await;
    let out = logs(&c, "env", "envtest").await;
    let env: Vec<&str> = out.lines().collect();
    for want in [
        "A=explicit",
        "CM_A=from-cm",
        "CM_B=b",
        "TOKEN=s3cr3t-env-value",
        "EXPANDED=explicit-s3cr3t-env-value-$(NOPE)-$(A)",
        "FROM_KEY=b",
        "POD_NAME=envtest",
        "POD_NS=env",
        "SA=default",
        "KUBERNETES_SERVICE_HOST=127.0.0.1",
        "CM_1OK=prefixed-so-valid",
    ] {
        assert!(env.contains(&want), "missing {want} in:\n{out}");
    }
    assert!(!env.iter().any(|l| l.starts_with("OPTIONAL_MISSING=")), "{out}");
    assert!(!out.contains("1BAD"), "{out}");
    // The invalid key was reported as the kubelet reports it.
    let (_, _, events) = raw(&c, "GET", "/api/v1/namespaces/env/events?fieldSelector=involvedObject.name%3Denvtest", "", b"").await;
    assert!(events["items"].as_array().unwrap().iter().any(|e| e["reason"] == "InvalidEnvironmentVariableNames"), "{events}");
    // The Secret value never reaches the server's log or any file outside the pod's tmpfs.
    assert!(!std::fs::read_to_string(&s.log).unwrap().contains("s3cr3t-env-value"));
}

#[tokio::test]
async fn volumes_use_the_atomic_layout_on_tmpfs_and_update_live() {
    let s = Server::start().await;
    let c = s.client().await;
    setup(&c, "vol").await;
    assert_eq!(post(&c, "/api/v1/namespaces/vol/configmaps", json!({"metadata": {"name": "cfg"}, "data": {"K": "v1", "OTHER": "o"}})).await.0, 201);
    assert_eq!(post(&c, "/api/v1/namespaces/vol/secrets", json!({"metadata": {"name": "sec"}, "stringData": {"pw": "vol-secret-value"}})).await.0, 201);
    let script = "if touch /etc/cfg/new 2>/dev/null; then echo CFG=RW; else echo CFG=RO; fi; while true; do echo \"K=$(cat /etc/cfg/K) ITEM=$(cat /etc/items/renamed) SUB=$(cat /etc/sub-k) NS=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)\"; sleep 0.2; done";
    let p = pod(
        "voltest",
        script,
        json!({"spec": {
        "volumes": [
            {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o440}},
            {"name": "items", "configMap": {"name": "cfg", "items": [{"key": "OTHER", "path": "renamed", "mode": 0o400}]}},
            {"name": "sec", "secret": {"secretName": "sec"}},
        ],
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script], "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "items", "mountPath": "/etc/items"},
            {"name": "sec", "mountPath": "/etc/sec", "readOnly": true},
            {"name": "cfg", "mountPath": "/etc/sub-k", "subPath": "K"},
        ]}]}}),
    );
    let (code, created) = post(&c, "/api/v1/namespaces/vol/pods", p).await;
    assert_eq!(code, 201, "{created}");
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let c2 = c.clone();
    until("volumes mounted", 20, || {
        let c2 = c2.clone();
        async move {
            if logs(&c2, "vol", "voltest").await.contains("K=v1 ITEM=o SUB=v1 NS=vol") {
                Ok(())
            } else {
                Err("not yet".into())
            }
        }
    })
    .await;
    // A configMap volume is read-only even without readOnly on its mount, as the kubelet has it.
    assert!(logs(&c, "vol", "voltest").await.contains("CFG=RO"));
    // The layout and modes on the host side, and tmpfs underneath.
    let vols = s.data_dir().join("agent/pods").join(&uid).join("volumes");
    let cfg = vols.join("cfg");
    assert_eq!(std::fs::read_link(cfg.join("K")).unwrap(), std::path::PathBuf::from("..data/K"));
    assert!(std::fs::read_link(cfg.join("..data")).unwrap().to_string_lossy().starts_with("..20"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(cfg.join("K")).unwrap().permissions().mode() & 0o777, 0o440);
    assert_eq!(std::fs::metadata(vols.join("items/renamed")).unwrap().permissions().mode() & 0o777, 0o400);
    assert!(std::fs::symlink_metadata(vols.join("items/K")).is_err(), "items selects keys");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(mounts.lines().any(|l| l.starts_with("tmpfs ") && l.contains(vols.to_str().unwrap())), "secret volumes must be on tmpfs");
    // An update arrives in the running container; the subPath mount keeps the old value.
    raw(&c, "PATCH", "/api/v1/namespaces/vol/configmaps/cfg", "application/merge-patch+json", br#"{"data":{"K":"v2"}}"#).await;
    let c2 = c.clone();
    until("update visible in the container", 5, || {
        let c2 = c2.clone();
        async move {
            if logs(&c2, "vol", "voltest").await.contains("K=v2 ITEM=o SUB=v1") {
                Ok(())
            } else {
                Err("not yet".into())
            }
        }
    })
    .await;
    // Deleting the pod stops the process and unmounts the tmpfs.
    // A running pod terminates gracefully: 200 with the object (as kube-apiserver answers a
    // pending deletion), then the agent removes it.
    let (code, _, terminating) = raw(&c, "DELETE", "/api/v1/namespaces/vol/pods/voltest", "", b"").await;
    assert_eq!(code, 200);
    assert!(terminating["metadata"]["deletionTimestamp"].is_string(), "{terminating}");
    let c2 = c.clone();
    until("pod gone", 20, || {
        let c2 = c2.clone();
        async move {
            if raw(&c2, "GET", "/api/v1/namespaces/vol/pods/voltest", "", b"").await.0 == 404 {
                Ok(())
            } else {
                Err("still there".into())
            }
        }
    })
    .await;
    assert!(!std::fs::read_to_string("/proc/self/mounts").unwrap().contains(vols.to_str().unwrap()));
    assert!(!vols.exists());
}

/// Pids of processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| std::fs::read(e.path().join("cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ").contains(marker)).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn deployments_roll_and_leave_no_process_behind() {
    let mut s = Server::start().await;
    let c = s.client().await;
    setup(&c, "dep").await;
    let marker = format!("lockbox-test-marker-{}", std::process::id());
    let dep = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "while true; do sleep 1; done", marker]}]}}},
    });
    assert_eq!(post(&c, "/apis/apps/v1/namespaces/dep/deployments", dep).await.0, 201);
    let kubectl = |args: &[&str]| {
        let out =
            std::process::Command::new("kubectl").args(args).env("KUBECONFIG", s.kubeconfig()).env("KUBECACHEDIR", s.dir.path().join("kc")).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, out) = kubectl(&["rollout", "status", "deployment/web", "-n", "dep", "--timeout=60s"]);
    assert!(ok, "{out}");
    assert_eq!(processes_with(&marker).len(), 2, "two containers running");
    let (ok, out) = kubectl(&["rollout", "restart", "deployment/web", "-n", "dep"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["rollout", "status", "deployment/web", "-n", "dep", "--timeout=60s"]);
    assert!(ok, "{out}");
    let (ok, history) = kubectl(&["rollout", "history", "deployment/web", "-n", "dep"]);
    assert!(ok && history.contains("1 ") && history.contains("2 "), "{history}");
    let (ok, out) = kubectl(&["rollout", "undo", "deployment/web", "-n", "dep"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["rollout", "status", "deployment/web", "-n", "dep", "--timeout=60s"]);
    assert!(ok, "{out}");
    let (_, _, d) = raw(&c, "GET", "/apis/apps/v1/namespaces/dep/deployments/web", "", b"").await;
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3", "{d}");
    assert!(d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_null(), "undo restored revision 1's template");
    let c2 = c.clone();
    until("old pods terminated", 20, || {
        let c2 = c2.clone();
        let m = marker.clone();
        async move {
            let (_, _, pods) = raw(&c2, "GET", "/api/v1/namespaces/dep/pods", "", b"").await;
            let n = pods["items"].as_array().map_or(0, |a| a.len());
            if n == 2 && processes_with(&m).len() == 2 {
                Ok(())
            } else {
                Err(format!("{n} pods, {} processes", processes_with(&m).len()))
            }
        }
    })
    .await;
    // Scale through the subresource.
    let (ok, out) = kubectl(&["scale", "deployment/web", "-n", "dep", "--replicas=3"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["rollout", "status", "deployment/web", "-n", "dep", "--timeout=60s"]);
    assert!(ok, "{out}");
    assert_eq!(processes_with(&marker).len(), 3);

    // A pod that has finished (restartPolicy Never) must not run again after a restart.
    assert_eq!(post(&c, "/api/v1/namespaces/dep/pods", pod("done-once", "echo ran-once", json!({"spec": {"restartPolicy": "Never"}}))).await.0, 201);
    let c2 = c.clone();
    until("done-once succeeded", 20, || {
        let c2 = c2.clone();
        async move {
            let (_, _, p) = raw(&c2, "GET", "/api/v1/namespaces/dep/pods/done-once", "", b"").await;
            if p["status"]["phase"] == "Succeeded" {
                Ok(())
            } else {
                Err(p["status"].to_string())
            }
        }
    })
    .await;

    // Killing the server (and its agent) kills every container; after a restart they run again.
    s.kill9();
    let gone = Instant::now() + Duration::from_secs(10);
    while !processes_with(&marker).is_empty() && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(processes_with(&marker).is_empty(), "containers outlived their agent");
    // What a crash leaves behind: the pods' tmpfs volumes, still mounted. Mark each; the
    // restarted agent must unmount and remove them before anything else, so the pods it
    // resumes get fresh ones and no mark survives.
    let pods_dir = std::fs::canonicalize(s.data_dir().join("agent/pods")).unwrap();
    let stale: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(pods_dir.to_str().unwrap()))
        .map(PathBuf::from)
        .collect();
    assert!(!stale.is_empty(), "a kill -9 leaves the pods' volumes mounted");
    for m in &stale {
        std::fs::write(m.join("left-by-the-crash"), "x").unwrap();
    }
    s.launch().await;
    let marks: Vec<PathBuf> = stale.iter().map(|m| m.join("left-by-the-crash")).collect();
    until("the crash's volumes cleaned up", 20, || {
        let left: Vec<String> = marks.iter().filter(|m| m.exists()).map(|m| m.display().to_string()).collect();
        async move {
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still there: {left:?}"))
            }
        }
    })
    .await;
    let m = marker.clone();
    until("containers restarted with the agent", 30, || {
        let m = m.clone();
        async move {
            if processes_with(&m).len() == 3 {
                Ok(())
            } else {
                Err(format!("{} processes", processes_with(&m).len()))
            }
        }
    })
    .await;
    // As after a node reboot: the cut-off run is a termination with reason Unknown, the restart
    // count carries on, and the finished pod stays finished.
    let c = s.client().await;
    let c2 = c.clone();
    until("restart counted", 20, || {
        let c2 = c2.clone();
        async move {
            let (_, _, pods) = raw(&c2, "GET", "/api/v1/namespaces/dep/pods?labelSelector=app%3Dweb", "", b"").await;
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let counted = items.iter().all(|p| {
                let cs = &p["status"]["containerStatuses"][0];
                cs["restartCount"].as_i64().unwrap_or(0) >= 1 && cs["lastState"]["terminated"]["reason"] == "Unknown"
            });
            if counted && !items.is_empty() {
                Ok(())
            } else {
                Err(format!("{items:?}"))
            }
        }
    })
    .await;
    let (_, _, once) = raw(&c, "GET", "/api/v1/namespaces/dep/pods/done-once", "", b"").await;
    assert_eq!(once["status"]["phase"], "Succeeded", "{}", once["status"]);
    assert_eq!(once["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(raw(&c, "DELETE", "/api/v1/namespaces/dep/pods/done-once", "", b"").await.0, 200);
    // A clean shutdown (SIGTERM) stops the containers and unmounts every pod volume: no
    // ServiceAccount token or Secret stays in memory after lockbox exits.
    assert!(std::fs::read_to_string("/proc/self/mounts").unwrap().contains(s.data_dir().to_str().unwrap()));
    s.terminate();
    assert!(processes_with(&marker).is_empty(), "containers outlived a clean shutdown");
    assert!(!std::fs::read_to_string("/proc/self/mounts").unwrap().contains(s.data_dir().to_str().unwrap()), "pod volumes still mounted");
    s.launch().await;
    let c = s.client().await;
    // Deleting the deployment leaves no pod and no process.
    assert_eq!(raw(&c, "DELETE", "/apis/apps/v1/namespaces/dep/deployments/web", "", b"").await.0, 200);
    let c2 = c.clone();
    let m = marker.clone();
    until("no pods and no processes", 30, || {
        let (c2, m) = (c2.clone(), m.clone());
        async move {
            let (_, _, pods) = raw(&c2, "GET", "/api/v1/namespaces/dep/pods", "", b"").await;
            let n = pods["items"].as_array().map_or(0, |a| a.len());
            if n == 0 && processes_with(&m).is_empty() {
                Ok(())
            } else {
                Err(format!("{n} pods, {} processes", processes_with(&m).len()))
            }
        }
    })
    .await;
}

#[tokio::test]
async fn the_mounted_token_carries_exactly_the_service_accounts_rbac() {
    let s = Server::start().await;
    let c = s.client().await;
    setup(&c, "rbac").await;
    for n in ["allowed", "denied"] {
        assert_eq!(post(&c, "/api/v1/namespaces/rbac/secrets", json!({"metadata": {"name": n}, "stringData": {"k": "v"}})).await.0, 201);
    }
    assert_eq!(post(&c, "/api/v1/namespaces/rbac/serviceaccounts", json!({"metadata": {"name": "reader"}})).await.0, 201);
    assert_eq!(
        post(
            &c,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/rbac/roles",
            json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["allowed"], "verbs": ["get"]}]})
        )
        .await
        .0,
        201
    );
    assert_eq!(post(&c, "/apis/rbac.authorization.k8s.io/v1/namespaces/rbac/rolebindings", json!({"metadata": {"name": "r"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "reader"}]})).await.0, 201);
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "for n in allowed denied; do echo \"$n=$(curl -s -o /dev/null -w '%{{http_code}}' --cacert {sa}/ca.crt -H \"Authorization: Bearer $(cat {sa}/token)\" https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat {sa}/namespace)/secrets/$n)\"; done; sleep 3600"
    );
    let p = pod("incluster", &script, json!({"spec": {"serviceAccountName": "reader"}}));
    assert_eq!(post(&c, "/api/v1/namespaces/rbac/pods", p).await.0, 201);
    let c2 = c.clone();
    until("in-pod client results", 30, || {
        let c2 = c2.clone();
        async move {
            let l = logs(&c2, "rbac", "incluster").await;
            if l.contains("denied=") {
                Ok(())
            } else {
                Err(l)
            }
        }
    })
    .await;
    let l = logs(&c, "rbac", "incluster").await;
    assert!(l.contains("allowed=200") && l.contains("denied=403"), "{l}");
    // The pod spec shows the injected projected volume, as in Kubernetes.
    let (_, _, pod) = raw(&c, "GET", "/api/v1/namespaces/rbac/pods/incluster", "", b"").await;
    assert!(pod["spec"]["volumes"][0]["name"].as_str().unwrap().starts_with("kube-api-access-"), "{pod}");
}

async fn container_status(c: &kube::Client, ns: &str, pod: &str) -> Value {
    let (_, _, p) = raw(c, "GET", &format!("/api/v1/namespaces/{ns}/pods/{pod}"), "", b"").await;
    p["status"]["containerStatuses"][0].clone()
}

#[tokio::test]
async fn lifecycle_reasons_back_off_and_delete_propagation() {
    let s = Server::start().await;
    let c = s.client().await;
    setup(&c, "life").await;
    // No command: a clear reason instead of a pulled image's entrypoint.
    let nocmd = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nocmd"}, "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}});
    assert_eq!(post(&c, "/api/v1/namespaces/life/pods", nocmd).await.0, 201);
    // A crashing container restarts with back-off; --previous shows the last run.
    assert_eq!(post(&c, "/api/v1/namespaces/life/pods", pod("crash", "echo crashed-once; exit 7", json!({}))).await.0, 201);
    // Never: a finished container leaves the pod Succeeded.
    assert_eq!(post(&c, "/api/v1/namespaces/life/pods", pod("once", "echo done", json!({"spec": {"restartPolicy": "Never"}}))).await.0, 201);
    let c2 = c.clone();
    until("reasons", 30, || {
        let c2 = c2.clone();
        async move {
            let n = container_status(&c2, "life", "nocmd").await;
            let k = container_status(&c2, "life", "crash").await;
            let (_, _, once) = raw(&c2, "GET", "/api/v1/namespaces/life/pods/once", "", b"").await;
            let ok = n["state"]["waiting"]["reason"] == "CreateContainerError"
                && n["state"]["waiting"]["message"].as_str().unwrap_or_default().contains("set `command`")
                && k["restartCount"].as_i64().unwrap_or(0) >= 1
                && k["lastState"]["terminated"]["exitCode"] == 7
                && once["status"]["phase"] == "Succeeded"
                && once["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed";
            if ok {
                Ok(())
            } else {
                Err(format!("{n}\n{k}\n{}", once["status"]))
            }
        }
    })
    .await;
    let pods = Api::<Pod>::namespaced(c.clone(), "life");
    let prev = pods.logs("crash", &LogParams { previous: true, ..Default::default() }).await.unwrap();
    assert_eq!(prev, "crashed-once\n");
    // The kubelet's getPhase: a container restarting after it ran keeps the pod Running.
    assert_eq!(pods.get("crash").await.unwrap().status.unwrap().phase.as_deref(), Some("Running"));
    // Logs of a container that never started, and of a run before the first: the kubelet's
    // words, as a BadRequest Status.
    for (name, previous, want) in [
        ("nocmd", false, "container \"main\" in pod \"nocmd\" is waiting to start: CreateContainerError"),
        ("once", true, "previous terminated container \"main\" in pod \"once\" not found"),
    ] {
        match pods.logs(name, &LogParams { previous, ..Default::default() }).await {
            Err(kube::Error::Api(e)) => assert_eq!((e.code, e.message.as_str()), (400, want)),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Following the log of a container that has exited ends.
    let followed = tokio::time::timeout(std::time::Duration::from_secs(10), pods.logs("once", &LogParams { follow: true, ..Default::default() })).await;
    assert_eq!(followed.expect("follow of an exited container ends").unwrap(), "done\n");

    // Delete propagation: Orphan keeps the ReplicaSet, Foreground removes dependents first.
    let dep = |name: &str, strategy: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {"replicas": 1, "strategy": {"type": strategy},
            "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}}})
    };
    for (name, strategy) in [("orphaned", "RollingUpdate"), ("fg", "Recreate")] {
        assert_eq!(post(&c, "/apis/apps/v1/namespaces/life/deployments", dep(name, strategy)).await.0, 201);
    }
    let c2 = c.clone();
    until("both deployments available", 30, || {
        let c2 = c2.clone();
        async move {
            let mut ready = 0;
            for n in ["orphaned", "fg"] {
                let (_, _, d) = raw(&c2, "GET", &format!("/apis/apps/v1/namespaces/life/deployments/{n}"), "", b"").await;
                if d["status"]["availableReplicas"] == 1 {
                    ready += 1;
                }
            }
            if ready == 2 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        }
    })
    .await;
    // Recreate rolls too.
    raw(
        &c,
        "PATCH",
        "/apis/apps/v1/namespaces/life/deployments/fg",
        "application/strategic-merge-patch+json",
        br#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"now"}}}}}"#,
    )
    .await;
    let c2 = c.clone();
    until("recreate rollout", 30, || {
        let c2 = c2.clone();
        async move {
            let (_, _, d) = raw(&c2, "GET", "/apis/apps/v1/namespaces/life/deployments/fg", "", b"").await;
            let st = &d["status"];
            if d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
                && st["updatedReplicas"] == 1
                && st["availableReplicas"] == 1
                && st["replicas"] == 1
            {
                Ok(())
            } else {
                Err(d["status"].to_string())
            }
        }
    })
    .await;
    let (code, _, _) = raw(&c, "DELETE", "/apis/apps/v1/namespaces/life/deployments/orphaned", "application/json", br#"{"propagationPolicy":"Orphan"}"#).await;
    assert_eq!(code, 200);
    let c2 = c.clone();
    until("orphaned replicaset keeps running without an owner", 30, || {
        let c2 = c2.clone();
        async move {
            let gone = raw(&c2, "GET", "/apis/apps/v1/namespaces/life/deployments/orphaned", "", b"").await.0 == 404;
            let (_, _, rs) = raw(&c2, "GET", "/apis/apps/v1/namespaces/life/replicasets?labelSelector=app%3Dorphaned", "", b"").await;
            let items = rs["items"].as_array().cloned().unwrap_or_default();
            let free = items.len() == 1 && items[0]["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty());
            if gone && free {
                Ok(())
            } else {
                Err(format!("gone={gone} {rs}"))
            }
        }
    })
    .await;
    let (code, _, d) = raw(&c, "DELETE", "/apis/apps/v1/namespaces/life/deployments/fg", "application/json", br#"{"propagationPolicy":"Foreground"}"#).await;
    assert_eq!(code, 200, "{d}");
    assert!(d["metadata"]["finalizers"].as_array().unwrap().iter().any(|f| f == "foregroundDeletion"));
    let c2 = c.clone();
    until("foreground deletion finishes", 30, || {
        let c2 = c2.clone();
        async move {
            let gone = raw(&c2, "GET", "/apis/apps/v1/namespaces/life/deployments/fg", "", b"").await.0 == 404;
            let (_, _, pods) = raw(&c2, "GET", "/api/v1/namespaces/life/pods?labelSelector=app%3Dfg", "", b"").await;
            if gone && pods["items"].as_array().is_some_and(|a| a.is_empty()) {
                Ok(())
            } else {
                Err(format!("gone={gone}"))
            }
        }
    })
    .await;
}

async fn revision(c: &kube::Client, ns: &str, name: &str) -> (String, Value) {
    let (_, _, d) = raw(c, "GET", &format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"), "", b"").await;
    (d["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().unwrap_or_default().to_string(), d)
}

#[tokio::test]
async fn reload_on_change_rolls_once_for_referenced_keys_only() {
    let s = Server::start().await;
    let c = s.client().await;
    setup(&c, "rl").await;
    assert_eq!(post(&c, "/api/v1/namespaces/rl/configmaps", json!({"metadata": {"name": "cfg"}, "data": {"A": "0", "B": "unused"}})).await.0, 201);
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "rl"}}, "template": {"metadata": {"labels": {"app": "rl"}}, "spec": {"terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo A=$A; sleep 3600"],
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "A"}}}]}]}}}});
    assert_eq!(post(&c, "/apis/apps/v1/namespaces/rl/deployments", dep).await.0, 201);
    let c2 = c.clone();
    until("deployment available and its hash recorded", 30, || {
        let c2 = c2.clone();
        async move {
            let (rev, d) = revision(&c2, "rl", "app").await;
            if rev == "1" && d["status"]["availableReplicas"] == 1 && d["metadata"]["annotations"]["lockbox.dev/config-hash"].is_string() {
                Ok(())
            } else {
                Err(d["status"].to_string())
            }
        }
    })
    .await;
    let patch_cm = |body: String| {
        let c = c.clone();
        async move { raw(&c, "PATCH", "/api/v1/namespaces/rl/configmaps/cfg", "application/merge-patch+json", body.as_bytes()).await.0 }
    };
    // An unreferenced key changes nothing.
    assert_eq!(patch_cm(r#"{"data":{"B":"changed"}}"#.into()).await, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(revision(&c, "rl", "app").await.0, "1");
    // Ten quick edits of the referenced key: one rollout, with the last value.
    for i in 1..=10 {
        assert_eq!(patch_cm(format!(r#"{{"data":{{"A":"{i}"}}}}"#)).await, 200);
    }
    let c2 = c.clone();
    until("one rollout with the new value", 30, || {
        let c2 = c2.clone();
        async move {
            let (rev, d) = revision(&c2, "rl", "app").await;
            let (_, _, pods) = raw(&c2, "GET", "/api/v1/namespaces/rl/pods", "", b"").await;
            let names: Vec<String> = pods["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .map(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string())
                .collect();
            let mut latest = false;
            for n in &names {
                latest |= logs(&c2, "rl", n).await.contains("A=10");
            }
            if rev == "2" && d["status"]["updatedReplicas"] == 1 && latest {
                Ok(())
            } else {
                Err(format!("revision {rev} {}", d["status"]))
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(revision(&c, "rl", "app").await.0, "2", "ten edits, one rollout");
    // Paused: no rollout until resumed.
    raw(&c, "PATCH", "/apis/apps/v1/namespaces/rl/deployments/app", "application/merge-patch+json", br#"{"spec":{"paused":true}}"#).await;
    assert_eq!(patch_cm(r#"{"data":{"A":"paused-edit"}}"#.into()).await, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(revision(&c, "rl", "app").await.0, "2", "a paused deployment is not rolled");
    raw(&c, "PATCH", "/apis/apps/v1/namespaces/rl/deployments/app", "application/merge-patch+json", br#"{"spec":{"paused":false}}"#).await;
    let c2 = c.clone();
    until("rolled after resume", 30, || {
        let c2 = c2.clone();
        async move {
            if revision(&c2, "rl", "app").await.0 == "3" {
                Ok(())
            } else {
                Err("not yet".into())
            }
        }
    })
    .await;
}

/// `kubectl exec -it POD -- sh`: the shell owns its terminal (no "Cannot set tty process
/// group"), and its exit code comes back in the status; and a container given only `args`
/// (what `kubectl run NAME -- CMD` sends) runs them.
#[tokio::test]
async fn exec_with_a_tty_and_args_only_containers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start().await;
    let c = s.client().await;
    setup(&c, "tty").await;
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "args-only"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox", "args": ["sleep", "300"]}]}});
    assert_eq!(post(&c, "/api/v1/namespaces/tty/pods", p).await.0, 201);
    let pods: Api<Pod> = Api::namespaced(c.clone(), "tty");
    let c2 = c.clone();
    until("args-only pod running", 20, || {
        let c2 = c2.clone();
        async move {
            let (_, _, p) = raw(&c2, "GET", "/api/v1/namespaces/tty/pods/args-only", "", b"").await;
            if p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true {
                Ok(())
            } else {
                Err(p["status"].to_string())
            }
        }
    })
    .await;
    let mut proc = pods.exec("args-only", ["sh"], &kube::api::AttachParams::interactive_tty()).await.unwrap();
    let mut stdin = proc.stdin().unwrap();
    let mut stdout = proc.stdout().unwrap();
    let status = proc.take_status().unwrap();
    stdin.write_all(b"echo tty-ok; exit 7\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stdout.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("tty-ok") && !out.contains("Cannot set tty process group"), "{out}");
    let status = tokio::time::timeout(Duration::from_secs(10), status).await.unwrap().unwrap();
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"), "{status:?}");
    let code = status.details.and_then(|d| d.causes).unwrap_or_default().into_iter().find(|c| c.reason.as_deref() == Some("ExitCode")).and_then(|c| c.message);
    assert_eq!(code.as_deref(), Some("7"));
}

/// A Deployment adopts the ReplicaSet an orphaning delete left behind; a rollout that makes no
/// progress for progressDeadlineSeconds is reported as failed (ProgressDeadlineExceeded).
#[tokio::test]
async fn adoption_and_progress_deadline() {
    let s = Server::start().await;
    let c = s.client().await;
    setup(&c, "adopt").await;
    let dep = |name: &str, script: &str, deadline: i64| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {"replicas": 1, "progressDeadlineSeconds": deadline,
            "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}}}})
    };
    assert_eq!(post(&c, "/apis/apps/v1/namespaces/adopt/deployments", dep("kept", "sleep 300", 600)).await.0, 201);
    let rs_of = |c: kube::Client| async move {
        let (_, _, l) = raw(&c, "GET", "/apis/apps/v1/namespaces/adopt/replicasets?labelSelector=app%3Dkept", "", b"").await;
        l["items"].as_array().cloned().unwrap_or_default()
    };
    let c2 = c.clone();
    until("first replicaset", 20, || {
        let c2 = c2.clone();
        async move {
            if rs_of(c2).await.len() == 1 {
                Ok(())
            } else {
                Err("none yet".into())
            }
        }
    })
    .await;
    let first = rs_of(c.clone()).await[0]["metadata"]["name"].as_str().unwrap().to_string();
    let (code, _, _) = raw(&c, "DELETE", "/apis/apps/v1/namespaces/adopt/deployments/kept", "application/json", br#"{"propagationPolicy":"Orphan"}"#).await;
    assert_eq!(code, 200);
    let c2 = c.clone();
    until("deployment gone, replicaset orphaned", 20, || {
        let c2 = c2.clone();
        async move {
            let gone = raw(&c2, "GET", "/apis/apps/v1/namespaces/adopt/deployments/kept", "", b"").await.0 == 404;
            let sets = rs_of(c2).await;
            if gone && sets.len() == 1 && sets[0]["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()) {
                Ok(())
            } else {
                Err("not yet".into())
            }
        }
    })
    .await;
    let (_, created) = post(&c, "/apis/apps/v1/namespaces/adopt/deployments", dep("kept", "sleep 300", 600)).await;
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let c2 = c.clone();
    until("the orphan is adopted, not replaced", 20, || {
        let (c2, uid, first) = (c2.clone(), uid.clone(), first.clone());
        async move {
            let sets = rs_of(c2).await;
            let adopted = sets.len() == 1 && sets[0]["metadata"]["name"] == first.as_str() && sets[0]["metadata"]["ownerReferences"][0]["uid"] == uid.as_str();
            if adopted {
                Ok(())
            } else {
                Err(format!("{sets:?}"))
            }
        }
    })
    .await;

    assert_eq!(post(&c, "/apis/apps/v1/namespaces/adopt/deployments", dep("stuck", "exit 1", 3)).await.0, 201);
    let c2 = c.clone();
    until("progress deadline exceeded", 30, || {
        let c2 = c2.clone();
        async move {
            let (_, _, d) = raw(&c2, "GET", "/apis/apps/v1/namespaces/adopt/deployments/stuck", "", b"").await;
            let p = d["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Progressing").cloned().unwrap_or_default();
            if p["status"] == "False" && p["reason"] == "ProgressDeadlineExceeded" {
                Ok(())
            } else {
                Err(p.to_string())
            }
        }
    })
    .await;
}
