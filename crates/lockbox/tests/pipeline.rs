//! The request pipeline end to end: what the per-kind table routes and refuses, the one verb
//! rule authorization and serving share, and status writes through the kinds' status
//! strategies (with the real kubectl where a user would use it).

mod common;

use serde_json::{json, Value};

use common::{post, raw, Server};

fn kubectl(s: &Server, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("kubectl").args(args).env("KUBECONFIG", s.kubeconfig()).env("KUBECACHEDIR", s.dir.path().join("kc")).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {"replicas": 0,
        "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}}})
}

#[tokio::test]
async fn status_writes_go_through_the_status_strategy() {
    let s = Server::start().await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "st"}})).await.0, 201);
    assert_eq!(post(&c, "/apis/apps/v1/namespaces/st/deployments", deployment("web")).await.0, 201);
    let path = "/apis/apps/v1/namespaces/st/deployments/web/status";

    // kubectl replace --subresource=status with a status of the wrong types is refused, and
    // nothing of it is stored.
    let bad = s.dir.path().join("bad-status.json");
    let mut body = deployment("web");
    body["metadata"]["namespace"] = json!("st");
    body["status"] = json!({"replicas": "many", "bogus": {"x": 1}});
    std::fs::write(&bad, body.to_string()).unwrap();
    let (ok, out) = kubectl(&s, &["replace", "--subresource=status", "-f", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("cannot be handled as a Deployment"), "{out}");
    let (_, _, stored) = raw(&c, "GET", path, "", b"").await;
    assert!(stored["status"]["replicas"].is_i64() || stored["status"]["replicas"].is_null(), "{}", stored["status"]);
    assert!(stored["status"].get("bogus").is_none(), "{}", stored["status"]);

    // An unknown status field alone: kubectl validates strictly (400); without strictness it
    // is dropped with a warning.
    body["status"] = json!({"replicas": 0, "bogus": 1});
    std::fs::write(&bad, body.to_string()).unwrap();
    let (ok, out) = kubectl(&s, &["replace", "--subresource=status", "-f", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("unknown field \"status.bogus\""), "{out}");
    let (code, warnings, _) = raw(&c, "PUT", path, "application/json", body.to_string().as_bytes()).await;
    assert_eq!(code, 200);
    assert!(warnings.iter().any(|w| w.contains("unknown field \\\"status.bogus\\\"")), "{warnings:?}");

    // The kind's status validation (ValidateDeploymentStatus), as kube-apiserver words it.
    body["status"] = json!({"replicas": -1, "readyReplicas": 2, "availableReplicas": 3});
    let (code, _, e) = raw(&c, "PUT", path, "application/json", body.to_string().as_bytes()).await;
    assert_eq!((code, e["reason"].as_str()), (422, Some("Invalid")), "{e}");
    let msg = e["message"].as_str().unwrap();
    for want in [
        "status.replicas: Invalid value: -1: must be greater than or equal to 0",
        "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas",
        "status.availableReplicas: Invalid value: 3: cannot be greater than readyReplicas",
    ] {
        assert!(msg.contains(want), "{want:?} in {msg}");
    }

    // A resourceVersion in the body is a precondition.
    body["status"] = json!({"replicas": 0});
    body["metadata"]["resourceVersion"] = json!("1");
    let (code, _, e) = raw(&c, "PUT", path, "application/json", body.to_string().as_bytes()).await;
    assert_eq!((code, e["reason"].as_str()), (409, Some("Conflict")), "{e}");

    // Only the status changes through /status: a spec in the body is ignored.
    let (code, _, patched) = raw(&c, "PATCH", path, "application/merge-patch+json", br#"{"spec":{"replicas":7},"status":{"observedGeneration":1}}"#).await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["spec"]["replicas"], 0);
    assert_eq!(patched["status"]["observedGeneration"], 1);

    // Server-side apply to /status records ownership of the status, under `status`.
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 9},
        "status": {"conditions": [{"type": "Tested", "status": "True"}]}});
    let (code, _, obj) =
        raw(&c, "PATCH", &format!("{path}?fieldManager=tester&force=true"), "application/apply-patch+yaml", applied.to_string().as_bytes()).await;
    assert_eq!(code, 200, "{obj}");
    assert_eq!(obj["spec"]["replicas"], 0, "apply to status leaves the spec");
    assert!(obj["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Tested"), "{}", obj["status"]);
    let entry = obj["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "tester").cloned().unwrap_or_else(|| panic!("{obj}"));
    assert_eq!((entry["operation"].as_str(), entry["subresource"].as_str()), (Some("Apply"), Some("status")), "{entry}");
    assert!(entry["fieldsV1"]["f:status"]["f:conditions"].is_object(), "{entry}");
    assert!(entry["fieldsV1"].get("f:spec").is_none(), "{entry}");
    // An update through /status is recorded under `status` too.
    let (_, _, obj) =
        raw(&c, "PATCH", &format!("{path}?fieldManager=patcher"), "application/merge-patch+json", br#"{"status":{"observedGeneration":2}}"#).await;
    let entry = obj["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "patcher").cloned().unwrap_or_else(|| panic!("{obj}"));
    assert_eq!((entry["operation"].as_str(), entry["subresource"].as_str()), (Some("Update"), Some("status")), "{entry}");
}

#[tokio::test]
async fn the_table_routes_and_refuses() {
    let s = Server::start().await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "rt"}})).await.0, 201);
    assert_eq!(post(&c, "/api/v1/namespaces/rt/configmaps", json!({"metadata": {"name": "a"}, "data": {"k": "v"}})).await.0, 201);
    // A subresource the kind does not have is not found; one it has, with a method it does not
    // serve, is not allowed.
    let (code, _, _) = raw(&c, "GET", "/api/v1/namespaces/rt/configmaps/a/status", "", b"").await;
    assert_eq!(code, 404);
    let (code, _, _) = raw(&c, "GET", "/api/v1/namespaces/rt/pods/p/binding", "", b"").await;
    assert_eq!(code, 405);
    let (code, _, _) = raw(&c, "DELETE", "/apis/apps/v1/namespaces/rt/deployments/d/status", "", b"").await;
    assert_eq!(code, 405);
    // Namespaces have no deletecollection.
    let (code, _, e) = raw(&c, "DELETE", "/api/v1/namespaces", "", b"").await;
    assert_eq!(code, 405, "{e}");
    // A computed kind answers create only.
    let (code, _, _) = raw(&c, "GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "", b"").await;
    assert_eq!(code, 405);
    // Discovery lists exactly the subresources routing serves.
    let (_, _, core) = raw(&c, "GET", "/api/v1", "", b"").await;
    let names: Vec<&str> = core["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).filter(|n| n.contains('/')).collect();
    assert_eq!(
        names,
        [
            "namespaces/finalize",
            "namespaces/status",
            "serviceaccounts/token",
            "pods/attach",
            "pods/binding",
            "pods/exec",
            "pods/log",
            "pods/status",
            "nodes/status"
        ]
    );
    for sub in names {
        let (resource, sub) = sub.split_once('/').unwrap();
        let path = if resource == "namespaces" || resource == "nodes" {
            format!("/api/v1/{resource}/x/{sub}")
        } else {
            format!("/api/v1/namespaces/rt/{resource}/x/{sub}")
        };
        let (_, _, e) = raw(&c, "PATCH", &path, "application/merge-patch+json", b"{}").await;
        assert_ne!(e["message"], "the server could not find the requested resource", "{path} is routed");
    }

    // `?watch=yes` is a watch, for authorization and serving alike (apimachinery's boolean
    // conversion): the answer is a stream of events, not a list.
    let req = http::Request::builder().uri("/api/v1/namespaces/rt/configmaps?watch=yes").body(kube::client::Body::empty()).unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), http_body_util::BodyExt::frame(&mut body)).await.expect("an event").unwrap().unwrap();
    let event: Value = serde_json::from_slice(first.data_ref().unwrap().trim_ascii_end()).unwrap();
    assert_eq!((event["type"].as_str(), event["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("a")), "{event}");
    let (_, _, list) = raw(&c, "GET", "/api/v1/namespaces/rt/configmaps?watch=false", "", b"").await;
    assert_eq!(list["kind"], "ConfigMapList");
}
