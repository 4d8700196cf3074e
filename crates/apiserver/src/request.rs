//! The request, parsed once: its path as a target (k8s.io/apiserver's RequestInfoFactory),
//! its verb, its query, and its body, read once under the size and time limits. Built before
//! authentication, read by authorization, admission and the verb that serves it.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method};

use api::kinds::{self, Resource};
use api::resource::Subresource;
use api::{ApiError, ApiResult};

/// kube-apiserver's limit on a request body (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Query parameters. As Go's parameter decoding does, the first value of a repeated parameter
/// is the one read.
#[derive(Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Query(map)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A boolean parameter as apimachinery converts one: absent, `0` and `false` (any case)
    /// are false; any other value, the empty one included, is true.
    pub fn flag(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
    }

    /// The same query with `fieldSelector` narrowed to one name (a watch on a named path).
    pub fn pinned_to(&self, name: &str) -> Query {
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

/// Which object a resource path names.
pub struct Target {
    pub res: &'static Resource,
    pub namespace: String,
    pub name: Option<String>,
    /// The subresource segment as sent (it may name none the kind serves: then 404).
    pub subresource: Option<String>,
    /// The deprecated `/watch/` prefix.
    pub watch_path: bool,
}

impl Target {
    /// The subresource the kind serves under this name; `Err` for a name it does not serve.
    pub fn served_subresource(&self) -> ApiResult<Option<Subresource>> {
        match &self.subresource {
            None => Ok(None),
            Some(s) => self.res.subresource(s).map(Some).ok_or_else(ApiError::path_not_found),
        }
    }
}

/// Is this path a resource request (`/api/v1/...` or `/apis/g/v/...` naming a resource)?
pub fn is_resource_path(segs: &[&str]) -> bool {
    matches!(segs, ["api", _, _, ..] | ["apis", _, _, _, ..])
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
        // `/namespaces/NAME/status` and `/finalize` are the namespace's own subresources.
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
        if res.names_namespaces() && name.is_none() && !namespace.is_empty() {
            return Ok(Target { res, name: Some(namespace), namespace: String::new(), subresource: sub, watch_path });
        }
        if !namespace.is_empty() && !res.names_namespaces() {
            return Err(ApiError::path_not_found());
        }
        namespace.clear();
    }
    Ok(Target { res, namespace, name, subresource: sub, watch_path })
}

/// What a request does, as authorization names it (RequestInfo's verb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// A stream into a container (exec, attach): authorized as `create` whatever the method,
    /// since a WebSocket upgrade is a GET.
    Connect,
    /// A method no verb has (OPTIONS, …): authorized by its name, then refused with 405.
    Other,
}

impl Verb {
    /// The verb of a resource request: the method, then the path and `watch` (one rule,
    /// apimachinery's boolean conversion, for authorization and serving alike).
    pub fn of(method: &Method, t: &Target, q: &Query) -> Verb {
        let connect = t.res.subresource(t.subresource.as_deref().unwrap_or_default()).is_some_and(Subresource::is_connect);
        match *method {
            _ if connect => Verb::Connect,
            Method::GET | Method::HEAD if t.watch_path => Verb::Watch,
            Method::GET | Method::HEAD if t.name.is_some() => Verb::Get,
            Method::GET | Method::HEAD if q.flag("watch") => Verb::Watch,
            Method::GET | Method::HEAD => Verb::List,
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            Method::DELETE if t.name.is_some() => Verb::Delete,
            Method::DELETE => Verb::DeleteCollection,
            _ => Verb::Other,
        }
    }

    /// The word RBAC rules name (`Other`: the method, lowercased, which no rule grants but `*`).
    pub fn as_str(self, method: &Method) -> String {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create | Verb::Connect => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Other => return method.as_str().to_lowercase(),
        }
        .to_string()
    }
}

/// What an exec needs from the raw request: the connection upgrade and the query as sent
/// (`command` repeats).
pub struct Upgrade {
    pub on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    pub raw_query: String,
}

/// A resource request, parsed: what the verbs and subresources are handed.
pub struct ResourceRequest {
    pub method: Method,
    pub verb: Verb,
    pub target: Target,
    pub query: Query,
    pub headers: HeaderMap,
    /// The user the request acts as (after impersonation).
    pub user: auth::UserInfo,
    pub upgrade: Upgrade,
    body: Option<Body>,
}

impl ResourceRequest {
    #[allow(clippy::too_many_arguments)]
    pub fn new(method: Method, verb: Verb, target: Target, query: Query, headers: HeaderMap, user: auth::UserInfo, body: Body, upgrade: Upgrade) -> Self {
        ResourceRequest { method, verb, target, query, headers, user, upgrade, body: Some(body) }
    }

    pub fn res(&self) -> &'static Resource {
        self.target.res
    }

    pub fn namespace(&self) -> &str {
        &self.target.namespace
    }

    /// The name on the path (empty for a collection).
    pub fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or_default()
    }

    pub fn content_type(&self) -> &str {
        content_type(&self.headers)
    }

    /// The body's bytes, read once under [`MAX_BODY`] and the body deadline; a second read
    /// is empty.
    pub async fn body(&mut self) -> ApiResult<Bytes> {
        match self.body.take() {
            Some(b) => read_body(b).await,
            None => Ok(Bytes::new()),
        }
    }

    /// The body as a `kind` object, in whichever encoding its Content-Type names.
    pub async fn decode_body(&mut self, kind: &str) -> ApiResult<api::codec::Decoded> {
        let bytes = self.body().await?;
        api::codec::decode(self.content_type(), &bytes, kind)
    }
}

pub fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> ApiResult<Target> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        parse_target(&segs)
    }

    fn verb(method: Method, path: &str, query: &str) -> Verb {
        Verb::of(&method, &target(path).unwrap(), &Query::parse(Some(query)))
    }

    #[test]
    fn targets_as_request_info_parses_them() {
        // (path, plural, namespace, name, subresource, watch prefix)
        let cases: &[(&str, &str, &str, Option<&str>, Option<&str>, bool)] = &[
            ("/api/v1/namespaces/a/secrets", "secrets", "a", None, None, false),
            ("/api/v1/namespaces/a/secrets/s", "secrets", "a", Some("s"), None, false),
            ("/api/v1/namespaces/a/pods/p/log", "pods", "a", Some("p"), Some("log"), false),
            ("/api/v1/namespaces/a", "namespaces", "", Some("a"), None, false),
            ("/api/v1/namespaces/a/finalize", "namespaces", "", Some("a"), Some("finalize"), false),
            ("/api/v1/namespaces/a/status", "namespaces", "", Some("a"), Some("status"), false),
            ("/api/v1/watch/namespaces/a/configmaps", "configmaps", "a", None, None, true),
            ("/api/v1/nodes/n/status", "nodes", "", Some("n"), Some("status"), false),
            ("/apis/apps/v1/namespaces/a/deployments/d/scale", "deployments", "a", Some("d"), Some("scale"), false),
            ("/api/v1/secrets", "secrets", "", None, None, false),
        ];
        for (path, plural, ns, name, sub, watch) in cases {
            let t = target(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                (t.res.plural, t.namespace.as_str(), t.name.as_deref(), t.subresource.as_deref(), t.watch_path),
                (*plural, *ns, *name, *sub, *watch),
                "{path}"
            );
        }
        for path in ["/api/v1/namespaces/a/nodes", "/api/v1/nosuch", "/api/v1/namespaces/a/secrets/s/x/y", "/apis/apps/v2/deployments"] {
            assert_eq!(target(path).err().map(|e| e.code), Some(404), "{path}");
        }
    }

    #[test]
    fn one_verb_rule_for_authorizing_and_serving() {
        let cm = "/api/v1/namespaces/a/configmaps";
        let cases = [
            (Method::GET, cm, "", Verb::List),
            (Method::GET, cm, "watch=true", Verb::Watch),
            (Method::GET, cm, "watch=1", Verb::Watch),
            // apimachinery's conversion: anything but 0 and false is true.
            (Method::GET, cm, "watch=yes", Verb::Watch),
            (Method::GET, cm, "watch=", Verb::Watch),
            (Method::GET, cm, "watch=FALSE", Verb::List),
            (Method::GET, cm, "watch=0", Verb::List),
            // The first of repeated values is the one read.
            (Method::GET, cm, "watch=false&watch=true", Verb::List),
            (Method::GET, "/api/v1/watch/namespaces/a/configmaps/c", "", Verb::Watch),
            (Method::GET, "/api/v1/namespaces/a/configmaps/c", "watch=true", Verb::Get),
            (Method::DELETE, cm, "", Verb::DeleteCollection),
            (Method::DELETE, "/api/v1/namespaces/a/configmaps/c", "", Verb::Delete),
            (Method::GET, "/api/v1/namespaces/a/pods/p/exec", "command=ls", Verb::Connect),
            (Method::POST, "/api/v1/namespaces/a/pods/p/attach", "", Verb::Connect),
            (Method::GET, "/api/v1/namespaces/a/pods/p/log", "", Verb::Get),
            (Method::OPTIONS, cm, "", Verb::Other),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(verb(method.clone(), path, query), want, "{method} {path}?{query}");
        }
    }

    #[test]
    fn unknown_subresources_are_not_found() {
        let t = target("/api/v1/namespaces/a/secrets/s/status").unwrap();
        assert_eq!(t.served_subresource().err().map(|e| e.code), Some(404));
        let t = target("/api/v1/namespaces/a/pods/p/binding").unwrap();
        assert_eq!(t.served_subresource().unwrap(), Some(Subresource::Binding));
    }
}
