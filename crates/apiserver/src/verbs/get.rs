//! GET of one object.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};

use api::ApiResult;

use crate::negotiate::{self, Negotiated};
use crate::request::ResourceRequest;
use crate::respond::encode_one;
use crate::rest::Registry;

pub async fn serve(reg: &Arc<Registry>, req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let obj = reg.get(req.res(), req.namespace(), req.name()).await?;
    Ok(negotiate::respond(StatusCode::OK, &encode_one(req.res(), &obj, n, &req.query), n.format))
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use crate::verbs::testing::{answer, registry, request};

    #[tokio::test]
    async fn gets_one_object_or_not_found() {
        let f = registry().await;
        let (req, n) = request(Method::GET, "/api/v1/namespaces/kube-system", "", None);
        let (code, obj) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!((code, obj["metadata"]["name"].as_str()), (200, Some("kube-system")));
        let (req, n) = request(Method::GET, "/api/v1/namespaces/default/secrets/nope", "", None);
        let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!(code, 404);
        assert_eq!(status["message"], "secrets \"nope\" not found");
        assert_eq!(status["details"], json!({"name": "nope", "kind": "secrets"}));
    }
}
