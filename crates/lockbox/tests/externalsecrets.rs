//! External secrets against real providers: OpenBao (KV v2, token auth) and the fake provider.
//! Sync, rotation at the source, errors that keep the last good Secret, and ESO's manifests.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use common::{post, raw, until, Server};

fn decode(v: &Value) -> String {
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap_or_default()).unwrap_or_default()
}

fn bao(addr: &str, args: &[&str]) {
    let out = Command::new(common::peers_venv().join("bin/bao")).args(args).env("BAO_ADDR", addr).env("BAO_TOKEN", "root").output().unwrap();
    assert!(out.status.success(), "bao {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn openbao_values_reach_the_secret_and_follow_rotation() {
    let (_bao, addr) = common::openbao().await;
    bao(&addr, &["kv", "put", "secret/app/db", "username=app", "password=first-password-1"]);
    let s = Server::start().await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "eso"}})).await.0, 201);
    assert_eq!(post(&c, "/api/v1/namespaces/eso/secrets", json!({"metadata": {"name": "vault-token"}, "stringData": {"token": "root"}})).await.0, 201);
    // ESO's documented shapes, unchanged.
    let store = json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "vault-backend"},
        "spec": {"provider": {"vault": {"server": addr, "path": "secret", "version": "v2", "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}}}}}});
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/eso/secretstores", store).await.0, 201);
    let es = json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "db"},
        "spec": {"refreshInterval": "1s", "secretStoreRef": {"name": "vault-backend", "kind": "SecretStore"},
            "target": {"name": "db-credentials", "creationPolicy": "Owner"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}}],
            "dataFrom": [{"extract": {"key": "app/db"}}]}});
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/eso/externalsecrets", es).await.0, 201);
    let cc = c.clone();
    until("synced", 20, async || {
        let (_, _, sec) = raw(&cc, "GET", "/api/v1/namespaces/eso/secrets/db-credentials", "", b"").await;
        if decode(&sec["data"]["password"]) == "first-password-1" && decode(&sec["data"]["username"]) == "app" {
            Ok(())
        } else {
            Err(sec.to_string())
        }
    })
    .await;
    let (_, _, es) = raw(&c, "GET", "/apis/external-secrets.io/v1/namespaces/eso/externalsecrets/db", "", b"").await;
    assert_eq!(es["status"]["conditions"][0]["reason"], "SecretSynced");
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/eso/secrets/db-credentials", "", b"").await;
    assert_eq!(sec["metadata"]["ownerReferences"][0]["kind"], "ExternalSecret");
    // Rotation at the source arrives within refreshInterval plus a second.
    bao(&addr, &["kv", "put", "secret/app/db", "username=app", "password=second-password-2"]);
    let start = Instant::now();
    let cc = c.clone();
    until("rotated", 10, async || {
        let (_, _, sec) = raw(&cc, "GET", "/api/v1/namespaces/eso/secrets/db-credentials", "", b"").await;
        if decode(&sec["data"]["password"]) == "second-password-2" {
            Ok(())
        } else {
            Err("old value".into())
        }
    })
    .await;
    assert!(start.elapsed() < Duration::from_secs(3), "rotation took {:?}", start.elapsed());
    // A missing key: SecretSyncedError, the last good Secret kept, no value in the message.
    raw(
        &c,
        "PATCH",
        "/apis/external-secrets.io/v1/namespaces/eso/externalsecrets/db",
        "application/merge-patch+json",
        br#"{"spec":{"data":[{"secretKey":"password","remoteRef":{"key":"app/missing","property":"password"}}]}}"#,
    )
    .await;
    let cc = c.clone();
    until("error condition", 10, async || {
        let (_, _, es) = raw(&cc, "GET", "/apis/external-secrets.io/v1/namespaces/eso/externalsecrets/db", "", b"").await;
        if es["status"]["conditions"][0]["reason"] == "SecretSyncedError" {
            Ok(())
        } else {
            Err(es["status"].to_string())
        }
    })
    .await;
    let (_, _, es) = raw(&c, "GET", "/apis/external-secrets.io/v1/namespaces/eso/externalsecrets/db", "", b"").await;
    let msg = es["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(msg.contains("Secret does not exist: app/missing"), "{msg}");
    assert!(!msg.contains("second-password-2"));
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/eso/secrets/db-credentials", "", b"").await;
    assert_eq!(decode(&sec["data"]["password"]), "second-password-2", "the last good Secret stays");
    let (_, _, events) = raw(&c, "GET", "/api/v1/namespaces/eso/events?fieldSelector=involvedObject.name%3Ddb", "", b"").await;
    assert!(events["items"].as_array().unwrap().iter().any(|e| e["reason"] == "UpdateFailed"), "{events}");
    // Tables: ESO's columns.
    let req = http::Request::get("/apis/external-secrets.io/v1/namespaces/eso/externalsecrets")
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(vec![])
        .unwrap();
    let table: Value = c.request(req).await.unwrap();
    let cols: Vec<&str> = table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["Name", "Store", "Refresh Interval", "Status", "Ready"]);
    assert!(!std::fs::read_to_string(&s.log).unwrap().contains("second-password-2"));
}

#[tokio::test]
async fn fake_provider_and_creation_policies() {
    let s = Server::start().await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "fake"}})).await.0, 201);
    let store = json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "fake"},
        "spec": {"provider": {"fake": {"data": [{"key": "/api/key", "value": "static-value"}, {"key": "/json", "value": "{\"a\":\"1\",\"b\":\"2\"}"}]}}}});
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/clustersecretstores", store).await.0, 201);
    assert_eq!(post(&c, "/api/v1/namespaces/fake/secrets", json!({"metadata": {"name": "existing"}, "stringData": {"keep": "me"}})).await.0, 201);
    let es = |name: &str, target: &str, policy: &str| {
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": name},
            "spec": {"refreshInterval": "0", "secretStoreRef": {"name": "fake", "kind": "ClusterSecretStore"}, "target": {"name": target, "creationPolicy": policy},
                "data": [{"secretKey": "key", "remoteRef": {"key": "/api/key"}}], "dataFrom": [{"extract": {"key": "/json"}}]}})
    };
    for (name, target, policy) in [("owned", "owned", "Owner"), ("merged", "existing", "Merge"), ("orphan", "orphan", "Orphan")] {
        assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/fake/externalsecrets", es(name, target, policy)).await.0, 201);
    }
    let cc = c.clone();
    until("fake synced", 20, async || {
        let (_, _, owned) = raw(&cc, "GET", "/api/v1/namespaces/fake/secrets/owned", "", b"").await;
        let (_, _, merged) = raw(&cc, "GET", "/api/v1/namespaces/fake/secrets/existing", "", b"").await;
        let (_, _, orphan) = raw(&cc, "GET", "/api/v1/namespaces/fake/secrets/orphan", "", b"").await;
        let ok = decode(&owned["data"]["key"]) == "static-value"
            && decode(&owned["data"]["a"]) == "1"
            && decode(&merged["data"]["keep"]) == "me"
            && decode(&merged["data"]["b"]) == "2"
            && decode(&orphan["data"]["key"]) == "static-value"
            && orphan["metadata"]["ownerReferences"].is_null();
        if ok {
            Ok(())
        } else {
            Err(format!("{owned}\n{merged}\n{orphan}"))
        }
    })
    .await;
    // Owner: the Secret goes with its ExternalSecret.
    assert_eq!(raw(&c, "DELETE", "/apis/external-secrets.io/v1/namespaces/fake/externalsecrets/owned", "", b"").await.0, 200);
    let cc = c.clone();
    until("owned secret collected", 20, async || {
        if raw(&cc, "GET", "/api/v1/namespaces/fake/secrets/owned", "", b"").await.0 == 404 {
            Ok(())
        } else {
            Err("still there".into())
        }
    })
    .await;
}

/// Runs a boto3 snippet against moto (the real AWS client library, so moto sees what AWS would).
fn boto(endpoint: &str, code: &str) {
    let script = format!(
        "import boto3\nsm = boto3.client('secretsmanager', endpoint_url='{endpoint}', region_name='eu-west-1', aws_access_key_id='AKIDTEST', aws_secret_access_key='test-secret')\n{code}\n"
    );
    let out = Command::new(common::peers_venv().join("bin/python")).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn aws_secrets_manager_via_moto() {
    let (_moto, endpoint) = common::moto().await;
    boto(
        &endpoint,
        r#"sm.create_secret(Name='prod/db', SecretString='{"user":"app","pass":"aws-pass-1","nested":{"port":5432}}', Tags=[{'Key':'team','Value':'payments'}])
sm.create_secret(Name='prod/api-key', SecretString='aws-api-key-1', Tags=[{'Key':'team','Value':'payments'}])
sm.create_secret(Name='other/thing', SecretString='not-mine', Tags=[{'Key':'team','Value':'search'}])"#,
    );
    let s = Server::start_with_env(&[], &[("AWS_ENDPOINT_URL", &endpoint)]).await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "aws"}})).await.0, 201);
    assert_eq!(
        post(
            &c,
            "/api/v1/namespaces/aws/secrets",
            json!({"metadata": {"name": "awssm-secret"}, "stringData": {"access-key": "AKIDTEST", "secret-access-key": "test-secret"}})
        )
        .await
        .0,
        201
    );
    let store = json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "aws"},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1", "auth": {"secretRef": {
            "accessKeyIDSecretRef": {"name": "awssm-secret", "key": "access-key"}, "secretAccessKeySecretRef": {"name": "awssm-secret", "key": "secret-access-key"}}}}}}});
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/aws/secretstores", store).await.0, 201);
    let es = json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "db"},
        "spec": {"refreshInterval": "1s", "secretStoreRef": {"name": "aws", "kind": "SecretStore"}, "target": {"name": "db"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "prod/db", "property": "pass"}},
                     {"secretKey": "port", "remoteRef": {"key": "prod/db", "property": "nested.port"}}],
            "dataFrom": [{"find": {"name": {"regexp": "^prod/"}, "tags": {"team": "payments"}}}]}});
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/aws/externalsecrets", es).await.0, 201);
    let cc = c.clone();
    until("aws synced", 30, async || {
        let (_, _, sec) = raw(&cc, "GET", "/api/v1/namespaces/aws/secrets/db", "", b"").await;
        let d = &sec["data"];
        if decode(&d["password"]) == "aws-pass-1" && decode(&d["port"]) == "5432" && decode(&d["prod_api-key"]) == "aws-api-key-1" && d["prod_db"].is_string() {
            Ok(())
        } else {
            Err(sec.to_string())
        }
    })
    .await;
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/aws/secrets/db", "", b"").await;
    assert!(sec["data"]["other_thing"].is_null(), "find must honour the regexp and the tags: {sec}");
    // Rotation in Secrets Manager (a new AWSCURRENT version) reaches the Secret.
    boto(&endpoint, r#"sm.put_secret_value(SecretId='prod/db', SecretString='{"user":"app","pass":"aws-pass-2","nested":{"port":5432}}')"#);
    let cc = c.clone();
    until("aws rotated", 15, async || {
        let (_, _, sec) = raw(&cc, "GET", "/api/v1/namespaces/aws/secrets/db", "", b"").await;
        if decode(&sec["data"]["password"]) == "aws-pass-2" {
            Ok(())
        } else {
            Err("old value".into())
        }
    })
    .await;
    // A missing secret: SecretSyncedError naming the key, the last good values kept.
    raw(
        &c,
        "PATCH",
        "/apis/external-secrets.io/v1/namespaces/aws/externalsecrets/db",
        "application/merge-patch+json",
        br#"{"spec":{"data":[{"secretKey":"password","remoteRef":{"key":"prod/missing"}}]}}"#,
    )
    .await;
    let cc = c.clone();
    until("aws error condition", 15, async || {
        let (_, _, es) = raw(&cc, "GET", "/apis/external-secrets.io/v1/namespaces/aws/externalsecrets/db", "", b"").await;
        let msg = es["status"]["conditions"][0]["message"].as_str().unwrap_or_default().to_string();
        if es["status"]["conditions"][0]["reason"] == "SecretSyncedError" && msg.contains("prod/missing") {
            Ok(())
        } else {
            Err(es["status"].to_string())
        }
    })
    .await;
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/aws/secrets/db", "", b"").await;
    assert_eq!(decode(&sec["data"]["password"]), "aws-pass-2");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(!log.contains("aws-pass-2") && !log.contains("test-secret"), "no secret value in the log");
}

#[tokio::test]
async fn templates_and_deletion_policies() {
    let s = Server::start().await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "tpl"}})).await.0, 201);
    let store = |data: Value| json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "fake"}, "spec": {"provider": {"fake": {"data": data}}}});
    let both = json!([{"key": "db", "value": "{\"user\":\"app\",\"pass\":\"tpl-pass-1\"}"}, {"key": "extra", "value": "extra-value"}]);
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/tpl/secretstores", store(both)).await.0, 201);
    let es = |name: &str, deletion: &str, template: Value| {
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": name},
            "spec": {"refreshInterval": "1s", "secretStoreRef": {"name": "fake", "kind": "SecretStore"},
                "target": {"name": name, "deletionPolicy": deletion, "template": template},
                "data": [{"secretKey": "extra", "remoteRef": {"key": "extra"}}], "dataFrom": [{"extract": {"key": "db"}}]}})
    };
    let template = json!({"type": "kubernetes.io/basic-auth", "metadata": {"labels": {"app": "web"}, "annotations": {"team": "payments"}},
        "data": {"dsn": "postgres://{{ .user }}:{{ .pass | upper }}@db:5432/app", "username": "{{ .user }}", "password": "{{ .pass }}"}});
    for (name, deletion, t) in [("templated", "Retain", template), ("deleted", "Delete", json!({})), ("merged", "Merge", json!({}))] {
        assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/tpl/externalsecrets", es(name, deletion, t)).await.0, 201);
    }
    let cc = c.clone();
    until("templated", 20, async || {
        let (_, _, sec) = raw(&cc, "GET", "/api/v1/namespaces/tpl/secrets/templated", "", b"").await;
        let (_, _, merged) = raw(&cc, "GET", "/api/v1/namespaces/tpl/secrets/merged", "", b"").await;
        if decode(&sec["data"]["dsn"]) == "postgres://app:TPL-PASS-1@db:5432/app" && decode(&merged["data"]["extra"]) == "extra-value" {
            Ok(())
        } else {
            Err(format!("{sec}\n{merged}"))
        }
    })
    .await;
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/tpl/secrets/templated", "", b"").await;
    assert_eq!(sec["type"], "kubernetes.io/basic-auth");
    assert_eq!(sec["metadata"]["labels"]["app"], "web");
    assert_eq!(sec["metadata"]["annotations"]["team"], "payments");
    let keys: Vec<&String> = sec["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["dsn", "password", "username"], "mergePolicy Replace keeps only the templated keys");
    // "extra" disappears at the source: Merge drops the key, Retain keeps the last good Secret and reports.
    let only_db = json!([{"key": "db", "value": "{\"user\":\"app\",\"pass\":\"tpl-pass-1\"}"}]);
    raw(
        &c,
        "PATCH",
        "/apis/external-secrets.io/v1/namespaces/tpl/secretstores/fake",
        "application/merge-patch+json",
        json!({"spec": {"provider": {"fake": {"data": only_db}}}}).to_string().as_bytes(),
    )
    .await;
    let cc = c.clone();
    until("merge drops the key", 20, async || {
        let (_, _, merged) = raw(&cc, "GET", "/api/v1/namespaces/tpl/secrets/merged", "", b"").await;
        let (_, _, es) = raw(&cc, "GET", "/apis/external-secrets.io/v1/namespaces/tpl/externalsecrets/templated", "", b"").await;
        if merged["data"]["extra"].is_null() && decode(&merged["data"]["user"]) == "app" && es["status"]["conditions"][0]["reason"] == "SecretSyncedError" {
            Ok(())
        } else {
            Err(format!("{merged}\n{}", es["status"]))
        }
    })
    .await;
    assert_eq!(raw(&c, "GET", "/api/v1/namespaces/tpl/secrets/templated", "", b"").await.0, 200, "Retain keeps the Secret");
    // Everything gone at the source: Delete removes the Secret.
    raw(
        &c,
        "PATCH",
        "/apis/external-secrets.io/v1/namespaces/tpl/secretstores/fake",
        "application/merge-patch+json",
        br#"{"spec":{"provider":{"fake":{"data":[]}}}}"#,
    )
    .await;
    let cc = c.clone();
    until("delete policy removes the secret", 20, async || {
        if raw(&cc, "GET", "/api/v1/namespaces/tpl/secrets/deleted", "", b"").await.0 == 404 {
            Ok(())
        } else {
            Err("still there".into())
        }
    })
    .await;
    // A broken template: an error condition naming the key, never a value.
    raw(
        &c,
        "PATCH",
        "/apis/external-secrets.io/v1/namespaces/tpl/externalsecrets/merged",
        "application/merge-patch+json",
        br#"{"spec":{"target":{"deletionPolicy":"Retain","template":{"data":{"broken":"{{ .user "}}}}}"#,
    )
    .await;
    raw(&c, "PATCH", "/apis/external-secrets.io/v1/namespaces/tpl/secretstores/fake", "application/merge-patch+json", json!({"spec": {"provider": {"fake": {"data": [{"key": "db", "value": "{\"user\":\"app\",\"pass\":\"tpl-pass-1\"}"}, {"key": "extra", "value": "x"}]}}}}).to_string().as_bytes()).await;
    let cc = c.clone();
    until("template error", 20, async || {
        let (_, _, es) = raw(&cc, "GET", "/apis/external-secrets.io/v1/namespaces/tpl/externalsecrets/merged", "", b"").await;
        let msg = es["status"]["conditions"][0]["message"].as_str().unwrap_or_default();
        if msg.contains("template \"broken\"") && !msg.contains("tpl-pass-1") {
            Ok(())
        } else {
            Err(es["status"].to_string())
        }
    })
    .await;
}

#[tokio::test]
async fn cluster_external_secret_fans_out_to_selected_namespaces() {
    let s = Server::start().await;
    let c = s.client().await;
    for (ns, team) in [("ces-a", "x"), ("ces-b", "x"), ("ces-c", "y")] {
        assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": ns, "labels": {"team": team}}})).await.0, 201);
    }
    let store = json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "fake"},
        "spec": {"provider": {"fake": {"data": [{"key": "shared", "value": "shared-value"}]}}}});
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/clustersecretstores", store).await.0, 201);
    let ces = json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret", "metadata": {"name": "shared"},
        "spec": {"externalSecretName": "shared-es", "externalSecretMetadata": {"labels": {"from": "ces"}},
            "namespaceSelectors": [{"matchLabels": {"team": "x"}}],
            "externalSecretSpec": {"refreshInterval": "1s", "secretStoreRef": {"name": "fake", "kind": "ClusterSecretStore"},
                "target": {"name": "shared"}, "data": [{"secretKey": "v", "remoteRef": {"key": "shared"}}]}}});
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/clusterexternalsecrets", ces).await.0, 201);
    let present = |ns: &'static str| {
        let c = c.clone();
        async move { raw(&c, "GET", &format!("/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets/shared-es"), "", b"").await.0 == 200 }
    };
    let cc = c.clone();
    until("fanned out to team x", 20, async || {
        let (_, _, sec) = raw(&cc, "GET", "/api/v1/namespaces/ces-b/secrets/shared", "", b"").await;
        let (_, _, ces) = raw(&cc, "GET", "/apis/external-secrets.io/v1/clusterexternalsecrets/shared", "", b"").await;
        if decode(&sec["data"]["v"]) == "shared-value" && ces["status"]["provisionedNamespaces"] == json!(["ces-a", "ces-b"]) {
            Ok(())
        } else {
            Err(format!("{sec}\n{}", ces["status"]))
        }
    })
    .await;
    assert!(!present("ces-c").await, "team y is not selected");
    let (_, _, es) = raw(&c, "GET", "/apis/external-secrets.io/v1/namespaces/ces-a/externalsecrets/shared-es", "", b"").await;
    assert_eq!(es["metadata"]["labels"]["from"], "ces");
    assert_eq!(es["metadata"]["ownerReferences"][0]["kind"], "ClusterExternalSecret");
    // Relabelling moves the ExternalSecret: into ces-c, out of ces-b.
    raw(&c, "PATCH", "/api/v1/namespaces/ces-c", "application/merge-patch+json", br#"{"metadata":{"labels":{"team":"x"}}}"#).await;
    raw(&c, "PATCH", "/api/v1/namespaces/ces-b", "application/merge-patch+json", br#"{"metadata":{"labels":{"team":"y"}}}"#).await;
    until("follows the labels", 20, async || if present("ces-c").await && !present("ces-b").await { Ok(()) } else { Err("not yet".into()) }).await;
    // Deleting the ClusterExternalSecret removes what it made.
    assert_eq!(raw(&c, "DELETE", "/apis/external-secrets.io/v1/clusterexternalsecrets/shared", "", b"").await.0, 200);
    until("removed with its owner", 20, async || if !present("ces-a").await && !present("ces-c").await { Ok(()) } else { Err("still there".into()) }).await;
}

#[tokio::test]
async fn provider_down_bad_credentials_and_malformed_json_are_reported() {
    let (_bao, addr) = common::openbao().await;
    bao(&addr, &["kv", "put", "secret/app/raw", "value=not-json-value-1"]);
    let s = Server::start().await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "errs"}})).await.0, 201);
    assert_eq!(post(&c, "/api/v1/namespaces/errs/secrets", json!({"metadata": {"name": "good"}, "stringData": {"token": "root"}})).await.0, 201);
    assert_eq!(post(&c, "/api/v1/namespaces/errs/secrets", json!({"metadata": {"name": "bad"}, "stringData": {"token": "wrong-token"}})).await.0, 201);
    let down = format!("http://127.0.0.1:{}", common::free_port());
    let stores = [("down", down.as_str(), "good"), ("badcreds", addr.as_str(), "bad")];
    for (name, server, token) in stores {
        let store = json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": name},
            "spec": {"provider": {"vault": {"server": server, "path": "secret", "version": "v2", "auth": {"tokenSecretRef": {"name": token, "key": "token"}}}}}});
        assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/errs/secretstores", store).await.0, 201);
    }
    let fake = json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "fake"},
        "spec": {"provider": {"fake": {"data": [{"key": "raw", "value": "plain-text-value-2"}]}}}});
    assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/errs/secretstores", fake).await.0, 201);
    let es = |name: &str, store: &str, key: &str, extract: bool| {
        let mut spec = json!({"refreshInterval": "1s", "secretStoreRef": {"name": store, "kind": "SecretStore"}, "target": {"name": name}});
        if extract {
            spec["dataFrom"] = json!([{"extract": {"key": key}}]);
        } else {
            spec["data"] = json!([{"secretKey": "v", "remoteRef": {"key": key, "property": "value"}}]);
        }
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": name}, "spec": spec})
    };
    for (name, store, key, extract) in [("down", "down", "app/raw", false), ("badcreds", "badcreds", "app/raw", false), ("malformed", "fake", "raw", true)] {
        assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/errs/externalsecrets", es(name, store, key, extract)).await.0, 201);
    }
    for (name, expected) in [("down", "cannot reach the vault server"), ("badcreds", "permission denied"), ("malformed", "not a JSON object")] {
        let cc = c.clone();
        until(name, 20, async || {
            let (_, _, es) = raw(&cc, "GET", &format!("/apis/external-secrets.io/v1/namespaces/errs/externalsecrets/{name}"), "", b"").await;
            let cond = &es["status"]["conditions"][0];
            let msg = cond["message"].as_str().unwrap_or_default();
            if cond["reason"] == "SecretSyncedError" && msg.contains(expected) {
                assert!(!msg.contains("not-json-value-1") && !msg.contains("plain-text-value-2") && !msg.contains("wrong-token"), "{msg}");
                Ok(())
            } else {
                Err(es["status"].to_string())
            }
        })
        .await;
        // The event follows the condition (two writes, as in ESO): wait for it too.
        until(&format!("{name}: UpdateFailed event"), 10, async || {
            let (_, _, events) = raw(&cc, "GET", &format!("/api/v1/namespaces/errs/events?fieldSelector=involvedObject.name%3D{name}"), "", b"").await;
            if events["items"].as_array().is_some_and(|items| items.iter().any(|e| e["reason"] == "UpdateFailed")) {
                Ok(())
            } else {
                Err(events.to_string())
            }
        })
        .await;
        assert_eq!(raw(&c, "GET", &format!("/api/v1/namespaces/errs/secrets/{name}"), "", b"").await.0, 404, "no Secret from a failed sync");
    }
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(!log.contains("not-json-value-1") && !log.contains("plain-text-value-2") && !log.contains("wrong-token"));
}

/// The ExternalSecret's Ready condition once it has the wanted reason.
async fn condition(c: &kube::Client, ns: &str, name: &str, reason: &str) -> Value {
    let mut found = Value::Null;
    until(name, 20, async || {
        let (_, _, es) = raw(c, "GET", &format!("/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets/{name}"), "", b"").await;
        found = es["status"]["conditions"][0].clone();
        if found["reason"] == reason {
            Ok(())
        } else {
            Err(es["status"].to_string())
        }
    })
    .await;
    found
}

#[tokio::test]
async fn openbao_kubernetes_auth_checks_the_service_account_through_token_review() {
    let (_bao, addr) = common::openbao().await;
    bao(&addr, &["kv", "put", "secret/app/k8s", "password=k8s-auth-value-1"]);
    let s = Server::start().await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "k8sauth"}})).await.0, 201);
    for sa in ["eso-reader", "intruder", "token-reviewer"] {
        assert_eq!(post(&c, "/api/v1/namespaces/k8sauth/serviceaccounts", json!({"metadata": {"name": sa}})).await.0, 201);
    }
    // OpenBao calls TokenReview as the reviewer, which holds system:auth-delegator.
    let crb = json!({"metadata": {"name": "bao-reviewer"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "token-reviewer", "namespace": "k8sauth"}]});
    assert_eq!(post(&c, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", crb).await.0, 201);
    let (code, tr) = post(&c, "/api/v1/namespaces/k8sauth/serviceaccounts/token-reviewer/token", json!({"spec": {"expirationSeconds": 3600}})).await;
    assert_eq!(code, 201, "{tr}");
    let reviewer_jwt = tr["status"]["token"].as_str().unwrap().to_string();
    let kc: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(s.kubeconfig()).unwrap()).unwrap();
    let host = kc["clusters"][0]["cluster"]["server"].as_str().unwrap().to_string();
    let ca = s.data_dir().join("pki/ca.crt");
    // OpenBao's kubernetes auth, configured as its documentation says.
    bao(&addr, &["auth", "enable", "kubernetes"]);
    bao(
        &addr,
        &[
            "write",
            "auth/kubernetes/config",
            &format!("kubernetes_host={host}"),
            &format!("kubernetes_ca_cert=@{}", ca.display()),
            &format!("token_reviewer_jwt={reviewer_jwt}"),
            "disable_local_ca_jwt=true",
        ],
    );
    let policy = s.dir.path().join("read-app.hcl");
    std::fs::write(&policy, "path \"secret/data/app/*\" { capabilities = [\"read\"] }\n").unwrap();
    bao(&addr, &["policy", "write", "read-app", &policy.display().to_string()]);
    bao(
        &addr,
        &[
            "write",
            "auth/kubernetes/role/eso",
            "bound_service_account_names=eso-reader",
            "bound_service_account_namespaces=k8sauth",
            "audience=vault",
            "token_policies=read-app",
            "token_ttl=10m",
        ],
    );
    for (store, sa) in [("openbao-k8s", "eso-reader"), ("openbao-intruder", "intruder")] {
        let spec = json!({"provider": {"vault": {"server": addr, "path": "secret", "version": "v2",
            "auth": {"kubernetes": {"mountPath": "kubernetes", "role": "eso", "serviceAccountRef": {"name": sa, "audiences": ["vault"]}}}}}});
        let body = json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": store}, "spec": spec});
        assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/k8sauth/secretstores", body).await.0, 201);
        let es = json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": store},
            "spec": {"refreshInterval": "1s", "secretStoreRef": {"name": store, "kind": "SecretStore"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "app/k8s", "property": "password"}}]}});
        assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/k8sauth/externalsecrets", es).await.0, 201);
    }
    condition(&c, "k8sauth", "openbao-k8s", "SecretSynced").await;
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/k8sauth/secrets/openbao-k8s", "", b"").await;
    assert_eq!(decode(&sec["data"]["password"]), "k8s-auth-value-1");
    // A service account the role does not bind is refused by OpenBao.
    let refused = condition(&c, "k8sauth", "openbao-intruder", "SecretSyncedError").await;
    assert!(refused["message"].as_str().unwrap().contains("kubernetes login with role \"eso\" failed"), "{refused}");
    assert_eq!(raw(&c, "GET", "/api/v1/namespaces/k8sauth/secrets/openbao-intruder", "", b"").await.0, 404);
    // Each sync logs in afresh; rotation arrives the same way.
    bao(&addr, &["kv", "put", "secret/app/k8s", "password=k8s-auth-value-2"]);
    let cc = c.clone();
    until("rotated through kubernetes auth", 10, async || {
        let (_, _, sec) = raw(&cc, "GET", "/api/v1/namespaces/k8sauth/secrets/openbao-k8s", "", b"").await;
        if decode(&sec["data"]["password"]) == "k8s-auth-value-2" {
            Ok(())
        } else {
            Err("old value".into())
        }
    })
    .await;
    // OpenBao really asks lockbox: without the reviewer's binding, TokenReview is forbidden and
    // every login fails.
    assert_eq!(raw(&c, "DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/bao-reviewer", "", b"").await.0, 200);
    let failed = condition(&c, "k8sauth", "openbao-k8s", "SecretSyncedError").await;
    assert!(failed["message"].as_str().unwrap().contains("kubernetes login"), "{failed}");
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/k8sauth/secrets/openbao-k8s", "", b"").await;
    assert_eq!(decode(&sec["data"]["password"]), "k8s-auth-value-2", "the last good Secret is kept");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(!log.contains("k8s-auth-value") && !log.contains(&reviewer_jwt));
}

/// A CA and a serving certificate for loopback, made by lockbox's own PKI module and written
/// to `dir`: (CA path, cert path, key path).
fn fixture_tls(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let pki = apiserver::pki::Pki::ensure(&dir.join("pki"), &[]).unwrap();
    let paths = (pki.dir.join("ca.crt"), dir.join("fixture.pem"), dir.join("fixture-key.pem"));
    std::fs::write(&paths.1, &pki.serving_cert_pem).unwrap();
    std::fs::write(&paths.2, &pki.serving_key_pem).unwrap();
    paths
}

#[tokio::test]
async fn azure_key_vault_against_the_documented_rest_api() {
    const TENANT: &str = "00000000-1111-2222-3333-444444444444";
    const CLIENT: &str = "lockbox-sp";
    const CLIENT_SECRET: &str = "sp-secret-value-1";
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/azure_keyvault.py");
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = fixture_tls(tmp.path());
    let port = common::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let mut child = Command::new("python3")
        .args([fixture, "serve", &port.to_string(), cert.to_str().unwrap(), key.to_str().unwrap(), TENANT, CLIENT, CLIENT_SECRET])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let _fixture = common::Peer(child);
    let kv = |args: &[&str]| -> String {
        let out = Command::new("python3")
            .arg(fixture)
            .arg(args[0])
            .args([&url, ca.to_str().unwrap(), TENANT, CLIENT, CLIENT_SECRET])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let v1 = kv(&["set", "db-creds", r#"{"user":"app","password":"azure-pass-1"}"#]);
    kv(&["set", "api-key", "azure-api-key-1", "team=payments"]);
    kv(&["set", "other-key", "azure-other-1", "team=search"]);
    let authority = format!("{url}/");
    let s = Server::start_with_env(&[], &[("SSL_CERT_FILE", ca.to_str().unwrap()), ("AZURE_AUTHORITY_HOST", &authority)]).await;
    let c = s.client().await;
    assert_eq!(post(&c, "/api/v1/namespaces", json!({"metadata": {"name": "azure"}})).await.0, 201);
    for (name, secret) in [("sp-good", CLIENT_SECRET), ("sp-bad", "wrong-sp-secret")] {
        let body = json!({"metadata": {"name": name}, "stringData": {"ClientID": CLIENT, "ClientSecret": secret}});
        assert_eq!(post(&c, "/api/v1/namespaces/azure/secrets", body).await.0, 201);
    }
    // ESO's documented SecretStore for Azure Key Vault with a service principal.
    for (store, creds) in [("azure-kv", "sp-good"), ("azure-kv-bad", "sp-bad")] {
        let spec = json!({"provider": {"azurekv": {"tenantId": TENANT, "vaultUrl": url, "authType": "ServicePrincipal",
            "authSecretRef": {"clientId": {"name": creds, "key": "ClientID"}, "clientSecret": {"name": creds, "key": "ClientSecret"}}}}});
        let body = json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": store}, "spec": spec});
        assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/azure/secretstores", body).await.0, 201);
    }
    let es = |name: &str, store: &str, spec: Value| {
        let mut spec = spec;
        spec["refreshInterval"] = json!("1s");
        spec["secretStoreRef"] = json!({"name": store, "kind": "SecretStore"});
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": name}, "spec": spec})
    };
    let manifests = [
        es(
            "db",
            "azure-kv",
            json!({"data": [{"secretKey": "password", "remoteRef": {"key": "secret/db-creds", "property": "password"}},
            {"secretKey": "pinned", "remoteRef": {"key": "db-creds", "property": "password", "version": v1}}],
            "dataFrom": [{"extract": {"key": "db-creds"}}]}),
        ),
        es("payments", "azure-kv", json!({"dataFrom": [{"find": {"tags": {"team": "payments"}}}]})),
        es("missing", "azure-kv", json!({"data": [{"secretKey": "x", "remoteRef": {"key": "no-such-secret"}}]})),
        es("badcreds", "azure-kv-bad", json!({"data": [{"secretKey": "x", "remoteRef": {"key": "api-key"}}]})),
    ];
    for m in manifests {
        assert_eq!(post(&c, "/apis/external-secrets.io/v1/namespaces/azure/externalsecrets", m).await.0, 201);
    }
    condition(&c, "azure", "db", "SecretSynced").await;
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/azure/secrets/db", "", b"").await;
    assert_eq!(decode(&sec["data"]["password"]), "azure-pass-1");
    assert_eq!(decode(&sec["data"]["user"]), "app");
    condition(&c, "azure", "payments", "SecretSynced").await;
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/azure/secrets/payments", "", b"").await;
    assert_eq!(sec["data"].as_object().unwrap().keys().collect::<Vec<_>>(), ["api-key"], "only the tagged secret");
    assert_eq!(decode(&sec["data"]["api-key"]), "azure-api-key-1");
    let missing = condition(&c, "azure", "missing", "SecretSyncedError").await;
    assert!(missing["message"].as_str().unwrap().contains("Secret does not exist: no-such-secret"), "{missing}");
    let bad = condition(&c, "azure", "badcreds", "SecretSyncedError").await;
    assert!(bad["message"].as_str().unwrap().contains("invalid_client"), "{bad}");
    // A new version at the source: the Secret follows; the pinned version does not.
    kv(&["set", "db-creds", r#"{"user":"app","password":"azure-pass-2"}"#]);
    let cc = c.clone();
    until("rotated", 10, async || {
        let (_, _, sec) = raw(&cc, "GET", "/api/v1/namespaces/azure/secrets/db", "", b"").await;
        if decode(&sec["data"]["password"]) == "azure-pass-2" {
            Ok(())
        } else {
            Err("old value".into())
        }
    })
    .await;
    let (_, _, sec) = raw(&c, "GET", "/api/v1/namespaces/azure/secrets/db", "", b"").await;
    assert_eq!(decode(&sec["data"]["pinned"]), "azure-pass-1");
    // Per-ExternalSecret and per-store metrics, with ESO's names where it has them.
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let metrics = c.request_text(req).await.unwrap();
    let value = |series: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value(r#"externalsecret_sync_calls_total{namespace="azure",name="db"}"#) >= 2.0);
    assert_eq!(value(r#"externalsecret_status_condition{namespace="azure",name="db",condition="Ready",status="True"}"#), 1.0);
    assert_eq!(value(r#"externalsecret_status_condition{namespace="azure",name="missing",condition="Ready",status="False"}"#), 1.0);
    assert!(value(r#"externalsecret_sync_calls_error_total{namespace="azure",name="badcreds"}"#) >= 1.0);
    assert!(value(r#"secretstore_sync_calls_total{kind="SecretStore",namespace="azure",name="azure-kv-bad",status="error"}"#) >= 1.0);
    assert!(value(r#"secretstore_sync_calls_total{kind="SecretStore",namespace="azure",name="azure-kv",status="success"}"#) >= 2.0);
    assert!(value(r#"externalsecret_provider_syncs_total{provider="azurekv",status="success"}"#) >= 2.0);
    assert!(!metrics.contains("azure-pass"));
    let log = std::fs::read_to_string(&s.log).unwrap();
    for value in ["azure-pass", "azure-api-key", CLIENT_SECRET, "wrong-sp-secret"] {
        assert!(!log.contains(value), "{value} in the log");
        assert!(!missing.to_string().contains(value) && !bad.to_string().contains(value));
    }
}
