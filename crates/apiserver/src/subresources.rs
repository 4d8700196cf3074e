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
use crate::rest::Registry;
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
        Subresource::Status => status(&app.registry, req, n).await,
        Subresource::Scale => scale(&app.registry, req, n).await,
        Subresource::Binding => binding(&app.registry, req).await,
        Subresource::Finalize => finalize(&app.registry, req, n).await,
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
async fn status(reg: &Registry, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
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
async fn scale(reg: &Registry, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
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
async fn finalize(reg: &Registry, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
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
async fn binding(reg: &Registry, mut req: ResourceRequest) -> ApiResult<Response<Body>> {
    let b = req.decode_body("Binding").await?.value;
    let (res, ns, name) = (req.res(), req.namespace(), req.name());
    let node = b["target"]["name"].as_str().unwrap_or_default().to_string();
    if node.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, &[api::validation::FieldError::required("target.name", "")]));
    }
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

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use crate::verbs::testing::{answer, create, registry, request};

    const RS: &str = "/apis/apps/v1/namespaces/default/replicasets";

    fn replicaset() -> serde_json::Value {
        json!({"metadata": {"name": "r"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    #[tokio::test]
    async fn status_writes_change_the_status_only_and_are_validated() {
        let f = registry().await;
        create(&f.reg, RS, replicaset()).await;
        let path = format!("{RS}/r/status");
        let (req, n) = request(
            Method::PATCH,
            &path,
            "application/merge-patch+json",
            Some(&json!({"spec": {"replicas": 9}, "status": {"replicas": 2, "readyReplicas": 1}})),
        );
        let (code, obj) = answer(super::status(&f.reg, req, n).await).await;
        assert_eq!((code, obj["spec"]["replicas"].as_i64(), obj["status"]["readyReplicas"].as_i64()), (200, Some(2), Some(1)), "{obj}");
        let (req, n) = request(Method::PATCH, &path, "application/merge-patch+json", Some(&json!({"status": {"replicas": "many"}})));
        let (code, e) = answer(super::status(&f.reg, req, n).await).await;
        assert_eq!(code, 400, "{e}");
        assert!(e["message"].as_str().unwrap().starts_with("ReplicaSet in version \"v1\" cannot be handled as a ReplicaSet"), "{e}");
        let (req, n) = request(Method::PATCH, &path, "application/merge-patch+json", Some(&json!({"status": {"availableReplicas": 2}})));
        let (code, e) = answer(super::status(&f.reg, req, n).await).await;
        assert_eq!(
            (code, e["message"].as_str()),
            (422, Some("ReplicaSet.apps \"r\" is invalid: status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas"))
        );
    }

    #[tokio::test]
    async fn scale_reads_and_writes_spec_replicas() {
        let f = registry().await;
        create(&f.reg, RS, replicaset()).await;
        let path = format!("{RS}/r/scale");
        let (req, n) = request(Method::PATCH, &path, "application/merge-patch+json", Some(&json!({"spec": {"replicas": 5}})));
        let (code, scale) = answer(super::scale(&f.reg, req, n).await).await;
        assert_eq!((code, scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (200, Some("Scale"), Some(5)), "{scale}");
        assert_eq!(scale["status"]["selector"], "a=b");
        let (req, n) = request(Method::PATCH, &path, "application/merge-patch+json", Some(&json!({"spec": {"replicas": -1}})));
        let (code, e) = answer(super::scale(&f.reg, req, n).await).await;
        assert_eq!(
            (code, e["message"].as_str()),
            (422, Some("Scale.autoscaling \"r\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"))
        );
    }

    #[tokio::test]
    async fn a_pod_is_bound_once() {
        let f = registry().await;
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        f.reg.create(&api::workload_kinds::PODS, "default", pod, &Default::default()).await.unwrap();
        let binding = json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
        let path = "/api/v1/namespaces/default/pods/p/binding";
        let (req, _) = request(Method::POST, path, "application/json", Some(&binding));
        assert_eq!(answer(super::binding(&f.reg, req).await).await.0, 201);
        let bound = f.reg.get(&api::workload_kinds::PODS, "default", "p").await.unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert!(bound["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "True"));
        let (req, _) = request(Method::POST, path, "application/json", Some(&binding));
        let (code, e) = answer(super::binding(&f.reg, req).await).await;
        assert_eq!((code, e["message"].as_str()), (409, Some("Operation cannot be fulfilled on pods \"p\": pod p is already assigned to node \"n1\"")));
    }
}
