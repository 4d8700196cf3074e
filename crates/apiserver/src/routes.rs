//! The non-resource paths: version, health, metrics, discovery, OpenAPI, the
//! ServiceAccount issuer's documents and lockbox's storage administration.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

use api::{ApiError, ApiResult};

use crate::app::App;
use crate::negotiate;
use crate::request::Query;

/// The `/version` answer. `minor` picks which bundled kubectl the image's dispatcher runs
/// (reference/kubectl-wire.md §0), so it stays at a version every test was run with.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "0000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc", "platform": "linux/amd64",
    })
}

fn discovery_response(headers: &HeaderMap, core: bool) -> Response<Body> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    // The first aggregated version the client lists wins; kubectl 1.27–1.29 know only v2beta1.
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if !(has("as=APIGroupDiscoveryList") && has("g=apidiscovery.k8s.io")) {
            continue;
        }
        for version in ["v2", "v2beta1"] {
            if has(&format!("v={version}")) {
                let body = api::discovery::aggregated(core, version);
                let mut r = negotiate::json(StatusCode::OK, &body);
                let ct = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(&ct).expect("static"));
                r.headers_mut().insert("Vary", HeaderValue::from_static("Accept"));
                return r;
            }
        }
    }
    let mut r = negotiate::json(StatusCode::OK, &if core { api::discovery::api_versions() } else { api::discovery::api_group_list() });
    r.headers_mut().insert("Vary", HeaderValue::from_static("Accept"));
    r
}

/// Non-resource requests: health, version, discovery, OpenAPI, metrics, storage admin.
pub async fn route(app: &App, method: &Method, segs: &[&str], headers: &HeaderMap, query: &Query) -> ApiResult<Response<Body>> {
    match segs {
        ["version"] => return Ok(negotiate::json(StatusCode::OK, &version())),
        ["healthz" | "livez" | "readyz", ..] if segs.len() <= 2 => return Ok(app.health.respond(&segs, query.get("verbose").is_some()).await),
        ["metrics"] => return Ok(app.health.metrics()),
        ["lockbox", "v1", "storage", "compact"] if *method == Method::POST => return crate::storage_admin::compact_response(&app.registry).await,
        ["lockbox", "v1", "storage", "status"] => return crate::storage_admin::status_response(&app.registry, &app.encryption, query).await,
        ["api"] => return Ok(discovery_response(headers, true)),
        ["apis"] => return Ok(discovery_response(headers, false)),
        ["openapi", "v3"] => return Ok(negotiate::json(StatusCode::OK, &app.openapi.v3_root())),
        ["openapi", "v3", rest @ ..] => {
            let key = rest.join("/");
            return match app.openapi.v3.get(&key) {
                Some((doc, _)) => {
                    let mut r = negotiate::json(StatusCode::OK, doc);
                    if query.get("hash").is_some() {
                        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
                    }
                    Ok(r)
                }
                None => Err(ApiError::path_not_found()),
            };
        }
        ["openapi", "v2"] | ["swagger.json"] => {
            let mut r = Response::new(Body::from(app.openapi.v2_protobuf.clone()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"));
            return Ok(r);
        }
        ["api", "v1"] => return api::discovery::resource_list("", "v1").map(|v| negotiate::json(StatusCode::OK, &v)).ok_or_else(ApiError::path_not_found),
        ["apis", group] => return api::discovery::api_group(group).map(|v| negotiate::json(StatusCode::OK, &v)).ok_or_else(ApiError::path_not_found),
        ["apis", group, version] => {
            return api::discovery::resource_list(group, version).map(|v| negotiate::json(StatusCode::OK, &v)).ok_or_else(ApiError::path_not_found)
        }
        _ => {}
    }
    match segs {
        [".well-known", "openid-configuration"] => Ok(negotiate::json(StatusCode::OK, &app.authn_discovery())),
        ["openid", "v1", "jwks"] => Ok(negotiate::json(StatusCode::OK, &app.authn.signer.jwks())),
        _ => Err(ApiError::path_not_found()),
    }
}
