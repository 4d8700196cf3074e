//! Content negotiation for responses: JSON by default, YAML on request, `meta.k8s.io` Table and
//! PartialObjectMetadata transformations when the Accept header asks for them.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::Value;

use api::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    None,
    Table,
    PartialMetadata,
}

#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    pub format: Format,
    pub transform: Transform,
}

/// Reads the Accept header. Protobuf responses are not produced; kubectl always lists JSON as
/// an alternative, and a client that accepts nothing else gets 406 as kube-apiserver would
/// give for an unknown type.
pub fn negotiate(headers: &HeaderMap) -> Result<Negotiated, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Negotiated { format: Format::Json, transform: Transform::None });
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).collect();
        let param = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let format = match media {
            "application/json" | "*/*" | "application/*" | "" => Format::Json,
            "application/yaml" => Format::Yaml,
            _ => continue,
        };
        let transform = match (param("as"), param("g"), param("v")) {
            (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) => Transform::Table,
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) => Transform::PartialMetadata,
            (Some(_), _, _) => continue,
            _ => Transform::None,
        };
        return Ok(Negotiated { format, transform });
    }
    Err(ApiError::not_acceptable(&["application/json", "application/yaml"]))
}

pub fn respond(code: StatusCode, body: &impl serde::Serialize, format: Format) -> Response<Body> {
    let (ct, bytes) = match format {
        Format::Json => ("application/json", serde_json::to_vec(body).unwrap_or_default()),
        Format::Yaml => ("application/yaml", serde_norway::to_string(body).unwrap_or_default().into_bytes()),
    };
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

pub fn json(code: StatusCode, body: &Value) -> Response<Body> {
    respond(code, body, Format::Json)
}

pub fn error(e: &ApiError) -> Response<Body> {
    let mut r = json(StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.to_json());
    // As kube-apiserver's responsewriters: a Status that says when to retry says it in the
    // header too, which is what client-go's back-off reads.
    if let Some(secs) = e.details.as_ref().and_then(|d| d.retry_after_seconds).filter(|s| *s > 0) {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

pub fn text(code: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
