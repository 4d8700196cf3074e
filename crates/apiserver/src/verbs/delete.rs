//! DELETE of one object, and of a collection (deletecollection).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use serde_json::json;

use api::status::success_status;
use api::{object, ApiResult};

use crate::negotiate::{self, Negotiated};
use crate::options::{check_fields, delete_options, list_options};
use crate::request::ResourceRequest;
use crate::respond::{encode_one, ListItem};
use crate::rest::Registry;
use crate::rest::{DeleteOutcome, ListOptions};

pub async fn serve(reg: &Arc<Registry>, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let bytes = req.body().await?;
    let opts = delete_options(&req.query, &bytes)?;
    let (res, name) = (req.res(), req.name());
    match reg.delete(res, req.namespace(), name, &opts).await? {
        DeleteOutcome::Deleted(obj) => Ok(negotiate::json(StatusCode::OK, &success_status(res.group, res.plural, name, object::uid(&obj)))),
        DeleteOutcome::Pending(obj) => {
            // handlers/delete.go: 200 for a pending deletion, 202 only with orphanDependents=false.
            let code = if opts.orphan_dependents_false { StatusCode::ACCEPTED } else { StatusCode::OK };
            Ok(negotiate::respond(code, &encode_one(res, &obj, n, &req.query), n.format))
        }
    }
}

/// Deletes every object the selectors match; answers with the list of what was deleted.
pub async fn collection(reg: &Arc<Registry>, mut req: ResourceRequest, _n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
    let bytes = req.body().await?;
    let dopts = delete_options(&req.query, &bytes)?;
    let lopts = list_options(&req.query)?;
    check_fields(res, &lopts)?;
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

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use crate::verbs::testing::{answer, create, registry, request, three_configmaps};

    #[tokio::test]
    async fn deletes_one_a_collection_and_never_an_immortal_namespace() {
        let f = registry().await;
        three_configmaps(&f.reg).await;
        let (req, n) = request(Method::DELETE, "/api/v1/namespaces/default/configmaps/b", "", None);
        let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!((code, status["status"].as_str(), status["details"]["name"].as_str()), (200, Some("Success"), Some("b")), "{status}");
        let (req, n) = request(Method::DELETE, "/api/v1/namespaces/default/configmaps/b", "", None);
        assert_eq!(answer(super::serve(&f.reg, req, n).await).await.0, 404);

        let (req, n) = request(Method::DELETE, "/api/v1/namespaces/default/configmaps?labelSelector=team%3Dx", "", None);
        let (code, list) = answer(super::collection(&f.reg, req, n).await).await;
        assert_eq!((code, list["items"].as_array().map(Vec::len)), (200, Some(2)), "{list}");

        let (req, n) = request(Method::DELETE, "/api/v1/namespaces/default", "", None);
        let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!((code, status["message"].as_str()), (403, Some("namespaces \"default\" is forbidden: this namespace may not be deleted")));

        // A precondition that does not hold is a final conflict; a bad propagation policy is invalid.
        create(&f.reg, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "p"}})).await;
        let (req, n) = request(Method::DELETE, "/api/v1/namespaces/default/configmaps/p", "application/json", Some(&json!({"preconditions": {"uid": "nope"}})));
        let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!(code, 409, "{status}");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with("Operation cannot be fulfilled on configmaps \"p\": Precondition failed: UID in precondition: nope, UID in object meta: "),
            "{status}"
        );
        let (req, n) = request(Method::DELETE, "/api/v1/namespaces/default/configmaps/p?propagationPolicy=Sometimes", "", None);
        let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!(code, 422, "{status}");
    }

    #[tokio::test]
    async fn a_namespace_deletion_waits_for_its_finalizers() {
        let f = registry().await;
        create(&f.reg, "/api/v1/namespaces", json!({"metadata": {"name": "gone"}})).await;
        let (req, n) = request(Method::DELETE, "/api/v1/namespaces/gone", "", None);
        let (code, ns) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!((code, ns["status"]["phase"].as_str()), (200, Some("Terminating")), "{ns}");
        assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    }
}
