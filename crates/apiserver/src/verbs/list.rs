//! LIST of a collection, and WATCH of a collection or of one name.

use axum::body::Body;
use axum::http::{Response, StatusCode};
use serde_json::json;

use api::ApiResult;

use crate::app::App;
use crate::negotiate::{self, Negotiated, Transform};
use crate::options::{check_fields, list_options, validate_list};
use crate::request::ResourceRequest;
use crate::respond::{partial_metadata, ListBody};

pub async fn serve(app: &App, req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let (res, q) = (req.res(), &req.query);
    let opts = list_options(q)?;
    check_fields(res, &opts)?;
    validate_list(q)?;
    let list = app.registry.list(res, req.namespace(), &opts).await?;
    let include = q.get("includeObject").unwrap_or("Metadata").to_string();
    // Encoding a large list is milliseconds of CPU: done at low priority, off the async
    // workers, so the short requests of other clients go first.
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

/// A watch of the collection, or with the deprecated `/watch/.../NAME` path of one object.
pub async fn watch(app: &App, req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let (res, ns) = (req.res(), req.namespace());
    let q = match &req.target.name {
        Some(name) => req.query.pinned_to(name),
        None => req.query.clone(),
    };
    let opts = list_options(&q)?;
    if req.target.name.is_none() {
        check_fields(res, &opts)?;
    }
    crate::watch::serve(&app.registry, res, ns, &opts, &q, n).await
}
