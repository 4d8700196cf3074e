//! LIST of a collection, and WATCH of a collection or of one name.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use serde_json::json;

use api::ApiResult;

use crate::negotiate::{self, Negotiated, Transform};
use crate::options::{check_fields, list_options, validate_list};
use crate::request::ResourceRequest;
use crate::respond::{partial_metadata, ListBody};
use crate::rest::Registry;

pub async fn serve(reg: &Arc<Registry>, req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let (res, q) = (req.res(), &req.query);
    let opts = list_options(q)?;
    check_fields(res, &opts)?;
    validate_list(q)?;
    let list = reg.list(res, req.namespace(), &opts).await?;
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
pub async fn watch(reg: &Arc<Registry>, req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let (res, ns) = (req.res(), req.namespace());
    let q = match &req.target.name {
        Some(name) => req.query.pinned_to(name),
        None => req.query.clone(),
    };
    let opts = list_options(&q)?;
    if req.target.name.is_none() {
        check_fields(res, &opts)?;
    }
    crate::watch::serve(reg, res, ns, &opts, &q, n).await
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use crate::verbs::testing::{answer, registry, request, three_configmaps};

    #[tokio::test]
    async fn lists_with_selectors_and_refuses_bad_options() {
        let f = registry().await;
        three_configmaps(&f.reg).await;
        let (req, n) = request(Method::GET, "/api/v1/namespaces/default/configmaps?labelSelector=team%3Dx&limit=1", "", None);
        let (code, list) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!((code, list["kind"].as_str()), (200, Some("ConfigMapList")));
        let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(list["metadata"]["remainingItemCount"], 1);
        assert!(list["items"][0].get("kind").is_none(), "items carry no kind");

        let cases = [
            ("labelSelector=team%3D%3D%3Dx", 400, "unable to parse requirement"),
            ("fieldSelector=spec.x%3D1", 400, "field label not supported: spec.x"),
            ("resourceVersionMatch=Exact", 422, "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"),
            ("limit=x", 400, "invalid limit: x"),
            ("continue=garbage", 400, "invalid continue token"),
        ];
        for (query, want_code, want) in cases {
            let (req, n) = request(Method::GET, &format!("/api/v1/namespaces/default/configmaps?{query}"), "", None);
            let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
            assert_eq!(code, want_code, "{query}: {status}");
            assert!(status["message"].as_str().unwrap_or_default().starts_with(want), "{query}: {status}");
        }
    }
}
