//! Identity and least privilege against a real `lockbox up`: a generated RBAC matrix checked
//! against an oracle written independently of the evaluator, name-restricted lists and watches,
//! escalation, impersonation, tokens of every kind, and the audit trail.

mod common;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::{post, raw, Server};

const TOKENS: &str =
    "alice-token,alice,1001\nbob-token,bob,1002\ncarol-token,carol,1003\ndave-token,dave,1004,\"team-a\"\neve-token,eve,1005\nlimited-token,limited,1006\n";

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).unwrap();
    let s = Server::start_with(&["--token-auth-file", tokens.to_str().unwrap()]).await;
    std::mem::forget(dir); // the file must outlive the server's start
    s
}

/// The cluster used by the matrix: every grant below, written as objects.
async fn setup(admin: &kube::Client) {
    for ns in ["m1", "m2"] {
        assert_eq!(post(admin, "/api/v1/namespaces", json!({"metadata": {"name": ns}})).await.0, 201);
    }
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let objs = [
        (
            format!("{rbac}/namespaces/m1/roles"),
            json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]}),
        ),
        (
            format!("{rbac}/namespaces/m1/rolebindings"),
            json!({"metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}, "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "team-a"}]}),
        ),
        (
            format!("{rbac}/namespaces/m1/roles"),
            json!({"metadata": {"name": "one-secret"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"], "verbs": ["get", "list", "watch"]}]}),
        ),
        (
            format!("{rbac}/namespaces/m1/rolebindings"),
            json!({"metadata": {"name": "one-secret"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-secret"}, "subjects": [{"kind": "ServiceAccount", "name": "app"}]}),
        ),
        (
            format!("{rbac}/clusterroles"),
            json!({"metadata": {"name": "secret-writer"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "update", "delete"]}]}),
        ),
        (
            format!("{rbac}/clusterrolebindings"),
            json!({"metadata": {"name": "bob-writes"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-writer"}, "subjects": [{"kind": "User", "name": "bob"}]}),
        ),
        (
            format!("{rbac}/clusterroles"),
            json!({"metadata": {"name": "cm-admin"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}),
        ),
        (
            format!("{rbac}/namespaces/m2/rolebindings"),
            json!({"metadata": {"name": "carol-cm"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-admin"}, "subjects": [{"kind": "User", "name": "carol"}]}),
        ),
        ("/api/v1/namespaces/m1/serviceaccounts".to_string(), json!({"metadata": {"name": "app"}})),
    ];
    for (path, body) in objs {
        let (code, v) = post(admin, &path, body).await;
        assert_eq!(code, 201, "{path}: {v}");
    }
}

/// The oracle: the grants of `setup`, restated as plain data (not through the evaluator).
struct Grant {
    who: fn(&str) -> bool,
    namespace: Option<&'static str>,
    verbs: &'static [&'static str],
    resource: &'static str,
    names: &'static [&'static str],
}

fn grants() -> Vec<Grant> {
    vec![
        Grant { who: |s| s == "alice" || s == "dave", namespace: Some("m1"), verbs: &["get", "list", "watch"], resource: "configmaps", names: &[] },
        Grant { who: |s| s == "sa:m1:app", namespace: Some("m1"), verbs: &["get", "list", "watch"], resource: "secrets", names: &["s1"] },
        Grant { who: |s| s == "bob", namespace: None, verbs: &["create", "update", "delete"], resource: "secrets", names: &[] },
        Grant {
            who: |s| s == "carol",
            namespace: Some("m2"),
            verbs: &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"],
            resource: "configmaps",
            names: &[],
        },
    ]
}

fn expected(subject: &str, verb: &str, resource: &str, name: &str, ns: &str) -> bool {
    grants().iter().any(|g| {
        (g.who)(subject)
            && g.namespace.is_none_or(|n| n == ns)
            && g.verbs.contains(&verb)
            && g.resource == resource
            && (g.names.is_empty() || g.names.contains(&name))
    })
}

fn user_of(subject: &str) -> (String, Vec<String>) {
    match subject {
        "dave" => ("dave".into(), vec!["team-a".into(), "system:authenticated".into()]),
        s if s.starts_with("sa:") => {
            let p: Vec<&str> = s.split(':').collect();
            (
                format!("system:serviceaccount:{}:{}", p[1], p[2]),
                vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{}", p[1]), "system:authenticated".into()],
            )
        }
        s => (s.into(), vec!["system:authenticated".into()]),
    }
}

#[tokio::test]
async fn rbac_matrix_matches_an_independent_oracle() {
    let s = server().await;
    let admin = s.client().await;
    setup(&admin).await;
    let subjects = ["alice", "bob", "carol", "dave", "eve", "sa:m1:app"];
    let verbs = ["get", "list", "watch", "create", "update", "delete"];
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for subject in subjects {
        let (user, groups) = user_of(subject);
        for verb in verbs {
            for resource in ["configmaps", "secrets"] {
                for name in ["", "s1", "s2"] {
                    for ns in ["m1", "m2"] {
                        let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
                            "user": user, "groups": groups, "resourceAttributes": {"namespace": ns, "verb": verb, "resource": resource, "name": name}}});
                        let (code, v) = post(&admin, "/apis/authorization.k8s.io/v1/subjectaccessreviews", body).await;
                        assert_eq!(code, 201, "{v}");
                        checked += 1;
                        let got = v["status"]["allowed"].as_bool().unwrap();
                        if got != expected(subject, verb, resource, name, ns) {
                            mismatches.push(format!("{subject} {verb} {resource}/{name} in {ns}: got {got} ({})", v["status"]));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 432);

    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // The same answers on the real request path, for the token users.
    for (subject, token) in [("alice", "alice-token"), ("bob", "bob-token"), ("carol", "carol-token"), ("dave", "dave-token"), ("eve", "eve-token")] {
        let c = s.token_client(token).await;
        for ns in ["m1", "m2"] {
            let (code, _, _) = raw(&c, "GET", &format!("/api/v1/namespaces/{ns}/configmaps"), "", b"").await;
            assert_eq!(code == 200, expected(subject, "list", "configmaps", "", ns), "{subject} list configmaps in {ns}: {code}");
            let (code, _, v) = raw(&c, "POST", &format!("/api/v1/namespaces/{ns}/secrets"), "application/json", br#"{"metadata":{"generateName":"x-"}}"#).await;
            assert_eq!(code == 201, expected(subject, "create", "secrets", "", ns), "{subject} create secrets in {ns}: {code} {v}");
            if code == 403 {
                assert_eq!(
                    v["message"],
                    format!("secrets is forbidden: User \"{subject}\" cannot create resource \"secrets\" in API group \"\" in the namespace \"{ns}\"")
                );
                assert_eq!(v["details"]["kind"], "secrets");
            }
        }
    }

    // The bootstrap roles: `view` reads ConfigMaps but not Secrets; `edit` reads Secrets.
    let (code, _) = post(&admin, "/apis/rbac.authorization.k8s.io/v1/namespaces/m1/rolebindings", json!({"metadata": {"name": "eve-view"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "eve"}]})).await;
    assert_eq!(code, 201);
    let sar = |verb: &str, resource: &str| json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "eve", "groups": ["system:authenticated"], "resourceAttributes": {"namespace": "m1", "verb": verb, "resource": resource}}});
    let mut aggregated = false;
    for _ in 0..50 {
        if post(&admin, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar("list", "configmaps")).await.1["status"]["allowed"] == true {
            aggregated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(aggregated, "view was never aggregated");
    assert_eq!(post(&admin, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar("get", "secrets")).await.1["status"]["allowed"], false);
    assert_eq!(post(&admin, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar("list", "secrets")).await.1["status"]["allowed"], false);
}

#[tokio::test]
async fn name_restricted_list_and_watch_need_the_name_selector() {
    let s = server().await;
    let admin = s.client().await;
    setup(&admin).await;
    for n in ["s1", "s2"] {
        assert_eq!(post(&admin, "/api/v1/namespaces/m1/secrets", json!({"metadata": {"name": n}, "stringData": {"k": "v"}})).await.0, 201);
    }
    let (code, tr) =
        post(&admin, "/api/v1/namespaces/m1/serviceaccounts/app/token", json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}))
            .await;
    assert_eq!(code, 201, "{tr}");
    let app = s.token_client(tr["status"]["token"].as_str().unwrap()).await;
    let (code, _, v) = raw(&app, "GET", "/api/v1/namespaces/m1/secrets", "", b"").await;
    assert_eq!(code, 403, "{v}");
    let (code, _, v) = raw(&app, "GET", "/api/v1/namespaces/m1/secrets?fieldSelector=metadata.name%3Ds1", "", b"").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (code, _, _) = raw(&app, "GET", "/api/v1/namespaces/m1/secrets?fieldSelector=metadata.name%3Ds2", "", b"").await;
    assert_eq!(code, 403);
    let (code, _, _) = raw(&app, "GET", "/api/v1/namespaces/m1/secrets?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Ds1", "", b"").await;
    assert_eq!(code, 200);
    let (code, _, _) = raw(&app, "GET", "/api/v1/namespaces/m1/secrets?watch=true&timeoutSeconds=1", "", b"").await;
    assert_eq!(code, 403);
    // The named watch path is a watch of that one name, authorized as `watch`.
    let (code, _, v) = raw(&app, "GET", "/api/v1/watch/namespaces/m1/secrets/s2?timeoutSeconds=1", "", b"").await;
    assert_eq!(code, 403);
    assert!(v["message"].as_str().unwrap().contains("cannot watch resource \"secrets\""), "{v}");
    let req = http::Request::get("/api/v1/watch/namespaces/m1/secrets/s1?timeoutSeconds=1").body(Vec::new()).unwrap();
    let text = app.request_text(req).await.unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!((events[0]["type"].as_str(), events[0]["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("s1")));
    let (code, _, v) = raw(&app, "GET", "/api/v1/namespaces/m1/secrets/s2", "", b"").await;
    assert_eq!(code, 403);
    assert_eq!(
        v["message"],
        "secrets \"s2\" is forbidden: User \"system:serviceaccount:m1:app\" cannot get resource \"secrets\" in API group \"\" in the namespace \"m1\""
    );
}

/// Server-side apply of an object that does not exist is a create, and needs `create`: with only
/// `patch`, a user could otherwise plant a token Secret for any ServiceAccount.
#[tokio::test]
async fn apply_that_creates_needs_create() {
    let s = server().await;
    let admin = s.client().await;
    setup(&admin).await;
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/m1";
    let role = json!({"metadata": {"name": "patcher"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["patch"]}]});
    assert_eq!(post(&admin, &format!("{rbac}/roles"), role).await.0, 201);
    let binding = json!({"metadata": {"name": "patcher"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "patcher"}, "subjects": [{"kind": "User", "name": "limited"}]});
    assert_eq!(post(&admin, &format!("{rbac}/rolebindings"), binding).await.0, 201);
    assert_eq!(post(&admin, "/api/v1/namespaces/m1/secrets", json!({"metadata": {"name": "existing"}, "stringData": {"k": "v"}})).await.0, 201);
    let limited = s.token_client("limited-token").await;
    let apply = |name: &str| {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": "default"}}, "type": "kubernetes.io/service-account-token"})).unwrap()
    };
    let ct = "application/apply-patch+yaml";
    let (code, _, v) = raw(&limited, "PATCH", "/api/v1/namespaces/m1/secrets/planted?fieldManager=limited", ct, &apply("planted")).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["message"], "secrets \"planted\" is forbidden: User \"limited\" cannot create resource \"secrets\" in API group \"\" in the namespace \"m1\"");
    let (code, _, _) = raw(&admin, "GET", "/api/v1/namespaces/m1/secrets/planted", "", b"").await;
    assert_eq!(code, 404, "nothing was written");
    // An apply to an object that exists is a patch, which the role allows.
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "existing", "labels": {"a": "b"}}})).unwrap();
    let (code, _, v) = raw(&limited, "PATCH", "/api/v1/namespaces/m1/secrets/existing?fieldManager=limited", ct, &body).await;
    assert_eq!(code, 200, "{v}");
}

#[tokio::test]
async fn escalation_is_refused_without_escalate_or_bind() {
    let s = server().await;
    let admin = s.client().await;
    setup(&admin).await;
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    // "limited" administers m1 through the aggregated admin role.
    let (code, v) = post(&admin, &format!("{rbac}/namespaces/m1/rolebindings"), json!({"metadata": {"name": "limited-admin"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}, "subjects": [{"kind": "User", "name": "limited"}]})).await;
    assert_eq!(code, 201, "{v}");
    let limited = s.token_client("limited-token").await;
    // Within what admin holds: allowed (wait for aggregation to fill the admin role).
    let mut ok = false;
    for _ in 0..50 {
        let (code, _) = post(
            &limited,
            &format!("{rbac}/namespaces/m1/roles"),
            json!({"metadata": {"name": "cm-reader"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        )
        .await;
        if code == 201 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "admin role was never aggregated");
    // Beyond it: a wildcard role, and binding cluster-admin.
    let (code, v) = post(
        &limited,
        &format!("{rbac}/namespaces/m1/roles"),
        json!({"metadata": {"name": "everything"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.starts_with("roles.rbac.authorization.k8s.io \"everything\" is forbidden: user \"limited\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"), "{msg}");
    let (code, v) = post(&limited, &format!("{rbac}/namespaces/m1/rolebindings"), json!({"metadata": {"name": "grab"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "limited"}]})).await;
    assert_eq!(code, 403, "{v}");
    // With `escalate` on roles and `bind` on cluster-admin, both go through.
    let (code, _) = post(&admin, &format!("{rbac}/clusterroles"), json!({"metadata": {"name": "escalator"}, "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}, {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["cluster-admin"]}]})).await;
    assert_eq!(code, 201);
    let (code, _) = post(&admin, &format!("{rbac}/namespaces/m1/rolebindings"), json!({"metadata": {"name": "limited-escalates"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "escalator"}, "subjects": [{"kind": "User", "name": "limited"}]})).await;
    assert_eq!(code, 201);
    let (code, v) = post(
        &limited,
        &format!("{rbac}/namespaces/m1/roles"),
        json!({"metadata": {"name": "everything"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = post(&limited, &format!("{rbac}/namespaces/m1/rolebindings"), json!({"metadata": {"name": "grab"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "limited"}]})).await;
    assert_eq!(code, 201, "{v}");
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() {
    let s = server().await;
    let admin = s.client().await;
    setup(&admin).await;
    let alice = s.token_client("alice-token").await;
    let req =
        |user: &str| http::Request::get("/api/v1/namespaces/m1/configmaps").header("Impersonate-User", user).body(kube::client::Body::from(vec![])).unwrap();
    let resp = alice.send(req("bob")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = serde_json::from_slice(&resp.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(body["message"], "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope");
    let groups_only =
        http::Request::get("/api/v1/namespaces/m1/configmaps").header("Impersonate-Group", "system:masters").body(kube::client::Body::from(vec![])).unwrap();
    assert_eq!(alice.send(groups_only).await.unwrap().status().as_u16(), 400);
    // Allowed to impersonate dave only: then acts with dave's rights, no more.
    let (code, _) = post(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"metadata": {"name": "be-dave"}, "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["dave"]}]}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = post(&admin, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json!({"metadata": {"name": "alice-be-dave"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "be-dave"}, "subjects": [{"kind": "User", "name": "alice"}]})).await;
    assert_eq!(code, 201);
    // Impersonating dave gives dave's name and only the groups asked for: team-a (which can
    // read these ConfigMaps) was not, so the request is dave's and forbidden.
    let resp = alice.send(req("dave")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = serde_json::from_slice(&resp.into_body().collect_bytes().await.unwrap()).unwrap();
    assert!(body["message"].as_str().unwrap().contains("User \"dave\" cannot list"), "{body}");
    let who = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("Impersonate-User", "dave")
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec()))
        .unwrap();
    let resp = alice.send(who).await.unwrap();
    let body: Value = serde_json::from_slice(&resp.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"]["userInfo"]["username"], "dave", "{body}");
    assert_eq!(alice.send(req("bob")).await.unwrap().status().as_u16(), 403);
}

#[tokio::test]
async fn tokens_expire_bind_and_reveal_nothing() {
    let s = server().await;
    let admin = s.client().await;
    setup(&admin).await;
    let token_path = "/api/v1/namespaces/m1/serviceaccounts/app/token";
    // Too short an expiry is a 422 with kube's message.
    let (code, v) =
        post(&admin, token_path, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 60}})).await;
    assert_eq!(code, 422);
    assert_eq!(
        v["message"],
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
    );
    // A token for another audience does not authenticate to the API, but TokenReview with that
    // audience accepts it.
    let (_, v) = post(&admin, token_path, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["vault"]}})).await;
    let vault_token = v["status"]["token"].as_str().unwrap().to_string();
    let (code, _, body) = raw(&s.token_client(&vault_token).await, "GET", "/api", "", b"").await;
    assert_eq!((code, body["message"].as_str()), (401, Some("Unauthorized")));
    let (_, review) = post(
        &admin,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": vault_token, "audiences": ["vault"]}}),
    )
    .await;
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(review["status"]["user"]["username"], "system:serviceaccount:m1:app");
    // Tampered: flip a character of the signature.
    let (_, v) = post(&admin, token_path, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})).await;
    let good = v["status"]["token"].as_str().unwrap().to_string();
    let mut bad = good.clone().into_bytes();
    let i = bad.len() - 5;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let (code, _, _) = raw(&s.token_client(std::str::from_utf8(&bad).unwrap()).await, "GET", "/api", "", b"").await;
    assert_eq!(code, 401);
    // Expired: made with the server's own key, an hour in the past.
    let key = std::fs::read_to_string(s.data_dir().join("pki/sa.key")).unwrap();
    let signer = auth::tokens::TokenSigner::from_pem(&key).unwrap();
    let sa_uid = raw(&admin, "GET", "/api/v1/namespaces/m1/serviceaccounts/app", "", b"").await.2["metadata"]["uid"].as_str().unwrap().to_string();
    let (expired, _) =
        signer.issue("m1", &auth::tokens::ObjectRef { name: "app".into(), uid: sa_uid.clone() }, &[auth::tokens::DEFAULT_ISSUER.into()], -3600, None).unwrap();
    let (code, _, body) = raw(&s.token_client(&expired).await, "GET", "/api", "", b"").await;
    assert_eq!((code, body["message"].as_str()), (401, Some("Unauthorized")));
    // Bound to a Secret: works until the Secret goes.
    assert_eq!(post(&admin, "/api/v1/namespaces/m1/secrets", json!({"metadata": {"name": "anchor"}})).await.0, 201);
    let (code, v) = post(&admin, token_path, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "anchor"}}})).await;
    assert_eq!(code, 201, "{v}");
    let bound = s.token_client(v["status"]["token"].as_str().unwrap()).await;
    assert_eq!(raw(&bound, "GET", "/api", "", b"").await.0, 200);
    assert_eq!(raw(&admin, "DELETE", "/api/v1/namespaces/m1/secrets/anchor", "", b"").await.0, 200);
    assert_eq!(raw(&bound, "GET", "/api", "", b"").await.0, 401);
    // Bound to a Node (kubectl create token --bound-object-kind Node): dies with the Node.
    assert_eq!(post(&admin, "/api/v1/nodes", json!({"metadata": {"name": "n1"}})).await.0, 201);
    let (code, v) = post(&admin, token_path, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"boundObjectRef": {"kind": "Node", "apiVersion": "v1", "name": "n1"}}})).await;
    assert_eq!(code, 201, "{v}");
    let on_node = s.token_client(v["status"]["token"].as_str().unwrap()).await;
    let who = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let (code, review) = post(&on_node, "/apis/authentication.k8s.io/v1/selfsubjectreviews", who).await;
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"], json!(["n1"]));
    assert_eq!(raw(&admin, "DELETE", "/api/v1/nodes/n1", "", b"").await.0, 200);
    assert_eq!(raw(&on_node, "GET", "/api", "", b"").await.0, 401);
    // A legacy token Secret is filled in by the controller and works until the Secret goes.
    assert_eq!(post(&admin, "/api/v1/namespaces/m1/secrets", json!({"metadata": {"name": "app-token", "annotations": {"kubernetes.io/service-account.name": "app"}}, "type": "kubernetes.io/service-account-token"})).await.0, 201);
    let mut legacy = String::new();
    for _ in 0..50 {
        let (_, _, v) = raw(&admin, "GET", "/api/v1/namespaces/m1/secrets/app-token", "", b"").await;
        if let Some(t) = v["data"]["token"].as_str() {
            use base64::Engine;
            legacy = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(t).unwrap()).unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!legacy.is_empty(), "token controller did not fill the secret");
    let lc = s.token_client(&legacy).await;
    assert_eq!(raw(&lc, "GET", "/api/v1/namespaces/m1/secrets/s1", "", b"").await.0, 404, "authenticated as the SA (s1 does not exist here)");
    assert_eq!(raw(&admin, "DELETE", "/api/v1/namespaces/m1/secrets/app-token", "", b"").await.0, 200);
    assert_eq!(raw(&lc, "GET", "/api", "", b"").await.0, 401);
    // Deleting the ServiceAccount invalidates every token it had, and the token controller
    // deletes its token Secrets, and any that names a ServiceAccount that does not exist.
    assert_eq!(post(&admin, "/api/v1/namespaces/m1/secrets", json!({"metadata": {"name": "app-token-2", "annotations": {"kubernetes.io/service-account.name": "app"}}, "type": "kubernetes.io/service-account-token"})).await.0, 201);
    assert_eq!(post(&admin, "/api/v1/namespaces/m1/secrets", json!({"metadata": {"name": "ghost-token", "annotations": {"kubernetes.io/service-account.name": "ghost"}}, "type": "kubernetes.io/service-account-token"})).await.0, 201);
    let c = s.token_client(&good).await;
    assert_eq!(raw(&c, "GET", "/api", "", b"").await.0, 200);
    assert_eq!(raw(&admin, "DELETE", "/api/v1/namespaces/m1/serviceaccounts/app", "", b"").await.0, 200);
    assert_eq!(raw(&c, "GET", "/api", "", b"").await.0, 401);
    let mut cleaned = false;
    for _ in 0..50 {
        let gone = |n: &'static str| {
            let admin = admin.clone();
            async move { raw(&admin, "GET", &format!("/api/v1/namespaces/m1/secrets/{n}"), "", b"").await.0 == 404 }
        };
        if gone("app-token-2").await && gone("ghost-token").await {
            cleaned = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(cleaned, "token secrets of missing service accounts are deleted");
    // A namespace gets its default ServiceAccount.
    let mut found = false;
    for _ in 0..50 {
        if raw(&admin, "GET", "/api/v1/namespaces/m2/serviceaccounts/default", "", b"").await.0 == 200 {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(found);
}

#[tokio::test]
async fn audit_log_records_every_secret_read_without_data() {
    let s = server().await;
    let admin = s.client().await;
    setup(&admin).await;
    assert_eq!(post(&admin, "/api/v1/namespaces/m1/secrets", json!({"metadata": {"name": "s1"}, "stringData": {"k": "audit-secret-value-9d2"}})).await.0, 201);
    let (_, tr) =
        post(&admin, "/api/v1/namespaces/m1/serviceaccounts/app/token", json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}))
            .await;
    let app = s.token_client(tr["status"]["token"].as_str().unwrap()).await;
    assert_eq!(raw(&app, "GET", "/api/v1/namespaces/m1/secrets/s1", "", b"").await.0, 200);
    assert_eq!(raw(&app, "GET", "/api/v1/namespaces/m1/secrets/s2", "", b"").await.0, 403);
    assert_eq!(raw(&admin, "GET", "/api/v1/namespaces/m1/secrets/s1", "", b"").await.0, 200);
    assert_eq!(raw(&admin, "GET", "/api/v1/namespaces/m1/configmaps", "", b"").await.0, 200);
    // A forged token, and an impersonation its user may not do, are recorded too.
    let forged = s.token_client("not-a-real-token").await;
    assert_eq!(raw(&forged, "GET", "/api/v1/namespaces/m1/secrets/s1", "", b"").await.0, 401);
    let alice = s.token_client("alice-token").await;
    let req = http::Request::get("/api/v1/namespaces/m1/secrets/s1").header("Impersonate-User", "admin").body(Vec::new()).unwrap();
    assert!(alice.request_text(req).await.is_err());
    let log = std::fs::read_to_string(s.data_dir().join("audit.log")).unwrap();
    assert!(!log.contains("audit-secret-value-9d2"));
    use base64::Engine;
    assert!(!log.contains(&base64::engine::general_purpose::STANDARD.encode("audit-secret-value-9d2")));
    let events: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let reads: BTreeSet<(String, String, u64)> = events
        .iter()
        .filter(|e| e["verb"] == "get" && e["objectRef"]["resource"] == "secrets")
        .map(|e| {
            (
                e["user"]["username"].as_str().unwrap_or_default().to_string(),
                e["objectRef"]["name"].as_str().unwrap().to_string(),
                e["responseStatus"]["code"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reads,
        BTreeSet::from([
            ("admin".to_string(), "s1".to_string(), 200),
            ("system:serviceaccount:m1:app".to_string(), "s1".to_string(), 200),
            ("system:serviceaccount:m1:app".to_string(), "s2".to_string(), 403),
            (String::new(), "s1".to_string(), 401),
            ("alice".to_string(), "s1".to_string(), 403),
        ])
    );
    let e = events.iter().find(|e| e["objectRef"]["name"] == "s2").unwrap();
    assert_eq!(e["kind"], "Event");
    assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(e["level"], "Metadata");
    assert_eq!(e["annotations"]["authorization.k8s.io/decision"], "forbid");
    assert_eq!(e["sourceIPs"][0], "127.0.0.1");
    assert!(events.iter().all(|e| e["objectRef"]["resource"] != "configmaps"), "the default policy records Secrets, not ConfigMaps");
}

/// Bootstrap roles marked autoupdate get back what was taken from them at the next start, as
/// kube-apiserver reconciles them; what an administrator added stays.
#[tokio::test]
async fn bootstrap_roles_are_reconciled_at_start() {
    let mut s = server().await;
    let admin = s.client().await;
    let path = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
    let ct = "application/merge-patch+json";
    let (code, _, _) = raw(
        &admin,
        "PATCH",
        &format!("{path}/system:aggregate-to-edit"),
        ct,
        br#"{"rules":[{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["get"]}]}"#,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _, _) =
        raw(&admin, "PATCH", &format!("{path}/edit"), ct, br#"{"metadata":{"labels":{"rbac.authorization.k8s.io/aggregate-to-admin":null}}}"#).await;
    assert_eq!(code, 200);
    s.stop();
    s.launch().await;
    let admin = s.client().await;
    let (_, _, role) = raw(&admin, "GET", &format!("{path}/system:aggregate-to-edit"), "", b"").await;
    let rules = role["rules"].as_array().unwrap();
    assert!(rules.len() > 1, "the bootstrap rules are back: {role}");
    assert!(rules.iter().any(|r| r["apiGroups"][0] == "example.com"), "the added rule stays: {role}");
    let (_, _, edit) = raw(&admin, "GET", &format!("{path}/edit"), "", b"").await;
    assert_eq!(edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"], "true", "{edit}");
}
