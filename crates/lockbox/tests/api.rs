//! The API's semantics, driven with kube-rs (and raw requests where a typed client cannot
//! express the case) against a real `lockbox up`.

mod common;

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use common::{raw, Server};

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap()
}

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
}

#[tokio::test]
async fn configmap_lifecycle_and_optimistic_concurrency() {
    let s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "t1").await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "t1");
    let created = api.create(&PostParams::default(), &cm("a", &[("k", "v")])).await.unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());
    assert_eq!(created.data.as_ref().unwrap()["k"], "v");

    // Update with the current resourceVersion works; the stale one is a 409 Conflict.
    let mut first = created.clone();
    first.data.as_mut().unwrap().insert("k".into(), "v2".into());
    let updated = api.replace("a", &PostParams::default(), &first).await.unwrap();
    assert_ne!(updated.metadata.resource_version, created.metadata.resource_version);
    let mut stale = created.clone();
    stale.data.as_mut().unwrap().insert("k".into(), "lost".into());
    match api.replace("a", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "v2");

    // Duplicate create, missing object.
    match api.create(&PostParams::default(), &cm("a", &[])).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("{other:?}"),
    }
    match api.get("nope").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
            assert_eq!(s.message, "configmaps \"nope\" not found");
        }
        other => panic!("{other:?}"),
    }

    // generateName and dryRun.
    let mut gen = cm("", &[]);
    gen.metadata.name = None;
    gen.metadata.generate_name = Some("gen-".into());
    let g = api.create(&PostParams::default(), &gen).await.unwrap();
    assert!(g.metadata.name.as_ref().unwrap().starts_with("gen-") && g.metadata.name.as_ref().unwrap().len() == 9);
    let dry = PostParams { dry_run: true, ..Default::default() };
    api.create(&dry, &cm("dry", &[])).await.unwrap();
    assert!(api.get_opt("dry").await.unwrap().is_none());

    // Immutable: data cannot change, the flag cannot be unset.
    let mut imm = cm("imm", &[("a", "1")]);
    imm.immutable = Some(true);
    api.create(&PostParams::default(), &imm).await.unwrap();
    let e = api.patch("imm", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "2"}}))).await.unwrap_err();
    match e {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(s.message.contains("data: Forbidden: field is immutable when `immutable` is set"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    let e = api.patch("imm", &PatchParams::default(), &Patch::Merge(json!({"immutable": false}))).await.unwrap_err();
    assert!(matches!(e, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("immutable: Forbidden")), "{e:?}");
    // Labels can still change on an immutable ConfigMap.
    api.patch("imm", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}))).await.unwrap();

    // Delete answers with a Success status; the object is gone.
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn secrets_string_data_types_and_field_selectors() {
    let s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "t2").await;
    let api: Api<Secret> = Api::namespaced(c.clone(), "t2");
    let sec: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"token": "abc"}, "data": {"other": "eA=="}})).unwrap();
    let got = api.create(&PostParams::default(), &sec).await.unwrap();
    assert_eq!(got.type_.as_deref(), Some("Opaque"));
    assert!(got.string_data.is_none());
    assert_eq!(got.data.as_ref().unwrap()["token"].0, b"abc");

    let tls: Secret = serde_json::from_value(json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}})).unwrap();
    match api.create(&PostParams::default(), &tls).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.message, "Secret \"t\" is invalid: data[tls.key]: Required value");
        }
        other => panic!("{other:?}"),
    }
    let tls: Secret =
        serde_json::from_value(json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eQ=="}})).unwrap();
    api.create(&PostParams::default(), &tls).await.unwrap();
    // The type cannot change.
    let e = api.patch("t", &PatchParams::default(), &Patch::Merge(json!({"type": "Opaque"}))).await.unwrap_err();
    assert!(matches!(e, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("type: Invalid value: \"Opaque\": field is immutable")), "{e:?}");

    let tls_only = api.list(&ListParams::default().fields("type=kubernetes.io/tls")).await.unwrap();
    assert_eq!(tls_only.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["t"]);
    let by_name = api.list(&ListParams::default().fields("metadata.name=s")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    match api.list(&ListParams::default().fields("spec.bogus=x")).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn label_selectors_paging_and_tables() {
    let s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "t3").await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "t3");
    for i in 0..7 {
        let mut m = cm(&format!("cm-{i}"), &[("i", &i.to_string())]);
        m.metadata.labels = Some([("tier".to_string(), if i % 2 == 0 { "even" } else { "odd" }.to_string())].into());
        api.create(&PostParams::default(), &m).await.unwrap();
    }
    assert_eq!(api.list(&ListParams::default().labels("tier=even")).await.unwrap().items.len(), 4);
    assert_eq!(api.list(&ListParams::default().labels("tier in (odd,none)")).await.unwrap().items.len(), 3);
    assert_eq!(api.list(&ListParams::default().labels("tier,tier notin (odd)")).await.unwrap().items.len(), 4);
    // Only kube-root-ca.crt lacks the label, once the server has published it (asynchronously).
    let untiered = api.list(&ListParams::default().labels("!tier")).await.unwrap().items;
    assert!(untiered.iter().all(|m| m.metadata.name.as_deref() == Some("kube-root-ca.crt")), "{untiered:?}");

    // Pages of 3 cover everything once, in name order, at one resourceVersion.
    let mut names = Vec::new();
    // Selected by label: the server publishes kube-root-ca.crt into the namespace too.
    let mut lp = ListParams::default().limit(3).labels("tier");
    let mut rvs = std::collections::BTreeSet::new();
    loop {
        let page = api.list(&lp).await.unwrap();
        rvs.insert(page.metadata.resource_version.clone());
        names.extend(page.items.iter().map(|m| m.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => {
                lp = lp.continue_token(&token);
                // A write between pages does not show up in the paged list.
                let mut late = cm(&format!("late-{}", names.len()), &[]);
                late.metadata.labels = Some([("tier".to_string(), "late".to_string())].into());
                api.create(&PostParams::default(), &late).await.unwrap();
            }
            _ => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    assert_eq!(rvs.len(), 1);

    // Table output: kube-apiserver's columns and the row's object metadata.
    let req = http::Request::get("/api/v1/namespaces/t3/configmaps?limit=2&labelSelector=tier")
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .body(vec![])
        .unwrap();
    let table: serde_json::Value = c.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let cols: Vec<&str> = table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["Name", "Data", "Age"]);
    assert_eq!(table["rows"][0]["cells"][1], 1);
    assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "t3");
    assert!(table["metadata"]["continue"].is_string());
}

#[tokio::test]
async fn watches_resume_and_filter() {
    let s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "t4").await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "t4");
    let first = api.create(&PostParams::default(), &cm("w0", &[])).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    let mut stream = api.watch(&WatchParams::default().labels("app=x").timeout(20), &rv).await.unwrap().boxed();
    let mut labelled = cm("w1", &[]);
    labelled.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
    api.create(&PostParams::default(), &labelled).await.unwrap();
    api.create(&PostParams::default(), &cm("unlabelled", &[])).await.unwrap();
    api.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}}))).await.unwrap();
    api.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}}))).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("ADDED", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    // Leaving the selector is a DELETED event, as in Kubernetes.
    assert_eq!(seen, [("ADDED", "w1".to_string()), ("MODIFIED", "w1".to_string()), ("DELETED", "w1".to_string())]);

    // Without a resourceVersion a watch starts with the current objects.
    let mut from_now = api.watch(&WatchParams::default().timeout(5), "0").await.unwrap().boxed();
    let mut initial = 0;
    while let Some(Ok(WatchEvent::Added(_))) = from_now.next().await {
        initial += 1;
        if initial == 3 {
            break;
        }
    }
    assert_eq!(initial, 3);

    // After a compaction, the revisions before it are gone: watch, exact list and a continue
    // token from then all get 410, while a watch from the current revision still works.
    let (code, _, page) = raw(&c, "GET", "/api/v1/namespaces/t4/configmaps?limit=1", "", b"").await;
    assert_eq!(code, 200);
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    api.create(&PostParams::default(), &cm("after", &[])).await.unwrap();
    let (code, _, _) = raw(&c, "POST", "/lockbox/v1/storage/compact", "", b"").await;
    assert_eq!(code, 200);
    let mut old = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    match old.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("{other:?}"),
    }
    let (code, _, v) = raw(&c, "GET", &format!("/api/v1/namespaces/t4/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact"), "", b"").await;
    assert_eq!((code, v["message"].as_str().unwrap()), (410, "The resourceVersion for the provided list is too old."));
    let (code, _, v) = raw(&c, "GET", &format!("/api/v1/namespaces/t4/configmaps?limit=1&continue={token}"), "", b"").await;
    assert_eq!((code, v["reason"].as_str().unwrap()), (410, "Expired"));
    let now = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut fresh = api.watch(&WatchParams::default().timeout(5), &now).await.unwrap().boxed();
    api.create(&PostParams::default(), &cm("later", &[])).await.unwrap();
    assert!(matches!(fresh.try_next().await.unwrap(), Some(WatchEvent::Added(_))));
}

#[tokio::test]
async fn patches_apply_and_field_validation() {
    let s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "t5").await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "t5");
    api.create(&PostParams::default(), &cm("p", &[("a", "1"), ("b", "2")])).await.unwrap();
    let (code, _, _) = raw(&c, "PATCH", "/api/v1/namespaces/t5/configmaps/p", "application/json-patch+json", br#"[{"op":"remove","path":"/data/a"}]"#).await;
    assert_eq!(code, 200);
    api.patch("p", &PatchParams::default(), &Patch::Strategic(json!({"metadata": {"finalizers": ["example.com/hold"]}, "data": {"c": "3"}}))).await.unwrap();
    let got = api.get("p").await.unwrap();
    assert_eq!(got.data.unwrap(), BTreeMap::from([("b".to_string(), "2".to_string()), ("c".to_string(), "3".to_string())]));

    // Finalizers hold a delete: the object gets a deletionTimestamp and stays until released.
    api.delete("p", &DeleteParams::default()).await.unwrap();
    let held = api.get("p").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(api.get_opt("p").await.unwrap().is_none());

    // Server-side apply: create, conflict with another manager, force.
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "mine"}});
    let pp = PatchParams::apply("manager-a");
    api.patch("ssa", &pp, &Patch::Apply(&applied)).await.unwrap();
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "theirs"}});
    match api.patch("ssa", &PatchParams::apply("manager-b"), &Patch::Apply(&other)).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert_eq!(s.message, "Apply failed with 1 conflict: conflict with \"manager-a\" using v1: .data.k");
        }
        other => panic!("{other:?}"),
    }
    let forced = api.patch("ssa", &PatchParams::apply("manager-b").force(), &Patch::Apply(&other)).await.unwrap();
    assert_eq!(forced.data.unwrap()["k"], "theirs");

    // fieldValidation: Strict rejects an unknown field; Warn (the default) warns and drops it.
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fv"},"bogus":1}"#;
    let (code, _, status) = raw(&c, "POST", "/api/v1/namespaces/t5/configmaps?fieldValidation=Strict", "application/json", body).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
    assert_eq!(status["message"], "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\"");
    let (code, warnings, obj) = raw(&c, "POST", "/api/v1/namespaces/t5/configmaps", "application/json", body).await;
    assert_eq!(code, 201);
    assert_eq!(warnings, vec!["299 - \"unknown field \\\"bogus\\\"\"".to_string()]);
    assert!(obj.get("bogus").is_none());
    let dup = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}"#;
    let (code, _, status) = raw(&c, "POST", "/api/v1/namespaces/t5/configmaps?fieldValidation=Strict", "application/json", dup).await;
    assert_eq!(
        (code, status["message"].as_str()),
        (400, Some("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"data.a\""))
    );
    // YAML bodies are checked for duplicate keys too.
    let dup_yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dupy\ndata:\n  a: \"1\"\n  a: \"2\"\n";
    let (code, _, status) = raw(&c, "POST", "/api/v1/namespaces/t5/configmaps?fieldValidation=Strict", "application/yaml", dup_yaml).await;
    assert_eq!(code, 400, "{status}");
    assert!(status["message"].as_str().unwrap().contains("duplicate field \"data.a\""), "{status}");
}

/// What kube-apiserver adds to namespaces, and what it refuses: the name label, immortal
/// built-in namespaces, finalizer names; and a namespace held by someone else's finalizer is
/// left alone (not rewritten) until that finalizer goes.
#[tokio::test]
async fn namespace_defaults_and_admission() {
    let s = Server::start().await;
    let c = s.client().await;
    let nss: Api<Namespace> = Api::all(c.clone());
    namespace(&c, "labelled").await;
    let label = |ns: &Namespace| ns.metadata.labels.clone().unwrap_or_default().get("kubernetes.io/metadata.name").cloned();
    assert_eq!(label(&nss.get("labelled").await.unwrap()).as_deref(), Some("labelled"));
    let patched =
        nss.patch("labelled", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"kubernetes.io/metadata.name": null}}}))).await.unwrap();
    assert_eq!(label(&patched).as_deref(), Some("labelled"), "the label cannot be removed");
    assert_eq!(nss.list(&ListParams::default().labels("kubernetes.io/metadata.name=labelled")).await.unwrap().items.len(), 1);
    for immortal in ["default", "kube-system", "kube-public"] {
        match nss.delete(immortal, &DeleteParams::default()).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
                assert_eq!(e.message, format!("namespaces \"{immortal}\" is forbidden: this namespace may not be deleted"));
            }
            other => panic!("{immortal}: {other:?}"),
        }
    }
    let bad: Namespace = serde_json::from_value(json!({"metadata": {"name": "badfin"}, "spec": {"finalizers": ["bad finalizer", "custom"]}})).unwrap();
    match nss.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
            assert!(
                e.message.contains("spec.finalizers[1]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    let mut held: Namespace = serde_json::from_value(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})).unwrap();
    held = nss.create(&PostParams::default(), &held).await.unwrap();
    assert_eq!(held.spec.unwrap().finalizers.unwrap(), vec!["kubernetes".to_string()]);
    nss.delete("held", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let first = nss.get("held").await.unwrap();
    assert!(first.spec.as_ref().unwrap().finalizers.as_ref().is_none_or(|f| f.is_empty()), "the kubernetes finalizer is done");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let later = nss.get("held").await.unwrap();
    assert_eq!(first.metadata.resource_version, later.metadata.resource_version, "a namespace waiting on another finalizer is not rewritten");
    nss.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(nss.get_opt("held").await.unwrap().is_none());
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not within 10 s: {what}");
}

/// The garbage collector works for any kind, not only the workload chain: a Secret owned by a
/// ConfigMap goes with it; orphan and foreground deletions of ConfigMaps, Secrets and
/// Namespaces finish; a dangling reference beside a live one is dropped.
#[tokio::test]
async fn garbage_collection_for_every_kind() {
    let s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "gc").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "gc");
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "gc");
    let owner = cms.create(&PostParams::default(), &cm("owner", &[])).await.unwrap();
    let other = cms.create(&PostParams::default(), &cm("other", &[])).await.unwrap();
    let reference = |cm: &ConfigMap| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": cm.metadata.name, "uid": cm.metadata.uid});
    let owned =
        |name: &str, refs: Vec<serde_json::Value>| -> Secret { serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": refs}})).unwrap() };
    secrets.create(&PostParams::default(), &owned("dependent", vec![reference(&owner)])).await.unwrap();
    secrets.create(&PostParams::default(), &owned("two-owners", vec![reference(&owner), reference(&other)])).await.unwrap();
    let ghost = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"});
    secrets.create(&PostParams::default(), &owned("ghost-owned", vec![ghost])).await.unwrap();
    secrets.create(&PostParams::default(), &owned("live-owned", vec![reference(&owner)])).await.unwrap();
    eventually("a secret whose only owner never existed is collected", || async { secrets.get_opt("ghost-owned").await.unwrap().is_none() }).await;
    assert!(secrets.get_opt("live-owned").await.unwrap().is_some(), "a live owner keeps its dependent");

    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("the dependent goes with its owner", || async { secrets.get_opt("dependent").await.unwrap().is_none() }).await;
    eventually("the gone owner's reference is dropped beside the live one", || async {
        secrets.get("two-owners").await.unwrap().metadata.owner_references.unwrap_or_default().len() == 1
    })
    .await;

    // Orphan: the dependent stays, without the reference; the owner's deletion finishes.
    secrets.create(&PostParams::default(), &owned("kept", vec![reference(&other)])).await.unwrap();
    cms.delete("other", &DeleteParams::orphan()).await.unwrap();
    eventually("the orphaning owner is deleted", || async { cms.get_opt("other").await.unwrap().is_none() }).await;
    let kept = secrets.get("kept").await.unwrap();
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());
    // Foreground deletion of objects without dependents, and of a namespace, finishes.
    secrets.delete("kept", &DeleteParams::foreground()).await.unwrap();
    eventually("a foreground-deleted secret goes", || async { secrets.get_opt("kept").await.unwrap().is_none() }).await;
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.delete("gc", &DeleteParams::foreground()).await.unwrap();
    eventually("a foreground-deleted namespace goes", || async { nss.get_opt("gc").await.unwrap().is_none() }).await;
}

#[tokio::test]
async fn namespace_termination_and_restart_persistence() {
    let mut s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "doomed").await;
    namespace(&c, "kept").await;
    let doomed: Api<ConfigMap> = Api::namespaced(c.clone(), "doomed");
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    doomed.create(&PostParams::default(), &held).await.unwrap();
    doomed.create(&PostParams::default(), &cm("plain", &[])).await.unwrap();
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.delete("doomed", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    // Creating into a terminating namespace is Forbidden; into a missing one, NotFound.
    match doomed.create(&PostParams::default(), &cm("new", &[])).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            assert!(s.message.contains("because it is being terminated"));
        }
        other => panic!("{other:?}"),
    }
    match Api::<ConfigMap>::namespaced(c.clone(), "missing").create(&PostParams::default(), &cm("x", &[])).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.message.as_str()), (404, "namespaces \"missing\" not found")),
        other => panic!("{other:?}"),
    }
    // The held object keeps the namespace alive until its finalizer goes, and the namespace's
    // conditions say so (kubectl describe namespace shows them).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let waiting = nss.get_opt("doomed").await.unwrap().expect("still there");
    let conditions = waiting.status.unwrap().conditions.unwrap_or_default();
    let cond = |t: &str| conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()));
    assert_eq!(cond("NamespaceContentRemaining"), Some(("True".into(), "Some resources are remaining: configmaps. has 1 resource instances".into())));
    assert_eq!(
        cond("NamespaceFinalizersRemaining"),
        Some(("True".into(), "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances".into()))
    );
    assert!(doomed.get_opt("plain").await.unwrap().is_none());
    doomed.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if nss.get_opt("doomed").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "namespace was not finalized");

    // Everything written survives a restart.
    let kept: Api<Secret> = Api::namespaced(c.clone(), "kept");
    let sec: Secret = serde_json::from_value(json!({"metadata": {"name": "persist"}, "stringData": {"k": "v"}})).unwrap();
    let before = kept.create(&PostParams::default(), &sec).await.unwrap();
    s.stop();
    s.launch().await;
    let c = s.client().await;
    let kept: Api<Secret> = Api::namespaced(c.clone(), "kept");
    let after = kept.get("persist").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version);
    assert_eq!(after.data.unwrap()["k"].0, b"v");
    assert!(Api::<Namespace>::all(c.clone()).get_opt("doomed").await.unwrap().is_none());
    // A watch from before the restart is older than the new cache's window: 410 Gone.
    let mut w = kept.watch(&WatchParams::default(), "1").await.unwrap().boxed();
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let s = Server::start().await;
    let anon = s.anonymous_client().await;
    let (code, _, status) = raw(&anon, "GET", "/api/v1/namespaces", "", b"").await;
    assert_eq!((code, status["reason"].as_str()), (401, Some("Unauthorized")));

    // A certificate the cluster CA did not sign, claiming admin: the handshake succeeds (as
    // with kube-apiserver's RequestClientCert) and the request is 401, not a TLS alert.
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "admin");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
    let key = rcgen::KeyPair::generate().unwrap();
    let forged = params.self_signed(&key).unwrap();
    let kc = kube::config::Kubeconfig::read_from(s.kubeconfig()).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap();
    use base64::Engine;
    let b64 = |t: String| base64::engine::general_purpose::STANDARD.encode(t);
    cfg.auth_info = kube::config::AuthInfo {
        client_certificate_data: Some(b64(forged.pem())),
        client_key_data: Some(b64(key.serialize_pem()).into()),
        ..Default::default()
    };
    let impostor = kube::Client::try_from(cfg).unwrap();
    let (code, _, status) = raw(&impostor, "GET", "/api/v1/namespaces", "", b"").await;
    assert_eq!((code, status["reason"].as_str()), (401, Some("Unauthorized")));
}

/// Path segments are percent-decoded, as kube-apiserver's URL parsing does.
#[tokio::test]
async fn percent_encoded_paths_name_the_same_object() {
    let s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "pct").await;
    Api::<ConfigMap>::namespaced(c.clone(), "pct").create(&PostParams::default(), &cm("other", &[("k", "v")])).await.unwrap();
    let (code, _, obj) = raw(&c, "GET", "/api/v1/namespaces/p%63t/configmaps/%6Fther", "", b"").await;
    assert_eq!((code, obj["data"]["k"].as_str()), (200, Some("v")), "{obj}");
}
