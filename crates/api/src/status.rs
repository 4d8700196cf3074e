//! API errors as Kubernetes `Status` objects.
//!
//! Clients read these byte for byte: kubectl builds its error line from `reason`, `details.kind`,
//! `details.name` and `details.causes`, so the constructors here reproduce kube-apiserver's
//! messages and codes (k8s.io/apimachinery/pkg/api/errors).

use serde_json::{json, Value};

use crate::validation::FieldError;

#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// apimachinery's `StatusReason`: what a client decides on (`errors.IsNotFound`, …). Two
/// variants share the wire word `Conflict`: a write that lost its compare-and-swap (retried
/// by writers without a precondition) and an apply whose fields another manager owns (final).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No StatusReason (an HTTP-layer error): the wire Status has no `reason`.
    Unknown,
    NotFound,
    AlreadyExists,
    /// A stale resourceVersion or a failed precondition.
    Conflict,
    /// Server-side apply found fields owned by another manager.
    FieldConflict,
    Invalid,
    BadRequest,
    MethodNotAllowed,
    UnsupportedMediaType,
    NotAcceptable,
    RequestEntityTooLarge,
    Expired,
    Unauthorized,
    Forbidden,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    Timeout,
}

impl Reason {
    /// The word a Status carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unknown => "",
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict | Reason::FieldConflict => "Conflict",
            Reason::Invalid => "Invalid",
            Reason::BadRequest => "BadRequest",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::Expired => "Expired",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::InternalError => "InternalError",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::Timeout => "Timeout",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: Reason,
    pub message: String,
    pub details: Option<Details>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

/// `resource` or `resource.group`, as Kubernetes prints a GroupResource.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: Reason, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    /// The object (or the path) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.reason == Reason::NotFound
    }

    /// A create found the name taken.
    pub fn is_already_exists(&self) -> bool {
        self.reason == Reason::AlreadyExists
    }

    /// Any 409 Conflict, as client-go's `IsConflict` (a lost write or an apply conflict).
    pub fn is_conflict(&self) -> bool {
        matches!(self.reason, Reason::Conflict | Reason::FieldConflict)
    }

    /// A write that lost to a concurrent one (or failed a precondition): re-reading and
    /// writing again may succeed.
    pub fn is_write_conflict(&self) -> bool {
        self.reason == Reason::Conflict
    }

    pub fn is_forbidden(&self) -> bool {
        self.reason == Reason::Forbidden
    }

    pub fn is_invalid(&self) -> bool {
        self.reason == Reason::Invalid
    }

    /// The requested revision is compacted away (410).
    pub fn is_expired(&self) -> bool {
        self.reason == Reason::Expired
    }

    /// The backend a request is relayed to (an agent) could not be reached: 502, as
    /// kube-apiserver answers when it cannot dial a kubelet.
    pub fn backend_unavailable(message: impl Into<String>) -> Self {
        Self::new(502, Reason::ServiceUnavailable, format!("error dialing backend: {}", message.into()))
    }

    /// The same error with another message (the wording a caller's context gives it).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(Details { name: name.into(), group: group.into(), kind: kind.into(), ..Default::default() });
        self
    }

    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(404, Reason::NotFound, format!("{} \"{}\" not found", qualified(group, resource), name)).with_details(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(409, Reason::AlreadyExists, format!("{} \"{}\" already exists", qualified(group, resource), name)).with_details(group, resource, name)
    }

    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(409, Reason::Conflict, format!("Operation cannot be fulfilled on {} \"{}\": {}", qualified(group, resource), name, why))
            .with_details(group, resource, name)
    }

    /// A delete's precondition (uid, resourceVersion) did not hold: final, never retried.
    pub fn precondition_failed(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::conflict(group, resource, name, why)
    }

    pub fn stale_update(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(group, resource, name, "the object has been modified; please apply your changes to the latest version and try again")
    }

    /// 422 with one cause per field error; `kind` is the Kind (e.g. "ConfigMap").
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let aggregate =
            if errors.len() == 1 { errors[0].to_string() } else { format!("[{}]", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) };
        let mut e = Self::new(422, Reason::Invalid, format!("{qualified_kind} \"{name}\" is invalid: {aggregate}")).with_details(group, kind, name);
        if let Some(d) = e.details.as_mut() {
            d.causes = errors.iter().map(|fe| Cause { reason: fe.kind.reason().into(), message: fe.body(), field: fe.field.clone() }).collect();
        }
        e
    }

    /// 422 without causes, as kube-apiserver answers a patch that cannot be applied.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, Reason::Invalid, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, Reason::BadRequest, message)
    }

    pub fn method_not_supported(group: &str, resource: &str, verb: &str) -> Self {
        Self::new(405, Reason::MethodNotAllowed, format!("{verb} is not supported on resources of kind \"{}\"", qualified(group, resource)))
            .with_details(group, resource, "")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, Reason::MethodNotAllowed, "the server does not allow this method on the requested resource")
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            Reason::UnsupportedMediaType,
            format!("the body of the request was in an unknown format - accepted media types include: {}", accepted.join(", ")),
        )
        .with_details("", content_type, "")
    }

    pub fn not_acceptable(accepted: &[&str]) -> Self {
        Self::new(406, Reason::NotAcceptable, format!("only the following media types are accepted: {}", accepted.join(", ")))
    }

    pub fn request_entity_too_large(message: impl Into<String>) -> Self {
        Self::new(413, Reason::RequestEntityTooLarge, message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, Reason::Expired, message)
    }

    pub fn resource_expired(message: impl Into<String>) -> Self {
        Self::new(410, Reason::Expired, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, Reason::Unauthorized, "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, Reason::Forbidden, message)
    }

    /// kube-apiserver's answer to a path it does not serve.
    pub fn path_not_found() -> Self {
        Self::new(404, Reason::NotFound, "the server could not find the requested resource").with_details("", "", "")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, Reason::InternalError, format!("Internal error occurred: {}", message.into()))
    }

    /// The max-in-flight and fairness filters' answer (kube's `tooManyRequests`): clients
    /// back off for `retryAfterSeconds` and retry.
    pub fn too_many_requests() -> Self {
        let mut e = Self::new(429, Reason::TooManyRequests, "Too many requests, please try again later.");
        e.details = Some(Details { retry_after_seconds: Some(1), ..Default::default() });
        e
    }

    /// An error of the HTTP layer itself (a malformed request, a URI or headers too long),
    /// which kube-apiserver's Go server answers in plain text and lockbox as a Status. Such a
    /// code has no StatusReason, so the reason is empty (Unknown), as apimachinery gives it.
    pub fn http_layer(code: u16, message: impl Into<String>) -> Self {
        Self::new(code, Reason::Unknown, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, Reason::Timeout, message)
    }

    /// storage.NewTooLargeResourceVersionError: a read at a revision the server has not
    /// reached. client-go's IsTooLargeResourceVersion looks for the cause; clients retry.
    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        let mut e = Self::timeout(format!("Too large resource version: {requested}, current: {current}"));
        e.details = Some(Details {
            causes: vec![Cause { reason: "ResourceVersionTooLarge".into(), message: "Too large resource version".into(), field: String::new() }],
            retry_after_seconds: Some(1),
            ..Default::default()
        });
        e
    }

    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code,
        });
        if let (true, Some(m)) = (self.reason == Reason::Unknown, status.as_object_mut()) {
            m.remove("reason");
        }
        if let Some(d) = &self.details {
            let mut details = serde_json::Map::new();
            if !d.name.is_empty() {
                details.insert("name".into(), d.name.clone().into());
            }
            if !d.group.is_empty() {
                details.insert("group".into(), d.group.clone().into());
            }
            if !d.kind.is_empty() {
                details.insert("kind".into(), d.kind.clone().into());
            }
            if !d.causes.is_empty() {
                details.insert("causes".into(), d.causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect());
            }
            if let Some(s) = d.retry_after_seconds {
                details.insert("retryAfterSeconds".into(), s.into());
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

/// The `Status` a successful delete answers with.
pub fn success_status(group: &str, resource: &str, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": resource, "uid": uid});
    if !group.is_empty() {
        details["group"] = group.into();
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}
