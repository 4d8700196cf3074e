//! The computed kinds: access reviews (self, subject, local, rules), SelfSubjectReview,
//! TokenReview, and the TokenRequest subresource of ServiceAccounts. None is stored.

use auth::rbac::{self, Decision};
use auth::{Attributes, UserInfo};
use serde_json::{json, Value};

use api::kinds::{self, Resource};
use api::validation::FieldError;
use api::{object, ApiError, ApiResult};

use crate::authz::CacheRbac;
use axum::body::Body;
use axum::http::{Response, StatusCode};

use api::resource::Computed;

use crate::app::App;
use crate::negotiate::{self, Negotiated};
use crate::request::ResourceRequest;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn attributes_from_spec(user: &UserInfo, spec: &Value) -> ApiResult<Attributes> {
    let ra = &spec["resourceAttributes"];
    let na = &spec["nonResourceAttributes"];
    match (ra.is_object(), na.is_object()) {
        (true, false) => Ok(Attributes {
            user: user.clone(),
            verb: s(&ra["verb"]),
            namespace: s(&ra["namespace"]),
            api_group: s(&ra["group"]),
            resource: s(&ra["resource"]),
            subresource: s(&ra["subresource"]),
            name: s(&ra["name"]),
            resource_request: true,
            path: String::new(),
        }),
        (false, true) => Ok(Attributes { user: user.clone(), verb: s(&na["verb"]), path: s(&na["path"]), resource_request: false, ..Default::default() }),
        _ => Err(ApiError::invalid(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "",
            &[FieldError::invalid_raw("spec.resourceAttributes", "null", "exactly one of nonResourceAttributes or resourceAttributes must be specified")],
        )),
    }
}

fn access_status(d: Decision) -> Value {
    match d {
        Decision::Allow(why) if why.is_empty() => json!({"allowed": true}),
        Decision::Allow(why) => json!({"allowed": true, "reason": why}),
        Decision::Deny(why) if why.is_empty() => json!({"allowed": false}),
        Decision::Deny(why) => json!({"allowed": false, "reason": why}),
    }
}

fn answer(mut obj: Value, status: Value) -> Value {
    obj["status"] = status;
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    obj
}

/// Answers a POST to one of the computed kinds (201, never stored).
pub async fn serve(app: &App, mut req: ResourceRequest, n: Negotiated) -> ApiResult<Response<Body>> {
    let res = req.res();
    let Some(computed) = res.computed else { return Err(ApiError::method_not_allowed()) };
    let decoded = req.decode_body(res.kind).await?;
    let (obj, _) = crate::decode::type_check(res, decoded.value)?;
    let out = create(app, res, computed, req.namespace(), &req.user, obj).await?;
    Ok(negotiate::respond(StatusCode::CREATED, &out, n.format))
}

/// The answer of `computed` to `obj` (decoded and type-checked).
async fn create(app: &App, res: &Resource, computed: Computed, ns: &str, user: &UserInfo, obj: Value) -> ApiResult<Value> {
    let src = CacheRbac(app.registry.clone());
    match computed {
        Computed::SelfSubjectAccessReview => {
            let a = attributes_from_spec(user, &obj["spec"])?;
            Ok(answer(obj, access_status(rbac::authorize(&src, &a))))
        }
        Computed::SubjectAccessReview | Computed::LocalSubjectAccessReview => {
            let spec = &obj["spec"];
            let subject = UserInfo {
                name: s(&spec["user"]),
                uid: s(&spec["uid"]),
                groups: spec["groups"].as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default(),
                extra: serde_json::from_value(spec["extra"].clone()).unwrap_or_default(),
            };
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(ApiError::invalid(
                    "authorization.k8s.io",
                    res.kind,
                    "",
                    &[FieldError::invalid_raw("spec.user", "\"\"", "at least one of user or group must be specified")],
                ));
            }
            let mut a = attributes_from_spec(&subject, spec)?;
            if computed == Computed::LocalSubjectAccessReview {
                if !a.resource_request {
                    return Err(ApiError::bad_request("spec.nonResourceAttributes: Invalid value: disallowed on this kind of request"));
                }
                if a.namespace.is_empty() {
                    a.namespace = ns.to_string();
                } else if a.namespace != ns {
                    return Err(ApiError::bad_request(format!("spec.resourceAttributes.namespace must match namespace: {ns}")));
                }
            }
            Ok(answer(obj, access_status(rbac::authorize(&src, &a))))
        }
        Computed::SelfSubjectRulesReview => {
            let namespace = s(&obj["spec"]["namespace"]);
            if namespace.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            let (rules, errors) = if user.groups.iter().any(|g| g == "system:masters") {
                let all = vec![
                    serde_json::from_value(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})).unwrap_or_default(),
                    serde_json::from_value(json!({"verbs": ["*"], "nonResourceURLs": ["*"]})).unwrap_or_default(),
                ];
                let (mut r, e) = rbac::rules_for(&src, user, &namespace);
                r.splice(0..0, all);
                (r, e)
            } else {
                rbac::rules_for(&src, user, &namespace)
            };
            let mut resource_rules = Vec::new();
            let mut url_rules = Vec::new();
            for r in rules {
                if !r.resources.is_empty() || !r.api_groups.is_empty() {
                    let mut v = json!({"verbs": r.verbs});
                    if !r.api_groups.is_empty() {
                        v["apiGroups"] = json!(r.api_groups);
                    }
                    if !r.resources.is_empty() {
                        v["resources"] = json!(r.resources);
                    }
                    if !r.resource_names.is_empty() {
                        v["resourceNames"] = json!(r.resource_names);
                    }
                    resource_rules.push(v);
                }
                if !r.non_resource_urls.is_empty() {
                    url_rules.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
                }
            }
            let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": false});
            if !errors.is_empty() {
                status["evaluationError"] = json!(errors.join(", "));
            }
            Ok(answer(obj, status))
        }
        Computed::SelfSubjectReview => Ok(answer(obj, json!({"userInfo": user.to_json()}))),
        Computed::TokenReview => {
            let token = s(&obj["spec"]["token"]);
            if token.is_empty() {
                return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
            }
            let audiences: Vec<String> = obj["spec"]["audiences"].as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default();
            let authn = &app.authn;
            let result = match authn.token_file.as_ref().and_then(|f| f.authenticate(&token)) {
                Some(u) => Ok((u, if audiences.is_empty() { authn.signer.api_audiences.clone() } else { audiences.clone() })),
                None => match authn.signer.verify(&token, &audiences) {
                    Ok(v) => authn.service_account_user(&v, &token).await.map(|u| (u, v.audiences.clone())),
                    Err(e) => Err(e),
                },
            };
            let status = match result {
                Ok((u, aud)) => json!({"authenticated": true, "user": u.to_json(), "audiences": aud}),
                Err(e) => json!({"authenticated": false, "error": e}),
            };
            Ok(answer(obj, status))
        }
    }
}

/// POST serviceaccounts/NAME/token: a bound token for the ServiceAccount.
pub async fn token_request(app: &App, ns: &str, sa_name: &str, mut obj: Value) -> ApiResult<Value> {
    let reg = &app.registry;
    let sa = reg.get(&kinds::SERVICEACCOUNTS, ns, sa_name).await?;
    if !obj.is_object() || !(obj["spec"].is_object() || obj["spec"].is_null()) {
        return Err(ApiError::bad_request("TokenRequest in version \"v1\" cannot be handled as a TokenRequest: the body must be a TokenRequest object"));
    }
    let exp = obj["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
    if exp < 600 {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            "",
            &[FieldError::invalid_raw("spec.expirationSeconds", exp.to_string(), "may not specify a duration less than 10 minutes")],
        ));
    }
    if exp > 1 << 32 {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            "",
            &[FieldError::invalid_raw("spec.expirationSeconds", exp.to_string(), "may not specify a duration larger than 2^32 seconds")],
        ));
    }
    let audiences: Vec<String> = match obj["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.iter().map(s).collect(),
        _ => app.authn.signer.api_audiences.clone(),
    };
    let bound_ref = obj["spec"]["boundObjectRef"].clone();
    let mut bound = None;
    if bound_ref.is_object() {
        let kind = s(&bound_ref["kind"]);
        let res = match kind.as_str() {
            "Secret" => &kinds::SECRETS,
            "Pod" => kinds::find("", "v1", "pods").ok_or_else(|| ApiError::bad_request("cannot bind token to object of type /v1, Kind=Pod"))?,
            // ServiceAccountTokenNodeBinding (beta, on by default in 1.32).
            "Node" => kinds::find("", "v1", "nodes").ok_or_else(|| ApiError::bad_request("cannot bind token to object of type /v1, Kind=Node"))?,
            other => return Err(ApiError::bad_request(format!("cannot bind token to object of type {other}"))),
        };
        let target = reg.get(res, if res.namespaced { ns } else { "" }, &s(&bound_ref["name"])).await?;
        let uid = object::uid(&target).to_string();
        if !s(&bound_ref["uid"]).is_empty() && s(&bound_ref["uid"]) != uid {
            return Err(ApiError::conflict(
                "",
                res.plural,
                &s(&bound_ref["name"]),
                &format!(
                    "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                    s(&bound_ref["uid"])
                ),
            ));
        }
        if kind == "Pod" && target["spec"]["serviceAccountName"].as_str().unwrap_or("default") != sa_name {
            return Err(ApiError::bad_request(format!("cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name.")));
        }
        bound = Some((kind, auth::tokens::ObjectRef { name: s(&bound_ref["name"]), uid }));
        *object::member_at(&mut obj, &["spec", "boundObjectRef", "uid"]) = json!(bound.as_ref().map(|b| b.1.uid.clone()));
    }
    let sa_ref = auth::tokens::ObjectRef { name: sa_name.into(), uid: object::uid(&sa).into() };
    let (token, exp_at) = app.authn.signer.issue(ns, &sa_ref, &audiences, exp, bound.as_ref().map(|(k, o)| (k.as_str(), o))).map_err(ApiError::internal)?;
    let expiration = jiff::Timestamp::from_second(exp_at).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default();
    obj["apiVersion"] = json!("authentication.k8s.io/v1");
    obj["kind"] = json!("TokenRequest");
    obj["metadata"] = json!({"name": sa_name, "namespace": ns, "creationTimestamp": object::now_rfc3339()});
    obj["spec"]["audiences"] = json!(audiences);
    obj["spec"]["expirationSeconds"] = json!(exp);
    obj["status"] = json!({"token": token, "expirationTimestamp": expiration});
    Ok(obj)
}
