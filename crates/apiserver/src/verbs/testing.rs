//! What the verbs' unit tests share: a registry over a fresh SQLite store (no encryption),
//! with the built-in namespaces, and requests made as the verb handlers receive them.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response};
use serde_json::Value;

use crate::negotiate::Negotiated;
use crate::request::{parse_target, Query, ResourceRequest, Upgrade, Verb};
use crate::rest::Registry;

pub struct Fixture {
    pub reg: Arc<Registry>,
    _dir: tempfile::TempDir,
}

pub async fn registry() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn store::Store> = store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let transformer: Arc<dyn crypt::Transformer> = Arc::new(crypt::Identity);
    let cache = crate::cache::WatchCache::start(store.clone(), Registry::decoder(transformer.clone())).await.unwrap();
    let reg = Arc::new(Registry { store, cache, transformer });
    crate::lifecycle::ensure_builtin_namespaces(&reg).await.unwrap();
    Fixture { reg, _dir: dir }
}

/// A request as the pipeline hands it to a verb: `path?query`, a JSON body (or none), by
/// `system:masters`.
pub fn request(method: Method, path_and_query: &str, content_type: &str, body: Option<&Value>) -> (ResourceRequest, Negotiated) {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let target = parse_target(&segs).unwrap();
    let query = Query::parse(Some(query));
    let verb = Verb::of(&method, &target, &query);
    let mut headers = HeaderMap::new();
    if !content_type.is_empty() {
        headers.insert("content-type", HeaderValue::from_str(content_type).unwrap());
    }
    headers.insert("user-agent", HeaderValue::from_static("unit-test/1.0"));
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
    let n = crate::negotiate::negotiate(&headers).unwrap();
    let admin = auth::UserInfo { name: "admin".into(), groups: vec!["system:masters".into()], ..Default::default() };
    (ResourceRequest::new(method, verb, target, query, headers, admin, body, Upgrade { on_upgrade: None, raw_query: String::new() }), n)
}

/// The status code and JSON body of an answer.
pub async fn answer(r: api::ApiResult<Response<Body>>) -> (u16, Value) {
    match r {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
            (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }
        Err(e) => (e.code, e.to_json()),
    }
}

/// Creates `body` in the collection at `path` through the create verb; the created object.
pub async fn create(reg: &Arc<Registry>, path: &str, body: Value) -> Value {
    let (req, n) = request(Method::POST, path, "application/json", Some(&body));
    let (code, obj) = answer(crate::verbs::create::serve(reg, req, n).await).await;
    assert_eq!(code, 201, "{obj}");
    obj
}

/// ConfigMaps `a`, `b` and `c` in `default`, labelled team x, y and x.
pub async fn three_configmaps(reg: &Arc<Registry>) {
    for (name, team) in [("a", "x"), ("b", "y"), ("c", "x")] {
        create(reg, "/api/v1/namespaces/default/configmaps", serde_json::json!({"metadata": {"name": name, "labels": {"team": team}}})).await;
    }
}
