//! The request pipeline: parse the request once (`request`), authenticate, authorize
//! (impersonation, RBAC), admit under the fairness limits, serve (a verb or subresource of a
//! resource, or a non-resource path), and audit the answer.
//!
//! ```text
//! parse ─▶ authn ─▶ authz ─▶ fairness ─▶ verbs::serve ─▶ subresources | reviews | verb modules
//!                                     └▶ routes::route (non-resource paths)
//! ```

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Response};
use serde_json::Value;

use api::ApiError;

use crate::app::App;
use crate::authn::PeerCertificate;
use crate::authz::{self, CacheRbac};
use crate::negotiate;
use crate::request::{is_resource_path, parse_target, Query, ResourceRequest, Upgrade, Verb};

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
    // The verb is decided once, here: authorization and the handler read the same one.
    let verb = match &target {
        Some(Ok(t)) => Some(Verb::of(&parts.method, t, &query)),
        _ => None,
    };
    let api_version = segs.get(if segs.first() == Some(&"apis") { 2 } else { 1 }).copied().unwrap_or_default();
    let request_uri = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    // The attributes of this request, made by `user`.
    let attributes_as = |user: &auth::UserInfo| match (&target, verb) {
        (Some(Ok(t)), Some(verb)) => authz::resource_attributes(user, &parts.method, verb, t, &query),
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
            match (admitted, target, verb) {
                (Err(e), _, _) => Err(e),
                (Ok(_admitted), Some(Ok(t)), Some(verb)) => {
                    let req = ResourceRequest::new(parts.method, verb, t, query, parts.headers, acting, body, Upgrade { on_upgrade, raw_query });
                    crate::verbs::serve(&app, req).await
                }
                (Ok(_admitted), Some(Err(e)), _) => Err(e),
                (Ok(_admitted), _, _) => crate::routes::route(&app, &parts.method, &segs, &parts.headers, &query).await,
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
