//! The subresources: which handler serves each (`Subresource`, the kind's fact), and the
//! handlers of those that are not relayed or computed elsewhere: `status` (through the kind's
//! status strategy), `scale` (autoscaling/v1 Scale over spec.replicas), `binding` (the
//! scheduler's assignment of a pod to a node) and `finalize` (a namespace's finalizers).

use axum::body::Body;
use axum::http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use api::kinds::Resource;
use api::patch::PatchType;
use api::resource::Subresource;
use api::{codec, object, ApiError, ApiResult};

use crate::app::App;
use crate::decode::{check_name, type_check, FieldProblems};
use crate::negotiate::{self, Negotiated};
use crate::options::{field_validation, write_options};
use crate::request::ResourceRequest;
use crate::respond::with_warnings;
use crate::verbs::patch::{applied_object, patch_type, patched};

/// Serves `sub` of the request's object; a method the subresource has no verb for is 405.
pub async fn serve(app: &App, sub: Subresource, req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let verb = match req.method {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        _ => "",
    };
    if !sub.verbs().contains(&verb) {
        return Err(ApiError::method_not_allowed());
    }
    match sub {
        Subresource::Status => status(app, req, n).await,
        Subresource::Scale => scale(app, req, n).await,
        Subresource::Binding => binding(app, req).await,
        Subresource::Finalize => finalize(app, req, n).await,
        Subresource::Token => {
            let mut req = req;
            let decoded = req.decode_body("TokenRequest").await?;
            let out = crate::reviews::token_request(app, req.namespace(), req.name(), decoded.value).await?;
            Ok(negotiate::respond(StatusCode::CREATED, &out, n.format))
        }
        Subresource::Log => crate::proxy::logs(app, req.namespace(), req.name(), &req.query, &req.headers).await,
        Subresource::Exec | Subresource::Attach => {
            let mut req = req;
            let on_upgrade = req.upgrade.on_upgrade.take();
            crate::proxy::exec(app, req.namespace(), req.name(), &req.method, &req.query, &req.upgrade.raw_query, &req.headers, on_upgrade).await
        }
    }
}

/// GET, PUT, PATCH and apply of `status`. Only the status changes; the write is
/// type-checked, validated by the kind's status strategy, preconditioned on a
/// resourceVersion it names, and recorded in managedFields under `status`.
async fn status(app: &App, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let (res, reg) = (req.res(), &app.registry);
    if req.method == Method::GET {
        let obj = reg.get(res, req.namespace(), req.name()).await?;
        return Ok(negotiate::respond(StatusCode::OK, &*obj, n.format));
    }
    let mode = field_validation(&req.query)?;
    let ct = req.content_type().to_string();
    let bytes = req.body().await?;
    let (ns, name) = (req.namespace(), req.name());
    let mut warnings = Vec::new();
    let updated = if req.method == Method::PUT {
        let opts = write_options(&req.query, &req.headers, "UpdateOptions", false)?;
        let decoded = codec::decode(&ct, &bytes, res.kind)?;
        let (mut obj, unknown) = type_check(res, decoded.value)?;
        warnings = FieldProblems::new(&unknown, &decoded.duplicates).check_as(mode, Some(res))?;
        check_name(res, &mut obj, ns, name)?;
        reg.update_status(res, ns, name, &opts, |_| Ok(obj.clone())).await?
    } else {
        let pt = patch_type(&ct)?;
        if pt == PatchType::Apply {
            let opts = write_options(&req.query, &req.headers, "PatchOptions", true)?;
            let (mut applied, unknown) = type_check(res, applied_object(&bytes)?)?;
            warnings = FieldProblems::new(&unknown, &[]).check(mode)?;
            check_name(res, &mut applied, ns, name)?;
            reg.apply_status(res, ns, name, &applied, req.query.flag("force"), &opts).await?
        } else {
            let opts = write_options(&req.query, &req.headers, "PatchOptions", false)?;
            reg.update_status(res, ns, name, &opts, |current| {
                let (mut obj, unknown) = type_check(res, patched(pt, current, &bytes)?)?;
                warnings = FieldProblems::new(&unknown, &[]).check(mode)?;
                check_name(res, &mut obj, ns, name)?;
                Ok(obj)
            })
            .await?
        }
    };
    Ok(with_warnings(negotiate::respond(StatusCode::OK, &updated, n.format), &warnings))
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

/// GET, PUT and PATCH of `scale`: spec.replicas through the kind's own update.
async fn scale(app: &App, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let (res, reg) = (req.res(), &app.registry);
    if req.method == Method::GET {
        let obj = reg.get(res, req.namespace(), req.name()).await?;
        return Ok(negotiate::respond(StatusCode::OK, &scale_of(res, &obj), n.format));
    }
    let ct = req.content_type().to_string();
    let bytes = req.body().await?;
    let is_put = req.method == Method::PUT;
    let opts = write_options(&req.query, &req.headers, if is_put { "UpdateOptions" } else { "PatchOptions" }, false)?;
    let name = req.name();
    let updated = reg
        .guaranteed_update(res, req.namespace(), name, &opts, |current| {
            let scale = scale_of(res, current);
            let wanted = if is_put { codec::decode(&ct, &bytes, "Scale")?.value } else { patched(patch_type(&ct)?, &scale, &bytes)? };
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
            *object::member_at(&mut new, &["spec", "replicas"]) = json!(replicas);
            if let Some(rv) = wanted["metadata"]["resourceVersion"].as_str().filter(|r| !r.is_empty()) {
                object::set_meta(&mut new, "resourceVersion", rv);
            }
            Ok(new)
        })
        .await?;
    Ok(negotiate::respond(StatusCode::OK, &scale_of(res, &updated), n.format))
}

/// PUT namespaces/NAME/finalize: sets spec.finalizers; a terminating namespace whose
/// finalizers are all gone is removed.
async fn finalize(app: &App, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let (res, reg) = (req.res(), &app.registry);
    let decoded = req.decode_body(res.kind).await?;
    let (mut obj, unknown) = type_check(res, decoded.value)?;
    let warnings = FieldProblems::new(&unknown, &decoded.duplicates).check_as(field_validation(&req.query)?, Some(res))?;
    let name = req.name();
    check_name(res, &mut obj, "", name)?;
    let opts = write_options(&req.query, &req.headers, "UpdateOptions", false)?;
    let current = reg.get(res, "", name).await?;
    let mut new = (*current).clone();
    *object::member_at(&mut new, &["spec", "finalizers"]) = obj["spec"]["finalizers"].clone();
    if !opts.dry_run {
        let done = object::is_deleting(&new) && new["spec"]["finalizers"].as_array().is_none_or(|f| f.is_empty()) && object::finalizers(&new).is_empty();
        reg.write_raw(res, "", name, &current, if done { None } else { Some(&new) }).await?;
    }
    Ok(with_warnings(negotiate::respond(StatusCode::OK, &new, n.format), &warnings))
}

/// POST pods/NAME/binding: assigns the pod to a node, once.
async fn binding(app: &App, mut req: ResourceRequest) -> ApiResult<Response<Body>> {
    let b = req.decode_body("Binding").await?.value;
    let (res, ns, name) = (req.res(), req.namespace(), req.name());
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
