//! Subresources other than the computed ones: `status` (spec and status written separately),
//! `scale` (autoscaling/v1 Scale over spec.replicas) and `binding` (the scheduler's
//! assignment of a pod to a node).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Value};

use api::kinds::Resource;
use api::patch::{self, PatchType};
use api::{codec, object, ApiError, ApiResult};

use crate::handler::{content_type, read_body, write_options, App, Query};
use crate::negotiate::{self, Negotiated};

/// Applies a PATCH body of any supported type to `current`.
pub fn apply_patch_body(ct: &str, current: &Value, body: &[u8]) -> ApiResult<Value> {
    match PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct, patch::PATCH_CONTENT_TYPES))? {
        PatchType::Json => patch::json_patch(current, body),
        PatchType::Merge => patch::merge_patch(current, body),
        PatchType::Strategic => patch::strategic_merge_patch(current, body),
        PatchType::Apply => {
            let applied: Value = codec::decode_yaml(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?.value;
            let mut out = current.clone();
            json_patch::merge(&mut out, &applied);
            Ok(out)
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn status(
    app: &App,
    res: &'static Resource,
    ns: &str,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
    n: Negotiated,
) -> ApiResult<Response<Body>> {
    let reg = &app.registry;
    if *method == Method::GET {
        let obj = reg.get(res, ns, name).await?;
        return Ok(negotiate::respond(StatusCode::OK, &*obj, n.format));
    }
    let bytes = read_body(body).await?;
    let opts = write_options(q, headers, if *method == Method::PATCH { "PatchOptions" } else { "UpdateOptions" }, false)?;
    let ct = content_type(headers).to_string();
    let body_obj = if *method == Method::PUT { Some(codec::decode(&ct, &bytes, res.kind)?.value) } else { None };
    if !matches!(*method, Method::PUT | Method::PATCH) {
        return Err(ApiError::method_not_allowed());
    }
    let mut attempts = 0;
    loop {
        let current = reg.get(res, ns, name).await?;
        let incoming = match &body_obj {
            Some(o) => o.clone(),
            None => apply_patch_body(&ct, &current, &bytes)?,
        };
        let rv = object::resource_version(&incoming);
        if !rv.is_empty() && rv != object::resource_version(&current) {
            return Err(ApiError::stale_update(res.group, res.plural, name));
        }
        // Only the status changes through this subresource.
        let mut new = (*current).clone();
        new["status"] = incoming.get("status").cloned().unwrap_or(json!({}));
        // The status is type-checked as the whole object is on create and update (unknown
        // fields dropped): a string where a count belongs would break every typed client's
        // list of this kind, and the controllers' with it.
        let (mut new, _) = res
            .strategy
            .roundtrip(new)
            .map_err(|e| ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: {e}", res.kind, res.version, res.kind)))?;
        object::set_meta(&mut new, "resourceVersion", object::resource_version(&current).to_string());
        if new == *current || opts.dry_run {
            return Ok(negotiate::respond(StatusCode::OK, &new, n.format));
        }
        match reg.write_raw(res, ns, name, &current, Some(&new)).await {
            Ok(revision) => {
                object::set_meta(&mut new, "resourceVersion", revision.to_string());
                return Ok(negotiate::respond(StatusCode::OK, &new, n.format));
            }
            Err(e) if e.is_conflict() && rv.is_empty() && attempts < 5 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

fn scale_of(res: &Resource, obj: &Value) -> Value {
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let _ = res;
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"], "creationTimestamp": obj["metadata"]["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

#[allow(clippy::too_many_arguments)]
pub async fn scale(
    app: &App,
    res: &'static Resource,
    ns: &str,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
    n: Negotiated,
) -> ApiResult<Response<Body>> {
    let reg = &app.registry;
    if *method == Method::GET {
        let obj = reg.get(res, ns, name).await?;
        return Ok(negotiate::respond(StatusCode::OK, &scale_of(res, &obj), n.format));
    }
    if !matches!(*method, Method::PUT | Method::PATCH) {
        return Err(ApiError::method_not_allowed());
    }
    let bytes = read_body(body).await?;
    let ct = content_type(headers).to_string();
    let opts = write_options(q, headers, if *method == Method::PATCH { "PatchOptions" } else { "UpdateOptions" }, false)?;
    let is_put = *method == Method::PUT;
    let updated = reg
        .guaranteed_update(res, ns, name, &opts, |current| {
            let scale = scale_of(res, current);
            let wanted = if is_put { codec::decode(&ct, &bytes, "Scale")?.value } else { apply_patch_body(&ct, &scale, &bytes)? };
            let replicas = wanted["spec"]["replicas"].as_i64().ok_or_else(|| ApiError::bad_request("Scale.spec.replicas is required"))?;
            if replicas > i64::from(i32::MAX) {
                return Err(ApiError::bad_request(format!(
                    "Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal number {replicas} into Go struct field ScaleSpec.spec.replicas of type int32"
                )));
            }
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    &[api::validation::FieldError::invalid_raw("spec.replicas", replicas.to_string(), "must be greater than or equal to 0")],
                ));
            }
            let mut new = current.clone();
            new["spec"]["replicas"] = json!(replicas);
            if let Some(rv) = wanted["metadata"]["resourceVersion"].as_str().filter(|r| !r.is_empty()) {
                object::set_meta(&mut new, "resourceVersion", rv);
            }
            Ok(new)
        })
        .await?;
    Ok(negotiate::respond(StatusCode::OK, &scale_of(res, &updated), n.format))
}

/// POST pods/NAME/binding: assigns the pod to a node, once.
pub async fn binding(app: &App, res: &'static Resource, ns: &str, name: &str, headers: &HeaderMap, body: Body) -> ApiResult<Response<Body>> {
    let bytes = read_body(body).await?;
    let b = codec::decode(content_type(headers), &bytes, "Binding")?.value;
    let node = b["target"]["name"].as_str().unwrap_or_default().to_string();
    if node.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, &[api::validation::FieldError::required("target.name", "")]));
    }
    let reg = &app.registry;
    let current = reg.get(res, ns, name).await?;
    if let Some(existing) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict("", "pods", name, &format!("pod {name} is already assigned to node {existing:?}")));
    }
    let mut new = (*current).clone();
    *object::member_at(&mut new, &["spec", "nodeName"]) = json!(node);
    let conditions = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
    conditions.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": object::now_rfc3339(), "lastProbeTime": null}));
    *object::member_at(&mut new, &["status", "conditions"]) = json!(conditions);
    reg.write_raw(res, ns, name, &current, Some(&new)).await?;
    Ok(negotiate::json(StatusCode::CREATED, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
}
