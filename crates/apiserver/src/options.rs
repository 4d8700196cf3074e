//! The options of each verb, from the query (and for a delete, its body), validated as
//! kube-apiserver's ValidateListOptions, ValidateDryRun and the options' own rules do.

use axum::http::{header, HeaderMap};
use serde_json::{json, Value};

use api::kinds::Resource;
use api::selector::{FieldSelector, LabelSelector};
use api::{codec, ApiError, ApiResult};

use crate::request::Query;
use crate::rest::{DeleteOptions, ListOptions, WriteOptions};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

pub fn field_validation(q: &Query) -> ApiResult<FieldValidation> {
    match q.get("fieldValidation").unwrap_or("") {
        "" | "Warn" => Ok(FieldValidation::Warn),
        "Ignore" => Ok(FieldValidation::Ignore),
        "Strict" => Ok(FieldValidation::Strict),
        other => Err(ApiError::bad_request(format!("fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""))),
    }
}

/// `dryRun`, validated as ValidateDryRun does, with the options kind (CreateOptions, …) named.
pub fn dry_run(q: &Query, kind: &str) -> ApiResult<bool> {
    match q.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "meta.k8s.io",
            kind,
            "",
            &[api::validation::FieldError {
                kind: api::validation::ErrorType::NotSupported,
                field: "dryRun".into(),
                value: Some(format!("[]string{{{}}}", api::validation::go_quote(other))),
                detail: "supported values: \"All\"".into(),
            }],
        )),
    }
}

/// The write options of a create, update or patch (`kind`: CreateOptions, UpdateOptions or
/// PatchOptions; `apply` for a server-side apply patch).
pub fn write_options(q: &Query, headers: &HeaderMap, kind: &str, apply: bool) -> ApiResult<WriteOptions> {
    if kind == "PatchOptions" && !apply && q.get("force").is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[api::validation::FieldError::forbidden("force", "may not be specified for non-apply patch")],
        ));
    }
    let manager = match q.get("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ if apply => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                &[api::validation::FieldError::required("fieldManager", "is required for apply patch")],
            ));
        }
        _ => {
            let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
            ua.split('/').next().unwrap_or("unknown").to_string()
        }
    };
    if manager.len() > 128 {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[api::validation::FieldError::invalid("fieldManager", &manager, "must be no more than 128 characters")],
        ));
    }
    Ok(WriteOptions { dry_run: dry_run(q, kind)?, field_manager: manager, ownership_recorded: false })
}

pub fn list_options(q: &Query) -> ApiResult<ListOptions> {
    let label_selector = LabelSelector::parse(q.get("labelSelector").unwrap_or("")).map_err(|e| {
        ApiError::bad_request(
            format!("unable to parse requirement: {e}").replace("unable to parse requirement: unable to parse requirement: ", "unable to parse requirement: "),
        )
    })?;
    let field_selector = FieldSelector::parse(q.get("fieldSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = match q.get("limit") {
        None | Some("") => 0,
        Some(l) => l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?.max(0) as usize,
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: q.get("continue").filter(|c| !c.is_empty()).map(String::from),
        resource_version: q.get("resourceVersion").map(String::from),
        resource_version_match: q.get("resourceVersionMatch").map(String::from),
    })
}

/// ValidateListOptions for a list (not a watch), then the etcd3 store's check of `continue`
/// with a resourceVersion.
pub fn validate_list(q: &Query) -> ApiResult<()> {
    use api::validation::FieldError;
    let rv = q.get("resourceVersion").unwrap_or("");
    let cont = q.get("continue").unwrap_or("");
    let mut errs = Vec::new();
    if let Some(m) = q.get("resourceVersionMatch").filter(|m| !m.is_empty()) {
        if rv.is_empty() {
            errs.push(FieldError::forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"));
        }
        if !cont.is_empty() {
            errs.push(FieldError::forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"));
        }
        if m != "Exact" && m != "NotOlderThan" {
            errs.push(FieldError::not_supported("resourceVersionMatch", m, &["Exact", "NotOlderThan", ""]));
        }
        if m == "Exact" && rv == "0" {
            errs.push(FieldError::forbidden("resourceVersionMatch", "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""));
        }
    }
    if q.get("sendInitialEvents").is_some() {
        errs.push(FieldError::forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", &errs));
    }
    if !cont.is_empty() && !rv.is_empty() && rv != "0" {
        return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
    }
    Ok(())
}

/// Every field selector term must name a field the kind supports.
pub fn check_fields(res: &Resource, opts: &ListOptions) -> ApiResult<()> {
    let probe = json!({});
    for t in &opts.field_selector.terms {
        if res.field_value(&probe, &t.field).is_none() {
            return Err(ApiError::bad_request(format!("field label not supported: {}", t.field)));
        }
    }
    Ok(())
}

pub fn delete_options(q: &Query, body: &[u8]) -> ApiResult<DeleteOptions> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        codec::decode_json(body).map_err(|e| ApiError::bad_request(format!("DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions: {e}")))?.value
    };
    let policy = q.get("propagationPolicy").map(String::from).or_else(|| opts["propagationPolicy"].as_str().map(String::from));
    if let Some(p) = policy.as_deref() {
        if !matches!(p, "Foreground" | "Background" | "Orphan") {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &[api::validation::FieldError::not_supported("propagationPolicy", p, &["Foreground", "Background", "Orphan", "nil"])],
            ));
        }
    }
    let dry = dry_run(q, "DeleteOptions")? || opts["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All"));
    let grace_period = q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()).or_else(|| opts["gracePeriodSeconds"].as_i64());
    let orphan = opts["orphanDependents"].as_bool() == Some(true) || q.get("orphanDependents") == Some("true");
    Ok(DeleteOptions {
        dry_run: dry,
        precondition_uid: opts["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv: opts["preconditions"]["resourceVersion"].as_str().map(String::from),
        grace_period,
        propagation: policy.or_else(|| orphan.then(|| "Orphan".to_string())),
        orphan_dependents_false: opts["orphanDependents"].as_bool() == Some(false) || q.get("orphanDependents") == Some("false"),
    })
}
