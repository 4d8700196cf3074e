//! POST to a collection: decode, type-check, place in the namespace, the escalation check,
//! the admission chain, then the registry's create.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};

use api::{object, ApiError, ApiResult};

use crate::authz::{self, CacheRbac};
use crate::decode::{type_check, FieldProblems};
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
    let ns = req.namespace();
    if res.namespaced {
        match object::namespace(&obj) {
            "" => object::set_meta(&mut obj, "namespace", ns),
            body_ns if body_ns != ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            _ => {}
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        // A cluster-scoped object has no namespace: one in the body is dropped
        // (EnsureObjectNamespaceMatchesRequestNamespace).
        m.remove("namespace");
    }
    let opts = write_options(&req.query, &req.headers, "CreateOptions", false)?;
    authz::check_escalation(&CacheRbac(reg.clone()), res, &req.user, ns, &obj)?;
    crate::admission::admit_create(reg, res, ns, &mut obj).await?;
    let created = reg.create(res, ns, obj, &opts).await?;
    Ok(with_warnings(negotiate::respond(StatusCode::CREATED, &encode_one(res, &created, n, &req.query), n.format), &warnings))
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use crate::verbs::testing::{answer, registry, request};

    const CMS: &str = "/api/v1/namespaces/default/configmaps";

    #[tokio::test]
    async fn creates_in_the_path_namespace_and_checks_the_body() {
        let f = registry().await;
        let (req, n) = request(Method::POST, CMS, "application/json", Some(&json!({"metadata": {"name": "a"}, "data": {"k": "v"}})));
        let (code, obj) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!(code, 201, "{obj}");
        assert_eq!((obj["metadata"]["namespace"].as_str(), obj["kind"].as_str()), (Some("default"), Some("ConfigMap")));
        assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "unit-test");

        let cases = [
            (
                json!({"metadata": {"name": "b", "namespace": "other"}}),
                "",
                400,
                "the namespace of the provided object does not match the namespace sent on the request",
            ),
            (json!({"metadata": {"name": "a"}}), "", 409, "configmaps \"a\" already exists"),
            (
                json!({"metadata": {"name": "c"}, "bogus": 1}),
                "?fieldValidation=Strict",
                400,
                "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\"",
            ),
            (json!({"apiVersion": "v2", "metadata": {"name": "d"}}), "", 400, "the API version in the data (v2) does not match the expected API version (v1)"),
            (json!({"metadata": {"name": "Bad"}}), "", 422, "ConfigMap \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\""),
            (json!({"metadata": {"name": "e"}}), "?dryRun=Some", 422, "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value"),
        ];
        for (body, query, want_code, want) in cases {
            let (req, n) = request(Method::POST, &format!("{CMS}{query}"), "application/json", Some(&body));
            let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
            assert_eq!(code, want_code, "{body}: {status}");
            assert!(status["message"].as_str().unwrap_or_default().starts_with(want), "{body}: {status}");
        }
    }

    #[tokio::test]
    async fn a_cluster_scoped_object_drops_a_namespace_and_unknown_fields_warn() {
        let f = registry().await;
        let (req, n) = request(Method::POST, "/api/v1/namespaces", "application/json", Some(&json!({"metadata": {"name": "x", "namespace": "y"}, "bogus": 1})));
        let resp = super::serve(&f.reg, req, n).await.unwrap();
        let warning = resp.headers().get("Warning").map(|w| w.to_str().unwrap().to_string());
        assert_eq!(warning.as_deref(), Some("299 - \"unknown field \\\"bogus\\\"\""));
        let (code, obj) = answer(Ok(resp)).await;
        assert_eq!(code, 201);
        assert!(obj["metadata"].get("namespace").is_none(), "{obj}");
        assert_eq!(obj["status"]["phase"], "Active");
    }
}
