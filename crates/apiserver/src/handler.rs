//! The HTTP front: routes a request to discovery, OpenAPI, health, or a resource verb, decodes
//! its body and parameters, and encodes the answer. Resource semantics live in `rest` and in the
//! kinds' strategies; this module only translates between HTTP and them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

use api::kinds::{self, Resource};
use api::object;
use api::patch::{self, PatchType};
use api::selector::{FieldSelector, LabelSelector};
use api::status::success_status;
use api::{codec, ApiError, ApiResult};

use auth::UserInfo;

use crate::authn::PeerCertificate;
use crate::authz::{self, CacheRbac};
use crate::negotiate::{self, Negotiated, Transform};
use crate::rest::{DeleteOptions, DeleteOutcome, ListOptions, Registry, WriteOptions};

/// kube-apiserver's limit on a request body (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct App {
    pub registry: Arc<Registry>,
    pub openapi: api::openapi::OpenApi,
    pub health: crate::health::Health,
    pub encryption: Arc<crypt::reload::Reloading>,
    pub authn: crate::authn::Authenticator,
    pub audit: Option<crate::audit::AuditLog>,
    pub agents: crate::proxy::AgentClient,
    pub fairness: crate::fairness::Fairness,
}

impl App {
    /// The OpenID discovery document for the ServiceAccount issuer.
    fn authn_discovery(&self) -> Value {
        let iss = &self.authn.signer.issuer;
        json!({"issuer": iss, "jwks_uri": format!("{iss}/openid/v1/jwks"), "response_types_supported": ["id_token"], "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["ES256"]})
    }
}

/// The `/version` answer. `minor` picks which bundled kubectl the image's dispatcher runs
/// (reference/kubectl-wire.md §0), so it stays at a version every test was run with.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "0000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc", "platform": "linux/amd64",
    })
}

/// Query parameters; the last value of a repeated parameter wins.
pub struct Query(HashMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect())
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1" | "True"))
    }
    /// The same query with `fieldSelector` narrowed to one name (a watch on a named path).
    fn pinned_to(&self, name: &str) -> Query {
        let mut q = self.0.clone();
        let pin = format!("metadata.name={name}");
        let fs = match q.get("fieldSelector").filter(|f| !f.is_empty()) {
            Some(f) => format!("{f},{pin}"),
            None => pin,
        };
        q.insert("fieldSelector".into(), fs);
        Query(q)
    }
}

/// Is this path a resource request (`/api/v1/...` or `/apis/g/v/...` naming a resource)?
fn is_resource_path(segs: &[&str]) -> bool {
    matches!(segs, ["api", _, _, ..] | ["apis", _, _, _, ..])
}

pub async fn handle(State(app): State<Arc<App>>, req: Request) -> Response<Body> {
    let received = jiff::Timestamp::now();
    let cert = req.extensions().get::<PeerCertificate>().and_then(|p| p.0.clone());
    let peer = req.extensions().get::<std::net::SocketAddr>().map(|a| a.ip().to_string()).unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let query = Query::parse(parts.uri.query());
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let path = parts.uri.path().to_string();
    // Path segments are percent-decoded, as Go's URL parsing does for kube-apiserver
    // (`/secrets/%6Fther` names `other`).
    let decoded: Vec<std::borrow::Cow<str>> =
        path.split('/').filter(|s| !s.is_empty()).map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy()).collect();
    let segs: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
    let target = if is_resource_path(&segs) { Some(parse_target(&segs)) } else { None };
    let api_version = segs.get(if segs.first() == Some(&"apis") { 2 } else { 1 }).copied().unwrap_or_default();
    let request_uri = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    // The attributes of this request, made by `user`.
    let attributes_as = |user: &auth::UserInfo| match &target {
        Some(Ok(t)) => authz::resource_attributes(user, &parts.method, t, &query),
        _ => authz::non_resource_attributes(user, &parts.method, &path),
    };
    let audit = |attrs: &auth::Attributes, authenticated: &auth::UserInfo, code: u16, status: Option<Value>, decision: Option<(&'static str, String)>| {
        if let Some(audit) = &app.audit {
            audit.record(crate::audit::Record {
                attrs,
                authenticated,
                impersonated: attrs.user != *authenticated,
                request_uri: &request_uri,
                source_ip: peer.clone(),
                user_agent: &user_agent,
                api_version,
                code,
                status,
                decision,
                received,
            });
        }
    };
    let user = match app.authn.authenticate(&parts.headers, cert.as_ref()).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(?e, %path, "authentication failed");
            let err = ApiError::unauthorized();
            // A failed authentication is audited too (kube-apiserver's
            // WithFailedAuthenticationAudit): "who tried to read this Secret" has an answer.
            let nobody = auth::UserInfo::default();
            audit(&attributes_as(&nobody), &nobody, 401, Some(err.to_json()), None);
            return negotiate::error(&err);
        }
    };
    let rbac = CacheRbac(app.registry.clone());
    // Impersonation failures are errors of the request; authorization failures are audited
    // as a "forbid" decision.
    let decide = || {
        let acting = authz::impersonate(&rbac, user.clone(), &parts.headers);
        // A refused impersonation is audited against what was asked for, as the authenticated
        // user.
        let attrs = attributes_as(acting.as_ref().unwrap_or(&user));
        let verdict = match acting {
            Err(e) => Err((e, false)),
            Ok(acting) => authz::authorize(&rbac, &attrs).map(|why| (acting, why)).map_err(|e| (e, true)),
        };
        (attrs, verdict)
    };
    let (mut attrs, mut verdict) = decide();
    // RBAC is read from the watch cache, which can trail a write that was just acknowledged.
    // A denial is final only once the cache has caught up, so a client that grants itself a
    // role and then uses it is not refused.
    if verdict.is_err() && app.registry.sync().await.is_ok() {
        (attrs, verdict) = decide();
    }
    let mut decision = None;
    let result = match verdict {
        Err((e, forbidden)) => {
            if forbidden {
                decision = Some(("forbid", String::new()));
            }
            Err(e)
        }
        Ok((acting, why)) => {
            decision = Some(("allow", why));
            // Held until the answer is made (a streamed answer is long-running, not counted).
            let admitted = app.fairness.admit(&attrs).await;
            match (admitted, target) {
                (Err(e), _) => Err(e),
                (Ok(_admitted), target) => match target {
                    Some(Ok(t)) => resource_request(&app, &parts.method, t, &parts.headers, &query, body, &acting, Upgrade { on_upgrade, raw_query }).await,
                    Some(Err(e)) => Err(e),
                    None => route(&app, &parts.method, &path, &segs, &parts.headers, &query).await,
                },
            }
        }
    };
    let (response, status) = match result {
        Ok(r) => (r, None),
        Err(e) => {
            if e.code >= 500 {
                tracing::warn!(code = e.code, reason = e.reason.as_str(), path = %path, "request failed");
            }
            (negotiate::error(&e), Some(e.to_json()))
        }
    };
    audit(&attrs, &user, response.status().as_u16(), status, decision);
    response
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
async fn route(app: &App, method: &Method, path: &str, segs: &[&str], headers: &HeaderMap, query: &Query) -> ApiResult<Response<Body>> {
    let _ = path;
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

/// Which object a resource path names (k8s.io/apiserver RequestInfoFactory).
pub struct Target {
    pub res: &'static Resource,
    pub namespace: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub watch_path: bool,
}

pub fn parse_target(segs: &[&str]) -> ApiResult<Target> {
    let (group, version, mut rest): (&str, &str, &[&str]) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest = &rest[1..];
    }
    let mut namespace = String::new();
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = rest[1].to_string();
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(ApiError::path_not_found()),
    };
    let res = kinds::find(group, version, resource).ok_or_else(ApiError::path_not_found)?;
    if !res.namespaced {
        // `/api/v1/namespaces/x` names the namespace itself.
        if res.kind == "Namespace" && name.is_none() && !namespace.is_empty() {
            return Ok(Target { res, name: Some(namespace), namespace: String::new(), subresource: sub, watch_path });
        }
        if !namespace.is_empty() && res.kind != "Namespace" {
            return Err(ApiError::path_not_found());
        }
        namespace.clear();
    }
    Ok(Target { res, namespace, name, subresource: sub, watch_path })
}

/// How much of a refused body is still read (and discarded), and for how long, so that a
/// client still sending it gets to read the 413 (an HTTP/1.1 client writing into a closed
/// connection sees a broken pipe, an HTTP/2 one a reset stream, and neither the answer).
const DRAIN_AFTER_REFUSAL: usize = 128 << 20;
const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a request body may take to arrive (kube-apiserver's request timeout): a client
/// trickling a body holds no more than its connection, and that only this long.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads a request body of at most [`MAX_BODY`] bytes, refusing a larger one as soon as it is
/// known to be larger (its Content-Length, or the bytes read so far), and one that takes
/// longer than [`BODY_DEADLINE`] with 408.
pub async fn read_body(body: Body) -> ApiResult<Bytes> {
    tokio::time::timeout(BODY_DEADLINE, read_body_unbounded_in_time(body))
        .await
        .unwrap_or_else(|_| Err(ApiError::http_layer(408, format!("the request body did not arrive within {}s", BODY_DEADLINE.as_secs()))))
}

async fn read_body_unbounded_in_time(mut body: Body) -> ApiResult<Bytes> {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    let too_large = |body: Body| {
        tokio::spawn(async move {
            let mut body = body;
            let mut drained = 0usize;
            let _ = tokio::time::timeout(DRAIN_DEADLINE, async {
                while let Some(Ok(frame)) = body.frame().await {
                    drained += frame.data_ref().map_or(0, Bytes::len);
                    if drained > DRAIN_AFTER_REFUSAL {
                        break;
                    }
                }
            })
            .await;
        });
        ApiError::request_entity_too_large(format!("Request entity too large: limit is {MAX_BODY}"))
    };
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large(body));
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::bad_request("error reading the request body"))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > MAX_BODY {
                return Err(too_large(body));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

pub fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

fn field_validation(q: &Query) -> ApiResult<FieldValidation> {
    match q.get("fieldValidation").unwrap_or("") {
        "" | "Warn" => Ok(FieldValidation::Warn),
        "Ignore" => Ok(FieldValidation::Ignore),
        "Strict" => Ok(FieldValidation::Strict),
        other => Err(ApiError::bad_request(format!("fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""))),
    }
}

/// `dryRun`, validated as ValidateDryRun does, with the options kind (CreateOptions, …) named.
fn dry_run(q: &Query, kind: &str) -> ApiResult<bool> {
    match q.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "meta.k8s.io",
            kind,
            "",
            &[api::validation::FieldError {
                kind: api::validation::ErrorType::NotSupported,
                field: "dryRun".into(),
                value: Some(format!("[]string{{{}}}", api::validation::go_quote(other))),
                detail: "supported values: \"All\"".into(),
            }],
        )),
    }
}

/// The write options of a create, update or patch (`kind`: CreateOptions, UpdateOptions or
/// PatchOptions; `apply` for a server-side apply patch).
pub fn write_options(q: &Query, headers: &HeaderMap, kind: &str, apply: bool) -> ApiResult<WriteOptions> {
    if kind == "PatchOptions" && !apply && q.get("force").is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[api::validation::FieldError::forbidden("force", "may not be specified for non-apply patch")],
        ));
    }
    let manager = match q.get("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ if apply => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                &[api::validation::FieldError::required("fieldManager", "is required for apply patch")],
            ));
        }
        _ => {
            let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
            ua.split('/').next().unwrap_or("unknown").to_string()
        }
    };
    if manager.len() > 128 {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[api::validation::FieldError::invalid("fieldManager", &manager, "must be no more than 128 characters")],
        ));
    }
    Ok(WriteOptions { dry_run: dry_run(q, kind)?, field_manager: manager, ownership_recorded: false })
}

/// Problems fieldValidation reports: unknown fields (dropped) and duplicate keys.
struct FieldProblems(Vec<String>);

impl FieldProblems {
    fn new(unknown: &[String], duplicates: &[String]) -> Self {
        let mut v: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        v.extend(duplicates.iter().map(|f| format!("duplicate field \"{f}\"")));
        FieldProblems(v)
    }
    /// Strict turns problems into a 400; Warn returns them as warnings.
    fn check(self, mode: FieldValidation) -> ApiResult<Vec<String>> {
        self.check_as(mode, None)
    }
    /// As `check`; a create or update names the kind first, as its decoder error does
    /// (`ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: …`).
    fn check_as(self, mode: FieldValidation, res: Option<&Resource>) -> ApiResult<Vec<String>> {
        match mode {
            _ if self.0.is_empty() => Ok(vec![]),
            FieldValidation::Strict => {
                let prefix = res.map(|r| format!("{} in version \"{}\" cannot be handled as a {}: ", r.kind, r.version, r.kind)).unwrap_or_default();
                Err(ApiError::bad_request(format!("{prefix}strict decoding error: {}", self.0.join(", "))))
            }
            FieldValidation::Warn => Ok(self.0),
            FieldValidation::Ignore => Ok(vec![]),
        }
    }
}

/// Checks apiVersion and kind of a body (filling them in when absent) and type-checks it.
fn type_check(res: &Resource, mut obj: Value) -> ApiResult<(Value, Vec<String>)> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            if obj.is_null() { "null".into() } else { "<non-object body>".to_string() }
        )));
    }
    let want_version = res.api_version();
    match obj["apiVersion"].as_str() {
        None | Some("") => obj["apiVersion"] = json!(want_version),
        Some(v) if v == want_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!("the API version in the data ({v}) does not match the expected API version ({want_version})")));
        }
    }
    match obj["kind"].as_str() {
        None | Some("") => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => return Err(ApiError::bad_request(format!("the object provided is unrecognized (must be of type {}): kind {k:?}", res.kind))),
    }
    res.strategy
        .roundtrip(obj)
        .map_err(|e| ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: {e}", res.kind, res.version, res.kind)))
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(h) = HeaderValue::from_str(&v) {
            r.headers_mut().append("Warning", h);
        }
    }
    r
}

/// A list response, serialized from the cached objects without copying them.
struct ListBody<'a> {
    kind: String,
    api_version: String,
    metadata: &'a Value,
    items: &'a [std::sync::Arc<Value>],
}

impl serde::Serialize for ListBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("apiVersion", &self.api_version)?;
        m.serialize_entry("metadata", self.metadata)?;
        m.serialize_entry("items", &ListItems(self.items))?;
        m.end()
    }
}

struct ListItems<'a>(&'a [std::sync::Arc<Value>]);

impl serde::Serialize for ListItems<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|o| ListItem(o)))
    }
}

/// An item without what clients never see (kind/apiVersion are implied by the list).
struct ListItem<'a>(&'a Value);

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_object() {
            Some(obj) => s.collect_map(obj.iter().filter(|(k, _)| *k != "kind" && *k != "apiVersion")),
            None => self.0.serialize(s),
        }
    }
}

fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

fn encode_one(res: &Resource, obj: &Value, n: Negotiated, q: &Query) -> Value {
    match n.transform {
        Transform::Table => api::table::table(
            res,
            std::slice::from_ref(obj),
            json!({"resourceVersion": object::resource_version(obj)}),
            q.get("includeObject").unwrap_or("Metadata"),
        ),
        Transform::PartialMetadata => partial_metadata(obj),
        Transform::None => obj.clone(),
    }
}

pub fn list_options(q: &Query) -> ApiResult<ListOptions> {
    let label_selector = LabelSelector::parse(q.get("labelSelector").unwrap_or("")).map_err(|e| {
        ApiError::bad_request(
            format!("unable to parse requirement: {e}").replace("unable to parse requirement: unable to parse requirement: ", "unable to parse requirement: "),
        )
    })?;
    let field_selector = FieldSelector::parse(q.get("fieldSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
    let limit = match q.get("limit") {
        None | Some("") => 0,
        Some(l) => l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?.max(0) as usize,
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: q.get("continue").filter(|c| !c.is_empty()).map(String::from),
        resource_version: q.get("resourceVersion").map(String::from),
        resource_version_match: q.get("resourceVersionMatch").map(String::from),
    })
}

/// ValidateListOptions for a list (not a watch), then the etcd3 store's check of `continue`
/// with a resourceVersion.
fn validate_list(q: &Query) -> ApiResult<()> {
    use api::validation::FieldError;
    let rv = q.get("resourceVersion").unwrap_or("");
    let cont = q.get("continue").unwrap_or("");
    let mut errs = Vec::new();
    if let Some(m) = q.get("resourceVersionMatch").filter(|m| !m.is_empty()) {
        if rv.is_empty() {
            errs.push(FieldError::forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"));
        }
        if !cont.is_empty() {
            errs.push(FieldError::forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"));
        }
        if m != "Exact" && m != "NotOlderThan" {
            errs.push(FieldError::not_supported("resourceVersionMatch", m, &["Exact", "NotOlderThan", ""]));
        }
        if m == "Exact" && rv == "0" {
            errs.push(FieldError::forbidden("resourceVersionMatch", "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""));
        }
    }
    if q.get("sendInitialEvents").is_some() {
        errs.push(FieldError::forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", &errs));
    }
    if !cont.is_empty() && !rv.is_empty() && rv != "0" {
        return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
    }
    Ok(())
}

/// Every field selector term must name a field the kind supports.
pub fn check_fields(res: &Resource, opts: &ListOptions) -> ApiResult<()> {
    let probe = json!({});
    for t in &opts.field_selector.terms {
        if res.field_value(&probe, &t.field).is_none() {
            return Err(ApiError::bad_request(format!("field label not supported: {}", t.field)));
        }
    }
    Ok(())
}

/// What an exec needs from the raw request: the connection upgrade and the query as sent
/// (`command` repeats).
pub struct Upgrade {
    pub on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    pub raw_query: String,
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    app: &App,
    method: &Method,
    t: Target,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
    user: &UserInfo,
    upgrade: Upgrade,
) -> ApiResult<Response<Body>> {
    let reg = &app.registry;
    let res = t.res;
    let ns = t.namespace.as_str();
    if res.namespaced && ns.is_empty() && !(method == Method::GET && t.name.is_none()) {
        return Err(ApiError::method_not_allowed());
    }
    let n = negotiate::negotiate(headers)?;
    let rbac = CacheRbac(app.registry.clone());
    if authz::escalation_checked(res, user) && *method != Method::GET {
        // The escalation check reads the writer's own grants from the cache: let it catch up.
        reg.sync().await?;
    }
    if res.virtual_create {
        if *method != Method::POST || t.name.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        let bytes = read_body(body).await?;
        let decoded = codec::decode(content_type(headers), &bytes, res.kind)?;
        let (obj, _) = type_check(res, decoded.value)?;
        let out = crate::reviews::create(app, res, ns, user, obj).await?;
        return Ok(negotiate::respond(StatusCode::CREATED, &out, n.format));
    }
    if let Some(sub) = &t.subresource {
        let name = t.name.clone().unwrap_or_default();
        if res.kind == "ServiceAccount" && sub == "token" {
            if *method != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            let bytes = read_body(body).await?;
            let decoded = codec::decode(content_type(headers), &bytes, "TokenRequest")?;
            let out = crate::reviews::token_request(app, ns, &name, decoded.value).await?;
            return Ok(negotiate::respond(StatusCode::CREATED, &out, n.format));
        }
        match (res.kind, sub.as_str()) {
            ("Namespace", "finalize") => {}
            (
                "Namespace" | "Pod" | "Node" | "Deployment" | "ReplicaSet" | "SecretStore" | "ClusterSecretStore" | "ExternalSecret" | "ClusterExternalSecret",
                "status",
            ) => return crate::subresources::status(app, t.res, ns, &name, method, headers, q, body, n).await,
            ("Deployment" | "ReplicaSet", "scale") => return crate::subresources::scale(app, t.res, ns, &name, method, headers, q, body, n).await,
            ("Pod", "binding") if *method == Method::POST => return crate::subresources::binding(app, t.res, ns, &name, headers, body).await,
            ("Pod", "log") if *method == Method::GET => return crate::proxy::logs(app, ns, &name, q, headers).await,
            ("Pod", "exec" | "attach") => return crate::proxy::exec(app, ns, &name, method, q, &upgrade.raw_query, headers, upgrade.on_upgrade).await,
            _ => return Err(ApiError::path_not_found()),
        }
    }
    match (method.clone(), &t.name) {
        // The deprecated `/watch/.../NAME` paths watch one object.
        (Method::GET, Some(name)) if t.watch_path => {
            let q = q.pinned_to(name);
            let opts = list_options(&q)?;
            crate::watch::serve(reg, res, ns, &opts, &q, n).await
        }
        (Method::GET, None) => {
            let opts = list_options(q)?;
            check_fields(res, &opts)?;
            if t.watch_path || q.flag("watch") {
                return crate::watch::serve(reg, res, ns, &opts, q, n).await;
            }
            validate_list(q)?;
            let list = reg.list(res, ns, &opts).await?;
            let include = q.get("includeObject").unwrap_or("Metadata").to_string();
            // Encoding a large list is milliseconds of CPU: done at low priority, off the
            // async workers, so the short requests of other clients go first.
            crate::fairness::low_priority(move || {
                let mut meta = json!({"resourceVersion": list.resource_version.to_string()});
                if let Some(c) = &list.continue_token {
                    meta["continue"] = json!(c);
                    meta["remainingItemCount"] = json!(list.remaining.unwrap_or(0));
                }
                let body = match n.transform {
                    Transform::Table => api::table::table(res, list.items.iter().map(|o| &**o), meta, &include),
                    Transform::PartialMetadata => {
                        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": list.items.iter().map(|o| partial_metadata(o)).collect::<Vec<_>>()})
                    }
                    Transform::None => {
                        // Serialized straight from the cache's shared objects: a list of 10,000
                        // Secrets is not copied first.
                        let body = ListBody { kind: res.list_kind(), api_version: res.api_version(), metadata: &meta, items: &list.items };
                        return Ok(negotiate::respond(StatusCode::OK, &body, n.format));
                    }
                };
                Ok(negotiate::respond(StatusCode::OK, &body, n.format))
            })
            .await
        }
        (Method::GET, Some(name)) => {
            let obj = reg.get(res, ns, name).await?;
            Ok(negotiate::respond(StatusCode::OK, &encode_one(res, &obj, n, q), n.format))
        }
        (Method::POST, None) => {
            let bytes = read_body(body).await?;
            let decoded = codec::decode(content_type(headers), &bytes, res.kind)?;
            let (mut obj, unknown) = type_check(res, decoded.value)?;
            let warnings = FieldProblems::new(&unknown, &decoded.duplicates).check_as(field_validation(q)?, Some(res))?;
            if res.namespaced {
                match object::namespace(&obj) {
                    "" => object::set_meta(&mut obj, "namespace", ns),
                    body_ns if body_ns != ns => {
                        return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
                    }
                    _ => {}
                }
            } else if let Some(m) = obj["metadata"].as_object_mut() {
                // A cluster-scoped object has no namespace: one in the body is dropped
                // (EnsureObjectNamespaceMatchesRequestNamespace).
                m.remove("namespace");
            }
            let opts = write_options(q, headers, "CreateOptions", false)?;
            authz::check_escalation(&rbac, res, user, ns, &obj)?;
            if res.kind == "Pod" {
                crate::admission::pod(reg, ns, &mut obj).await?;
            }
            let created = reg.create(res, ns, obj, &opts).await?;
            Ok(with_warnings(negotiate::respond(StatusCode::CREATED, &encode_one(res, &created, n, q), n.format), &warnings))
        }
        (Method::PUT, Some(name)) => {
            let bytes = read_body(body).await?;
            let decoded = codec::decode(content_type(headers), &bytes, res.kind)?;
            let (mut obj, unknown) = type_check(res, decoded.value)?;
            let warnings = FieldProblems::new(&unknown, &decoded.duplicates).check_as(field_validation(q)?, Some(res))?;
            check_name(res, &mut obj, ns, name)?;
            let opts = write_options(q, headers, "UpdateOptions", false)?;
            let updated = match t.subresource.as_deref() {
                Some("finalize") => finalize_namespace(reg, name, obj, &opts).await?,
                Some("status") => {
                    let current = reg.get(res, ns, name).await?;
                    let mut new = (*current).clone();
                    new["status"] = obj["status"].clone();
                    reg.write_raw(res, ns, name, &current, Some(&new)).await?;
                    reg.get(res, ns, name).await?.as_ref().clone()
                }
                _ => {
                    authz::check_escalation(&rbac, res, user, ns, &obj)?;
                    reg.update(res, ns, name, obj, &opts).await?
                }
            };
            Ok(with_warnings(negotiate::respond(StatusCode::OK, &encode_one(res, &updated, n, q), n.format), &warnings))
        }
        (Method::PATCH, Some(name)) => {
            let ct = content_type(headers).to_string();
            let pt = PatchType::from_content_type(&ct).ok_or_else(|| ApiError::unsupported_media_type(&ct, patch::PATCH_CONTENT_TYPES))?;
            let bytes = read_body(body).await?;
            let mode = field_validation(q)?;
            if pt == PatchType::Apply {
                return apply_patch(app, res, ns, name, headers, q, &bytes, mode, n, user).await;
            }
            let opts = write_options(q, headers, "PatchOptions", false)?;
            let mut warnings = Vec::new();
            let patched = reg
                .guaranteed_update(res, ns, name, &opts, |current| {
                    let out = match pt {
                        PatchType::Json => patch::json_patch(current, &bytes)?,
                        PatchType::Merge => patch::merge_patch(current, &bytes)?,
                        _ => patch::strategic_merge_patch(current, &bytes)?,
                    };
                    let (mut obj, unknown) = type_check(res, out)?;
                    warnings = FieldProblems::new(&unknown, &[]).check(mode)?;
                    check_name(res, &mut obj, ns, name)?;
                    authz::check_escalation(&rbac, res, user, ns, &obj)?;
                    Ok(obj)
                })
                .await?;
            Ok(with_warnings(negotiate::respond(StatusCode::OK, &encode_one(res, &patched, n, q), n.format), &warnings))
        }
        (Method::DELETE, Some(name)) => {
            let bytes = read_body(body).await?;
            let opts = delete_options(q, &bytes)?;
            match reg.delete(res, ns, name, &opts).await? {
                DeleteOutcome::Deleted(obj) => Ok(negotiate::json(StatusCode::OK, &success_status(res.group, res.plural, name, object::uid(&obj)))),
                DeleteOutcome::Pending(obj) => {
                    // handlers/delete.go: 200 for a pending deletion, 202 only with orphanDependents=false.
                    let code = if opts.orphan_dependents_false { StatusCode::ACCEPTED } else { StatusCode::OK };
                    Ok(negotiate::respond(code, &encode_one(res, &obj, n, q), n.format))
                }
            }
        }
        (Method::DELETE, None) => {
            if res.kind == "Namespace" {
                return Err(ApiError::method_not_supported(res.group, res.plural, "deletecollection"));
            }
            let bytes = read_body(body).await?;
            let dopts = delete_options(q, &bytes)?;
            let lopts = list_options(q)?;
            check_fields(res, &lopts)?;
            let list = reg.list(res, ns, &ListOptions { limit: 0, continue_token: None, ..lopts }).await?;
            let mut deleted = Vec::new();
            for obj in list.items {
                match reg.delete(res, object::namespace(&obj), object::name(&obj), &dopts).await {
                    Ok(DeleteOutcome::Deleted(o)) | Ok(DeleteOutcome::Pending(o)) => deleted.push(serde_json::to_value(ListItem(&o)).unwrap_or_default()),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            let body = json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": {"resourceVersion": reg.cache.current_revision().to_string()}, "items": deleted});
            Ok(negotiate::json(StatusCode::OK, &body))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn apply_patch(
    app: &App,
    res: &Resource,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
    q: &Query,
    bytes: &[u8],
    mode: FieldValidation,
    n: Negotiated,
    user: &UserInfo,
) -> ApiResult<Response<Body>> {
    let opts = write_options(q, headers, "PatchOptions", true)?;
    let value: Value = if bytes.first() == Some(&b'{') {
        codec::decode_json(bytes).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?.value
    } else {
        codec::decode_yaml(bytes).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?.value
    };
    for field in ["apiVersion", "kind"] {
        if value[field].as_str().unwrap_or_default().is_empty() {
            return Err(ApiError::bad_request(format!("invalid object type: {}", if field == "kind" { "kind not set" } else { "apiVersion not set" })));
        }
    }
    let (mut applied, unknown) = type_check(res, value)?;
    let warnings = FieldProblems::new(&unknown, &[]).check(mode)?;
    check_name(res, &mut applied, ns, name)?;
    let force = q.flag("force");
    let rbac = CacheRbac(app.registry.clone());
    // An apply that creates is a create: kube-apiserver authorizes verb `create` as well as
    // `patch` then, or `patch` alone would be enough to make any object (a token Secret, say).
    if app.registry.get(res, ns, name).await.is_err_and(|e| e.is_not_found()) {
        let create = auth::Attributes {
            user: user.clone(),
            verb: "create".into(),
            namespace: ns.into(),
            api_group: res.group.into(),
            resource: res.plural.into(),
            name: name.into(),
            resource_request: true,
            ..Default::default()
        };
        if authz::authorize(&rbac, &create).is_err() {
            app.registry.sync().await?;
            authz::authorize(&rbac, &create)?;
        }
    }
    authz::check_escalation(&rbac, res, user, ns, &applied)?;
    let (obj, created) = app.registry.apply(res, ns, name, &applied, force, &opts).await?;
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_warnings(negotiate::respond(code, &encode_one(res, &obj, n, q), n.format), &warnings))
}

/// The body's name must match the URL; its namespace must match or be empty (then filled in).
fn check_name(res: &Resource, obj: &mut Value, ns: &str, name: &str) -> ApiResult<()> {
    let body_name = object::name(obj);
    if body_name != name {
        return Err(ApiError::bad_request(format!("the name of the object ({body_name}) does not match the name on the URL ({name})")));
    }
    if res.namespaced {
        match object::namespace(obj) {
            "" => object::set_meta(obj, "namespace", ns),
            body_ns if body_ns != ns => {
                return Err(ApiError::bad_request(format!("the namespace of the object ({body_ns}) does not match the namespace on the URL ({ns})")));
            }
            _ => {}
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    Ok(())
}

fn delete_options(q: &Query, body: &[u8]) -> ApiResult<DeleteOptions> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        codec::decode_json(body).map_err(|e| ApiError::bad_request(format!("DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions: {e}")))?.value
    };
    let policy = q.get("propagationPolicy").map(String::from).or_else(|| opts["propagationPolicy"].as_str().map(String::from));
    if let Some(p) = policy.as_deref() {
        if !matches!(p, "Foreground" | "Background" | "Orphan") {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &[api::validation::FieldError::not_supported("propagationPolicy", p, &["Foreground", "Background", "Orphan", "nil"])],
            ));
        }
    }
    let dry = dry_run(q, "DeleteOptions")? || opts["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All"));
    let grace_period = q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()).or_else(|| opts["gracePeriodSeconds"].as_i64());
    let orphan = opts["orphanDependents"].as_bool() == Some(true) || q.get("orphanDependents") == Some("true");
    Ok(DeleteOptions {
        dry_run: dry,
        precondition_uid: opts["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv: opts["preconditions"]["resourceVersion"].as_str().map(String::from),
        grace_period,
        propagation: policy.or_else(|| orphan.then(|| "Orphan".to_string())),
        orphan_dependents_false: opts["orphanDependents"].as_bool() == Some(false) || q.get("orphanDependents") == Some("false"),
    })
}

/// PUT namespaces/NAME/finalize: sets spec.finalizers; a terminating namespace whose
/// finalizers are all gone is removed.
async fn finalize_namespace(reg: &Registry, name: &str, obj: Value, opts: &WriteOptions) -> ApiResult<Value> {
    let res = &kinds::NAMESPACES;
    let current = reg.get(res, "", name).await?;
    let mut new = (*current).clone();
    new["spec"]["finalizers"] = obj["spec"]["finalizers"].clone();
    if opts.dry_run {
        return Ok(new);
    }
    let done = object::is_deleting(&new) && new["spec"]["finalizers"].as_array().is_none_or(|f| f.is_empty()) && object::finalizers(&new).is_empty();
    reg.write_raw(res, "", name, &current, if done { None } else { Some(&new) }).await?;
    Ok(new)
}
