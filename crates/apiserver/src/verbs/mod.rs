//! The verbs of a resource request, one module each, as kube-apiserver's
//! `endpoints/handlers/{get,create,update,patch,delete,watch}.go`: each takes the parsed
//! request and answers it. Generic over kinds: what differs per kind is the kind's entry.

pub mod create;
pub mod delete;
pub mod get;
pub mod list;
pub mod patch;
pub mod update;

#[cfg(test)]
pub(crate) mod testing;

use axum::body::Body;
use axum::http::{Method, Response};

use api::{ApiError, ApiResult};

use crate::app::App;
use crate::authz;
use crate::request::{ResourceRequest, Verb};

/// Serves a resource request that authorization and fairness admitted.
pub async fn serve(app: &App, req: ResourceRequest) -> ApiResult<Response<Body>> {
    let res = req.res();
    let collection_get = req.method == Method::GET && req.target.name.is_none();
    if res.namespaced && req.namespace().is_empty() && !collection_get {
        return Err(ApiError::method_not_allowed());
    }
    let n = crate::negotiate::negotiate(&req.headers)?;
    if authz::escalation_checked(res, &req.user) && req.method != Method::GET {
        // The escalation check reads the writer's own grants from the cache: let it catch up.
        app.registry.sync().await?;
    }
    if res.computed.is_some() {
        if req.verb != Verb::Create || req.target.name.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        return crate::reviews::serve(app, req, n).await;
    }
    if let Some(sub) = req.target.served_subresource()? {
        return crate::subresources::serve(app, sub, req, n).await;
    }
    let verb = req.verb.as_str(&req.method);
    if req.verb != Verb::Other && !res.serves(&verb) {
        return Err(ApiError::method_not_supported(res.group, res.plural, &verb));
    }
    let named = req.target.name.is_some();
    let reg = &app.registry;
    match req.verb {
        Verb::Get => get::serve(reg, req, n).await,
        Verb::List => list::serve(reg, req, n).await,
        Verb::Watch => list::watch(reg, req, n).await,
        Verb::Create if !named => create::serve(reg, req, n).await,
        Verb::Update if named => update::serve(reg, req, n).await,
        Verb::Patch if named => patch::serve(reg, req, n).await,
        Verb::Delete => delete::serve(reg, req, n).await,
        Verb::DeleteCollection => delete::collection(reg, req, n).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}
