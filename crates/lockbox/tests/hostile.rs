//! An attacker's inputs against a real `lockbox up` run under a memory cap: every answer is a
//! Kubernetes Status (or the success it asked for), none is a 5xx, each comes in bounded time,
//! the server never exits, and its peak memory stays bounded.

mod common;

use std::time::{Duration, Instant};

use common::{raw, Server};
use serde_json::{json, Value};

const JSON: &str = "application/json";
const NS: &str = "/api/v1/namespaces/hostile";
/// The address-space cap the server runs under (`prlimit --as`); glibc's per-thread arenas
/// are capped too, or they alone would reserve most of it.
const ADDRESS_SPACE: u64 = 4 << 30;
/// The peak resident memory allowed after every case has run.
const MAX_PEAK_RSS_KB: u64 = 1536 * 1024;

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap_or(0)
}

/// The billion laughs, as YAML anchors: nine levels of nine aliases each.
fn billion_laughs() -> String {
    let mut doc = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: laughs}\nlol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        doc.push_str(&format!("lol{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"));
    }
    doc
}

/// A JSON patch whose copies double an array each time (2 KB of patch, unbounded growth).
fn doubling_patch(copies: usize) -> Vec<u8> {
    let mut ops = vec![json!({"op": "add", "path": "/metadata/annotations", "value": {}}), json!({"op": "add", "path": "/x", "value": ["x".repeat(64)]})];
    for _ in 0..copies {
        ops.push(json!({"op": "copy", "from": "/x", "path": "/x/-"}));
        ops.push(json!({"op": "copy", "from": "/x", "path": "/y"}));
        ops.push(json!({"op": "move", "from": "/y", "path": "/x/-"}));
    }
    serde_json::to_vec(&ops).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), for the mutated protobuf bodies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A ConfigMap in protobuf (k8s\0 + runtime.Unknown), as kubectl 1.32 sends it.
fn protobuf_configmap() -> Vec<u8> {
    use prost::Message;
    let cm = k8s_pb::api::core::v1::ConfigMap {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta { name: Some("pb".into()), ..Default::default() }),
        data: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta { api_version: Some("v1".into()), kind: Some("ConfigMap".into()) }),
        raw: Some(cm.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Asserts an answer is what a Kubernetes client can read: below 500, and a Status if it is
/// an error.
fn well_formed(what: &str, code: u16, body: &Value) {
    assert!(code < 500, "{what}: {code} {body}");
    if code >= 400 {
        assert_eq!(body["kind"], "Status", "{what}: {code} {body}");
        assert_eq!(body["code"].as_u64(), Some(u64::from(code)), "{what}: {body}");
    }
}

#[tokio::test]
async fn hostile_input_gets_status_in_bounded_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "mallory-token,mallory,1001,\n").unwrap();
    let cap = format!("--as={ADDRESS_SPACE}");
    let mut s = Server::start_wrapped(&["prlimit", &cap, "--"], &["--token-auth-file", tokens.to_str().unwrap()], &[("MALLOC_ARENA_MAX", "2")]).await;
    let c = s.client().await;
    assert_eq!(raw(&c, "POST", "/api/v1/namespaces", JSON, br#"{"metadata":{"name":"hostile"}}"#).await.0, 201);
    assert_eq!(raw(&c, "POST", &format!("{NS}/configmaps"), JSON, br#"{"metadata":{"name":"target"},"data":{"a":"1"}}"#).await.0, 201);
    // mallory may edit in the namespace (admin there), but is not system:masters: escalation
    // checks apply to the Roles she writes.
    let binding = json!({"metadata": {"name": "mallory"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]});
    assert_eq!(common::post(&c, "/apis/rbac.authorization.k8s.io/v1/namespaces/hostile/rolebindings", binding).await.0, 201);
    let mallory = s.token_client("mallory-token").await;

    let deep_json = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let deep_yaml = |n: usize| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\nx: {}1{}\n", "{a: ".repeat(n), "}".repeat(n)).into_bytes();
    let big = |mb: usize| format!(r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#, "y".repeat(mb << 20)).into_bytes();
    let copies = |n: usize| format!("[{}]", vec![r#""x""#; n].join(","));
    let wide_role = json!({"metadata": {"name": "wide"}, "rules": [{
        "verbs": vec!["get"; 300], "apiGroups": vec![""; 300], "resources": vec!["secrets"; 300], "resourceNames": vec!["x"; 300]}]});
    let distinct = |p: &str| (0..300).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    let distinct_role = json!({"metadata": {"name": "distinct"}, "rules": [{
        "verbs": distinct("v"), "apiGroups": distinct("g"), "resources": distinct("r"), "resourceNames": distinct("n")}]});
    let _ = copies;
    let many_keys: serde_json::Map<String, Value> = (0..100_000).map(|i| (format!("k{i:06}"), json!("v"))).collect();
    let many = serde_json::to_vec(&json!({"metadata": {"name": "many"}, "data": many_keys})).unwrap();

    type Case = (&'static str, &'static str, String, &'static str, Vec<u8>);
    let mut cases: Vec<Case> = vec![
        ("doubling JSON patch, 25 copies", "PATCH", format!("{NS}/configmaps/target"), "application/json-patch+json", doubling_patch(25)),
        ("doubling JSON patch, 60 copies", "PATCH", format!("{NS}/configmaps/target"), "application/json-patch+json", doubling_patch(60)),
        ("10 MB body", "POST", format!("{NS}/configmaps"), JSON, big(10)),
        ("100 MB body", "POST", format!("{NS}/configmaps"), JSON, big(100)),
        ("billion laughs", "POST", format!("{NS}/configmaps"), "application/yaml", billion_laughs().into_bytes()),
        ("billion laughs applied", "PATCH", format!("{NS}/configmaps/laughs?fieldManager=m"), "application/apply-patch+yaml", billion_laughs().into_bytes()),
        ("JSON nested 10k", "POST", format!("{NS}/configmaps"), JSON, deep_json(10_000)),
        ("JSON nested 100k", "POST", format!("{NS}/configmaps"), JSON, deep_json(100_000)),
        ("YAML nested 10k", "POST", format!("{NS}/configmaps"), "application/yaml", deep_yaml(10_000)),
        ("YAML nested 100k", "POST", format!("{NS}/configmaps"), "application/yaml", deep_yaml(100_000)),
        ("YAML nested 100k applied", "PATCH", format!("{NS}/configmaps/deep?fieldManager=m"), "application/apply-patch+yaml", deep_yaml(100_000)),
        ("merge patch nested 100k", "PATCH", format!("{NS}/configmaps/target"), "application/merge-patch+json", deep_json(100_000)),
        ("NUL bytes in JSON", "POST", format!("{NS}/configmaps"), JSON, b"{\"metadata\":{\"name\":\"a\0b\"},\"data\":{\"k\0\":\"\0\"}}".to_vec()),
        ("invalid UTF-8 in JSON", "POST", format!("{NS}/configmaps"), JSON, b"{\"metadata\":{\"name\":\"\xff\xfe\"}}".to_vec()),
        ("invalid UTF-8 in YAML", "POST", format!("{NS}/configmaps"), "application/yaml", b"metadata:\n  name: \xc3\x28\n".to_vec()),
        ("NUL in a path", "GET", format!("{NS}/configmaps/a%00b"), "", vec![]),
        ("invalid UTF-8 in a path", "GET", format!("{NS}/configmaps/%ff%fe"), "", vec![]),
        ("dot-dot in a path", "GET", "/api/v1/namespaces/hostile/configmaps/../../secrets".into(), "", vec![]),
        ("encoded dot-dot in a path", "GET", "/api/v1/namespaces/%2e%2e/secrets/%2e%2e".into(), "", vec![]),
        ("double slashes", "GET", "/api//v1//namespaces//hostile//configmaps".into(), "", vec![]),
        ("non-ASCII field selector", "GET", "/api/v1/configmaps?fieldSelector=metadata.name%3D%C3%BF".into(), "", vec![]),
        ("non-ASCII label selector", "GET", "/api/v1/configmaps?labelSelector=%C3%BF%3D%C3%BF".into(), "", vec![]),
        ("invalid UTF-8 in a selector", "GET", "/api/v1/configmaps?fieldSelector=metadata.name%3D%FF".into(), "", vec![]),
        ("TokenRequest body that is an array", "POST", format!("{NS}/serviceaccounts/default/token"), JSON, b"[]".to_vec()),
        ("TokenRequest spec that is a number", "POST", format!("{NS}/serviceaccounts/default/token"), JSON, br#"{"spec":1}"#.to_vec()),
        ("ExternalSecret target that is a string", "POST", "/apis/external-secrets.io/v1/namespaces/hostile/externalsecrets".into(), JSON,
            br#"{"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{"name":"e"},"spec":{"target":"x"}}"#.to_vec()),
        ("ExternalSecret with an absurd refresh", "POST", "/apis/external-secrets.io/v1/namespaces/hostile/externalsecrets".into(), JSON,
            br#"{"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{"name":"r"},"spec":{"refreshInterval":"99999999999999999999h","secretStoreRef":{"name":"s"}}}"#.to_vec()),
        ("status that is a string", "PUT", format!("{NS}/pods/p/status"), JSON, br#"{"metadata":{"name":"p"},"status":"x"}"#.to_vec()),
        ("Deployment status of the wrong types", "PUT", "/apis/apps/v1/namespaces/hostile/deployments/d/status".into(), JSON,
            br#"{"metadata":{"name":"d"},"status":{"replicas":"many","bogus":{"x":1}}}"#.to_vec()),
        ("scale past int32", "PATCH", "/apis/apps/v1/namespaces/hostile/deployments/d/scale".into(), "application/merge-patch+json", br#"{"spec":{"replicas":3000000000}}"#.to_vec()),
        ("volume path that escapes", "POST", format!("{NS}/pods"), JSON,
            br#"{"metadata":{"name":"escape"},"spec":{"containers":[{"name":"c","image":"i"}],"volumes":[{"name":"v","secret":{"secretName":"s","items":[{"key":"k","path":"/etc/cron.d/x"}]}}]}}"#.to_vec()),
        ("100,000 keys", "POST", format!("{NS}/configmaps"), JSON, many),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pb = protobuf_configmap();
    for i in 0..300 {
        let mut m = pb.clone();
        for _ in 0..1 + i % 4 {
            let at = 4 + (rng.next() as usize) % (m.len() - 4);
            match rng.next() % 3 {
                0 => m[at] ^= 1 << (rng.next() % 8),
                1 => m[at] = rng.next() as u8,
                _ => m.insert(at, rng.next() as u8),
            }
        }
        cases.push(("mutated protobuf", "POST", format!("{NS}/configmaps?dryRun=All"), "application/vnd.kubernetes.protobuf", m));
    }
    // A Deployment and a pod to hang the status and scale cases on.
    let dep = json!({"metadata": {"name": "d"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    assert_eq!(common::post(&c, "/apis/apps/v1/namespaces/hostile/deployments", dep).await.0, 201);

    for (what, method, path, ct, body) in cases {
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(60), raw(&c, method, &path, ct, &body)).await;
        let (code, _, v) = answer.unwrap_or_else(|_| panic!("{what}: no answer within 60 s"));
        well_formed(what, code, &v);
        let limit = if what == "100,000 keys" { 30 } else { 10 };
        assert!(started.elapsed() < Duration::from_secs(limit), "{what}: {:?}", started.elapsed());
        if what != "mutated protobuf" {
            eprintln!("{what}: {code} in {:?}", started.elapsed());
        }
    }
    // Kubernetes' answers where it has one.
    let (code, _, v) = raw(&c, "PATCH", &format!("{NS}/configmaps/target"), "application/json-patch+json", &doubling_patch(60)).await;
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")), "{v}");
    let (code, _, v) = raw(&c, "POST", &format!("{NS}/configmaps"), JSON, &big(10)).await;
    assert_eq!((code, v["message"].as_str()), (413, Some("Request entity too large: limit is 3145728")));
    let (code, _, v) = raw(&c, "GET", "/api/v1/configmaps?fieldSelector=metadata.name%3D%C3%BF", "", b"").await;
    assert_eq!((code, v["items"].as_array().map(Vec::len)), (200, Some(0)));
    let (code, _, _) =
        raw(&c, "PUT", "/apis/apps/v1/namespaces/hostile/deployments/d/status", JSON, br#"{"metadata":{"name":"d"},"status":{"replicas":"many"}}"#).await;
    assert_eq!(code, 400, "a status of the wrong type is refused, as kube-apiserver refuses it");
    let (code, _, v) = raw(&c, "POST", &format!("{NS}/pods"), JSON,
        br#"{"metadata":{"name":"escape"},"spec":{"containers":[{"name":"c","image":"i"}],"volumes":[{"name":"v","secret":{"secretName":"s","items":[{"key":"k","path":"../../x"}]}}]}}"#).await;
    assert_eq!(code, 422);
    assert!(v["message"].as_str().unwrap().contains("spec.volumes[0].secret.items[0].path: Invalid value: \"../../x\": must not contain '..'"), "{v}");

    // Escalation checks on Roles that multiply to billions of permissions: answered at once.
    for (what, role) in [("300 copies in each list", wide_role), ("300 distinct values in each list", distinct_role)] {
        let started = Instant::now();
        let (code, v) = common::post(&mallory, "/apis/rbac.authorization.k8s.io/v1/namespaces/hostile/roles", role).await;
        well_formed(what, code, &v);
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: {:?}", started.elapsed());
        eprintln!("Role with {what}: {code} in {:?}", started.elapsed());
    }

    // Over HTTP/2, a body over the limit gets its 413 too, not a reset stream.
    let kc: Value = serde_norway::from_str(&std::fs::read_to_string(s.kubeconfig()).unwrap()).unwrap();
    let b64 = |v: &Value| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.as_str().unwrap()).unwrap();
    let user = &kc["users"][0]["user"];
    let (cert, key, ca, body) = (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("ca.pem"), dir.path().join("big.json"));
    std::fs::write(&cert, b64(&user["client-certificate-data"])).unwrap();
    std::fs::write(&key, b64(&user["client-key-data"])).unwrap();
    std::fs::write(&ca, b64(&kc["clusters"][0]["cluster"]["certificate-authority-data"])).unwrap();
    std::fs::write(&body, big(10)).unwrap();
    let server = kc["clusters"][0]["cluster"]["server"].as_str().unwrap().to_string();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&ca)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .args(["-w", "\n%{http_version} %{http_code}", &format!("{server}{NS}/configmaps")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("2 413"), "h2: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(r#""reason":"RequestEntityTooLarge""#), "{text}");

    // Still up, still answering, in bounded memory, and no panic on the way.
    assert!(s.alive(), "the server exited:\n{}", std::fs::read_to_string(&s.log).unwrap());
    assert_eq!(raw(&c, "GET", "/readyz", "", b"").await.0, 200);
    let peak = peak_rss_kb(s.pid().unwrap());
    eprintln!("peak RSS {} MiB under a {} GiB address-space cap", peak / 1024, ADDRESS_SPACE >> 30);
    assert!(peak < MAX_PEAK_RSS_KB, "peak RSS {peak} kB");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    s.stop();
}

#[tokio::test]
async fn concurrent_patches_without_preconditions_never_conflict() {
    let s = Server::start().await;
    let c = s.client().await;
    assert_eq!(raw(&c, "POST", "/api/v1/namespaces", JSON, br#"{"metadata":{"name":"race"}}"#).await.0, 201);
    assert_eq!(raw(&c, "POST", "/api/v1/namespaces/race/configmaps", JSON, br#"{"metadata":{"name":"hot"},"data":{}}"#).await.0, 201);
    let patchers = 16;
    let each = 20;
    let mut tasks = Vec::new();
    for p in 0..patchers {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..each {
                let (ct, body) = match i % 3 {
                    0 => ("application/merge-patch+json", json!({"data": {format!("p{p}-{i}"): "v"}}).to_string()),
                    1 => ("application/strategic-merge-patch+json", json!({"data": {format!("p{p}-{i}"): "v"}}).to_string()),
                    _ => ("application/json-patch+json", json!([{"op": "add", "path": format!("/data/p{p}-{i}"), "value": "v"}]).to_string()),
                };
                let (code, _, v) = raw(&c, "PATCH", "/api/v1/namespaces/race/configmaps/hot", ct, body.as_bytes()).await;
                if code != 200 {
                    failures.push(format!("{code} {}", v["message"]));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(failures.is_empty(), "{} of {} patches failed: {:?}", failures.len(), patchers * each, &failures[..failures.len().min(5)]);
    let (_, _, hot) = raw(&c, "GET", "/api/v1/namespaces/race/configmaps/hot", "", b"").await;
    assert_eq!(hot["data"].as_object().unwrap().len(), patchers * each, "every patch applied");
    // An explicit precondition still conflicts.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "data": {"late": "v"}}).to_string();
    assert_eq!(raw(&c, "PATCH", "/api/v1/namespaces/race/configmaps/hot", "application/merge-patch+json", stale.as_bytes()).await.0, 409);
}

#[tokio::test]
async fn no_core_dumps_unless_allowed() {
    let limits = |s: &Server| {
        let text = std::fs::read_to_string(format!("/proc/{}/limits", s.pid().unwrap())).unwrap();
        let core = text.lines().find(|l| l.starts_with("Max core file size")).unwrap().split_whitespace().skip(4).take(2).collect::<Vec<_>>().join(" ");
        let files: u64 = text.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().nth(3).unwrap().parse().unwrap();
        (core, files)
    };
    let mut hard = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    let mut s = Server::start().await;
    let (core, files) = limits(&s);
    assert_eq!(core, "0 0", "RLIMIT_CORE soft and hard");
    assert_eq!(files, hard.rlim_max, "the open-files soft limit is raised to the hard one");
    s.stop();
    // The opt-out leaves the inherited core limit alone (unlimited is what a debugger sets).
    let mut s = Server::start_wrapped(&["prlimit", "--core=unlimited", "--"], &["--allow-core-dumps"], &[]).await;
    assert_eq!(limits(&s).0, "unlimited unlimited");
    s.stop();
}

#[tokio::test]
async fn a_deployment_whose_replicaset_name_is_too_long_reports_it_with_back_off() {
    let s = Server::start().await;
    let c = s.client().await;
    let name = "d".repeat(253);
    let dep = json!({"metadata": {"name": name}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    assert_eq!(common::post(&c, "/apis/apps/v1/namespaces/default/deployments", dep).await.0, 201);
    let path = format!("/apis/apps/v1/namespaces/default/deployments/{name}");
    let c2 = c.clone();
    common::until("ReplicaSetCreateError", 20, || {
        let (c2, path, name) = (c2.clone(), path.clone(), name.clone());
        async move {
            let (_, _, d) = raw(&c2, "GET", &path, "", b"").await;
            let conds = d["status"]["conditions"].as_array().cloned().unwrap_or_default();
            match conds.iter().find(|c| c["type"] == "Progressing") {
                Some(p) if p["reason"] == "ReplicaSetCreateError" && p["status"] == "False" => {
                    let m = p["message"].as_str().unwrap_or_default();
                    if m.starts_with(&format!("Failed to create new replica set \"{name}-")) {
                        Ok(())
                    } else {
                        Err(m.to_string())
                    }
                }
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let failures = || async {
        let (_, _, ev) = raw(&c, "GET", "/api/v1/namespaces/default/events", "", b"").await;
        ev["items"].as_array().unwrap().iter().filter(|e| e["reason"] == "ReplicaSetCreateError").count()
    };
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = failures().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = failures().await;
    assert!(before >= 1, "a Warning event says why");
    assert!(after - before <= 1, "back-off: {} failures in 10 s, after {before} in the first 12 s", after - before);
}
