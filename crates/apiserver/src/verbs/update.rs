//! PUT of one object: decode, type-check, match the path, the escalation check, then the
//! registry's update (the kind's update strategy).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};

use api::ApiResult;

use crate::authz::{self, CacheRbac};
use crate::decode::{check_name, type_check, FieldProblems};
use crate::negotiate::{self, Negotiated};
use crate::options::{field_validation, write_options};
use crate::request::ResourceRequest;
use crate::respond::{encode_one, with_warnings};
use crate::rest::Registry;

pub async fn serve(reg: &Arc<Registry>, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
    let decoded = req.decode_body(res.kind).await?;
    let (mut obj, unknown) = type_check(res, decoded.value)?;
    let warnings = FieldProblems::new(&unknown, &decoded.duplicates).check_as(field_validation(&req.query)?, Some(res))?;
    let (ns, name) = (req.namespace(), req.name());
    check_name(res, &mut obj, ns, name)?;
    let opts = write_options(&req.query, &req.headers, "UpdateOptions", false)?;
    authz::check_escalation(&CacheRbac(reg.clone()), res, &req.user, ns, &obj)?;
    let updated = reg.update(res, ns, name, obj, &opts).await?;
    Ok(with_warnings(negotiate::respond(StatusCode::OK, &encode_one(res, &updated, n, &req.query), n.format), &warnings))
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use crate::verbs::testing::{answer, create, registry, request};

    const CM: &str = "/api/v1/namespaces/default/configmaps/a";

    #[tokio::test]
    async fn updates_with_the_path_and_the_revision_checked() {
        let f = registry().await;
        let created = create(&f.reg, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "a"}, "data": {"k": "1"}})).await;
        let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();

        let (req, n) = request(Method::PUT, CM, "application/json", Some(&json!({"metadata": {"name": "a", "resourceVersion": rv}, "data": {"k": "2"}})));
        let (code, updated) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!((code, updated["data"]["k"].as_str()), (200, Some("2")), "{updated}");

        let cases = [
            (json!({"metadata": {"name": "a", "resourceVersion": rv}, "data": {"k": "3"}}), 409, "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"),
            (json!({"metadata": {"name": "b"}}), 400, "the name of the object (b) does not match the name on the URL (a)"),
            (json!({"metadata": {"name": "a", "namespace": "kube-system"}}), 400, "the namespace of the object (kube-system) does not match the namespace on the URL (default)"),
            (json!({"kind": "Secret", "metadata": {"name": "a"}}), 400, "the object provided is unrecognized (must be of type ConfigMap): kind \"Secret\""),
        ];
        for (body, want_code, want) in cases {
            let (req, n) = request(Method::PUT, CM, "application/json", Some(&body));
            let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
            assert_eq!((code, status["message"].as_str()), (want_code, Some(want)), "{body}");
        }
        let (req, n) =
            request(Method::PUT, "/api/v1/namespaces/default/configmaps/missing", "application/json", Some(&json!({"metadata": {"name": "missing"}})));
        assert_eq!(answer(super::serve(&f.reg, req, n).await).await.0, 404);
    }
}
