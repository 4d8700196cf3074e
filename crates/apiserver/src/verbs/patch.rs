//! PATCH of one object: JSON patch, merge patch and strategic merge patch through the
//! registry's read-modify-write; server-side apply through field ownership.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use serde_json::Value;

use api::patch::{self, PatchType};
use api::{codec, ApiError, ApiResult};

use crate::authz::{self, CacheRbac};
use crate::decode::{check_name, type_check, FieldProblems};
use crate::negotiate::{self, Negotiated};
use crate::options::{field_validation, write_options};
use crate::request::ResourceRequest;
use crate::respond::{encode_one, with_warnings};
use crate::rest::Registry;

/// The patch type a Content-Type names, or 415.
pub fn patch_type(content_type: &str) -> ApiResult<PatchType> {
    PatchType::from_content_type(content_type).ok_or_else(|| ApiError::unsupported_media_type(content_type, patch::PATCH_CONTENT_TYPES))
}

/// Applies a non-apply patch body to `current`.
pub fn patched(pt: PatchType, current: &Value, body: &[u8]) -> ApiResult<Value> {
    match pt {
        PatchType::Json => patch::json_patch(current, body),
        PatchType::Merge => patch::merge_patch(current, body),
        _ => patch::strategic_merge_patch(current, body),
    }
}

/// An apply body (JSON or YAML) with its apiVersion and kind, as the apply handler requires.
pub fn applied_object(bytes: &[u8]) -> ApiResult<Value> {
    let value: Value = if bytes.first() == Some(&b'{') {
        codec::decode_json(bytes).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?.value
    } else {
        codec::decode_yaml(bytes).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?.value
    };
    for field in ["apiVersion", "kind"] {
        if value[field].as_str().unwrap_or_default().is_empty() {
            return Err(ApiError::bad_request(format!("invalid object type: {}", if field == "kind" { "kind not set" } else { "apiVersion not set" })));
        }
    }
    Ok(value)
}

pub async fn serve(reg: &Arc<Registry>, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
    let pt = patch_type(req.content_type())?;
    let bytes = req.body().await?;
    if pt == PatchType::Apply {
        return apply(reg, req, &bytes, n).await;
    }
    let mode = field_validation(&req.query)?;
    let opts = write_options(&req.query, &req.headers, "PatchOptions", false)?;
    let (ns, name) = (req.namespace(), req.name());
    let rbac = CacheRbac(reg.clone());
    let mut warnings = Vec::new();
    let result = reg
        .guaranteed_update(res, ns, name, &opts, |current| {
            let (mut obj, unknown) = type_check(res, patched(pt, current, &bytes)?)?;
            warnings = FieldProblems::new(&unknown, &[]).check(mode)?;
            check_name(res, &mut obj, ns, name)?;
            authz::check_escalation(&rbac, res, &req.user, ns, &obj)?;
            Ok(obj)
        })
        .await?;
    Ok(with_warnings(negotiate::respond(StatusCode::OK, &encode_one(res, &result, n, &req.query), n.format), &warnings))
}

/// Server-side apply: creates the object when it is missing.
async fn apply(reg: &Arc<Registry>, req: ResourceRequest, bytes: &[u8], n: Negotiated) -> ApiResult<Response<Body>> {
    let (res, ns, name) = (req.res(), req.namespace(), req.name());
    let mode = field_validation(&req.query)?;
    let opts = write_options(&req.query, &req.headers, "PatchOptions", true)?;
    let (mut applied, unknown) = type_check(res, applied_object(bytes)?)?;
    let warnings = FieldProblems::new(&unknown, &[]).check(mode)?;
    check_name(res, &mut applied, ns, name)?;
    let force = req.query.flag("force");
    let rbac = CacheRbac(reg.clone());
    // An apply that creates is a create: kube-apiserver authorizes verb `create` as well as
    // `patch` then, or `patch` alone would be enough to make any object (a token Secret, say).
    if reg.get(res, ns, name).await.is_err_and(|e| e.is_not_found()) {
        let create = auth::Attributes {
            user: req.user.clone(),
            verb: "create".into(),
            namespace: ns.into(),
            api_group: res.group.into(),
            resource: res.plural.into(),
            name: name.into(),
            resource_request: true,
            ..Default::default()
        };
        if authz::authorize(&rbac, &create).is_err() {
            reg.sync().await?;
            authz::authorize(&rbac, &create)?;
        }
    }
    authz::check_escalation(&rbac, res, &req.user, ns, &applied)?;
    let (obj, created) = reg.apply(res, ns, name, &applied, force, &opts).await?;
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_warnings(negotiate::respond(code, &encode_one(res, &obj, n, &req.query), n.format), &warnings))
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use crate::verbs::testing::{answer, registry, request};

    const CM: &str = "/api/v1/namespaces/default/configmaps/a";

    #[tokio::test]
    async fn patches_of_each_type_and_apply() {
        let f = registry().await;
        // An apply that creates is a 201, and its manager owns what it applied.
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}});
        let (req, n) = request(Method::PATCH, &format!("{CM}?fieldManager=tool"), "application/apply-patch+yaml", Some(&applied));
        let (code, obj) = answer(super::serve(&f.reg, req, n).await).await;
        assert_eq!(code, 201, "{obj}");
        assert_eq!(obj["metadata"]["managedFields"][0]["operation"], "Apply");

        for (ct, body, want) in [
            ("application/merge-patch+json", json!({"data": {"m": "2"}}), "m"),
            ("application/strategic-merge-patch+json", json!({"data": {"s": "3"}}), "s"),
            ("application/json-patch+json", json!([{"op": "add", "path": "/data/j", "value": "4"}]), "j"),
        ] {
            let (req, n) = request(Method::PATCH, CM, ct, Some(&body));
            let (code, obj) = answer(super::serve(&f.reg, req, n).await).await;
            assert_eq!(code, 200, "{ct}: {obj}");
            assert!(obj["data"].get(want).is_some(), "{ct}: {obj}");
        }

        let cases = [
            ("", "text/plain", json!({}), 415, "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"),
            ("", "application/apply-patch+yaml", applied.clone(), 422, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"),
            ("?force=true", "application/merge-patch+json", json!({}), 422, "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"),
            ("?fieldManager=other", "application/apply-patch+yaml", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "9"}}), 409, "Apply failed with 1 conflict: conflict with \"tool\" using v1: .data.k"),
            ("?fieldManager=tool", "application/apply-patch+yaml", json!({"metadata": {"name": "a"}}), 400, "invalid object type: apiVersion not set"),
        ];
        for (query, ct, body, want_code, want) in cases {
            let (req, n) = request(Method::PATCH, &format!("{CM}{query}"), ct, Some(&body));
            let (code, status) = answer(super::serve(&f.reg, req, n).await).await;
            assert_eq!((code, status["message"].as_str()), (want_code, Some(want)), "{query} {ct}");
        }
    }
}
