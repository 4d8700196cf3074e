//! DELETE of one object, and of a collection (deletecollection).

use axum::body::Body;
use axum::http::{Response, StatusCode};
use serde_json::json;

use api::status::success_status;
use api::{object, ApiResult};

use crate::app::App;
use crate::negotiate::{self, Negotiated};
use crate::options::{check_fields, delete_options, list_options};
use crate::request::ResourceRequest;
use crate::respond::{encode_one, ListItem};
use crate::rest::{DeleteOutcome, ListOptions};

pub async fn serve(app: &App, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let bytes = req.body().await?;
    let opts = delete_options(&req.query, &bytes)?;
    let (res, name) = (req.res(), req.name());
    match app.registry.delete(res, req.namespace(), name, &opts).await? {
        DeleteOutcome::Deleted(obj) => Ok(negotiate::json(StatusCode::OK, &success_status(res.group, res.plural, name, object::uid(&obj)))),
        DeleteOutcome::Pending(obj) => {
            // handlers/delete.go: 200 for a pending deletion, 202 only with orphanDependents=false.
            let code = if opts.orphan_dependents_false { StatusCode::ACCEPTED } else { StatusCode::OK };
            Ok(negotiate::respond(code, &encode_one(res, &obj, n, &req.query), n.format))
        }
    }
}

/// Deletes every object the selectors match; answers with the list of what was deleted.
pub async fn collection(app: &App, mut req: ResourceRequest, _n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
    let bytes = req.body().await?;
    let dopts = delete_options(&req.query, &bytes)?;
    let lopts = list_options(&req.query)?;
    check_fields(res, &lopts)?;
    let reg = &app.registry;
    let list = reg.list(res, req.namespace(), &ListOptions { limit: 0, continue_token: None, ..lopts }).await?;
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
