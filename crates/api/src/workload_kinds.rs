//! Workload kinds: Deployments and ReplicaSets (`apps/v1`), Pods, Events and Nodes (`v1`),
//! Leases (`coordination.k8s.io/v1`), with kube-apiserver's defaulting, status handling and
//! Table columns (pkg/printers/internalversion).
//!
//! Their `status` belongs to the status subresource: an update of the object keeps the stored
//! status, and an update of `/status` keeps the stored spec.

use serde_json::{json, Value};

use crate::resource::Column;
use crate::resource::{register, roundtrip_as, Admission, Resource, Strategy, Subresource, TypeError, STANDARD_VERBS};
use crate::selector::LabelSelector;
use crate::validation::{FieldError, NameRule};
use crate::ApiResult;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj[key] = v;
    }
}

/// Pod spec defaulting (pkg/apis/core/v1/defaults.go), for pods and pod templates.
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(serde_json::Value::as_array_mut) {
            for c in cs {
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                let latest = c["image"].as_str().is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
                set_default(c, "imagePullPolicy", json!(if latest { "Always" } else { "IfNotPresent" }));
                set_default(c, "resources", json!({}));
                for port in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                    set_default(port, "protocol", json!("TCP"));
                }
                for e in c.get_mut("env").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(from) = e.get_mut("valueFrom") {
                        default_selectors(from);
                    }
                }
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(serde_json::Value::as_array_mut) {
        for v in vols {
            for kind in ["configMap", "secret"] {
                if v[kind].is_object() {
                    set_default(&mut v[kind], "defaultMode", json!(420));
                }
            }
            if v["projected"].is_object() {
                set_default(&mut v["projected"], "defaultMode", json!(420));
            }
            if v["downwardAPI"].is_object() {
                set_default(&mut v["downwardAPI"], "defaultMode", json!(420));
            }
            for item in v["downwardAPI"].get_mut("items").and_then(Value::as_array_mut).into_iter().flatten() {
                default_selectors(item);
            }
            for source in v["projected"].get_mut("sources").and_then(Value::as_array_mut).into_iter().flatten() {
                for item in source["downwardAPI"].get_mut("items").and_then(Value::as_array_mut).into_iter().flatten() {
                    default_selectors(item);
                }
            }
        }
    }
}

/// A fieldRef's apiVersion defaults to v1, and a resourceFieldRef's divisor is stored as "0"
/// (its zero Quantity): a template read back compares equal to what a client sends again
/// (`kubectl rollout undo` relies on it to find the old ReplicaSet).
fn default_selectors(holder: &mut Value) {
    if holder["fieldRef"].is_object() {
        set_default(&mut holder["fieldRef"], "apiVersion", json!("v1"));
    }
    if holder["resourceFieldRef"].is_object() {
        set_default(&mut holder["resourceFieldRef"], "divisor", json!("0"));
    }
}

fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let name = s(&c["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(format!("{path}.containers[{i}].name"), ""));
        } else {
            for m in crate::validation::dns1123_label(&name) {
                errs.push(FieldError::invalid(format!("{path}.containers[{i}].name"), &name, m));
            }
            if !names.insert(name.clone()) {
                errs.push(FieldError::duplicate(format!("{path}.containers[{i}].name"), &name));
            }
        }
        if s(&c["image"]).is_empty() {
            errs.push(FieldError::required(format!("{path}.containers[{i}].image"), ""));
        }
    }
    let volumes: Vec<String> = spec["volumes"].as_array().map(|a| a.iter().map(|v| s(&v["name"])).collect()).unwrap_or_default();
    validate_volume_paths(spec, path, errs);
    for list in ["initContainers", "ephemeralContainers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            for (j, m) in c["volumeMounts"].as_array().into_iter().flatten().enumerate() {
                if let Some(sub) = m["subPath"].as_str().filter(|p| !p.is_empty()) {
                    local_descending_path(sub, &format!("{path}.{list}[{i}].volumeMounts[{j}].subPath"), errs);
                }
            }
        }
    }
    for (i, c) in containers.iter().enumerate() {
        for (j, m) in c["volumeMounts"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            if let Some(sub) = m["subPath"].as_str().filter(|p| !p.is_empty()) {
                local_descending_path(sub, &format!("{path}.containers[{i}].volumeMounts[{j}].subPath"), errs);
            }
            let n = s(&m["name"]);
            if !volumes.contains(&n) {
                errs.push(FieldError {
                    kind: crate::validation::ErrorType::NotFound,
                    field: format!("{path}.containers[{i}].volumeMounts[{j}].name"),
                    value: Some(crate::validation::go_quote(&n)),
                    detail: String::new(),
                });
            }
        }
    }
}

/// validateLocalDescendingPath: a path inside the volume, never absolute, never up.
fn local_descending_path(p: &str, field: &str, errs: &mut Vec<FieldError>) {
    if p.starts_with('/') {
        errs.push(FieldError::invalid(field, p, "must be a relative path"));
    }
    if p.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(field, p, "must not contain '..'"));
    }
}

/// validateLocalNonReservedPath: also not `..`-prefixed, which the atomic writer's own
/// entries (`..data`, `..2024_…`) are (unless the `..` element was already reported).
fn local_non_reserved_path(p: &str, field: &str, errs: &mut Vec<FieldError>) {
    if p.is_empty() {
        errs.push(FieldError::required(field, ""));
        return;
    }
    local_descending_path(p, field, errs);
    if p.starts_with("..") && !p.starts_with("../") {
        errs.push(FieldError::invalid(field, p, "must not start with '..'"));
    }
}

/// The file paths of configMap, secret, downwardAPI and projected volumes: each names a file
/// the node agent writes, as root, under the volume's directory, and nowhere else.
fn validate_volume_paths(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let items = |v: &Value, field: &str, errs: &mut Vec<FieldError>| {
        for (j, item) in v["items"].as_array().into_iter().flatten().enumerate() {
            local_non_reserved_path(item["path"].as_str().unwrap_or_default(), &format!("{field}.items[{j}].path"), errs);
        }
    };
    for (i, vol) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let at = format!("{path}.volumes[{i}]");
        for source in ["configMap", "secret", "downwardAPI"] {
            if vol[source].is_object() {
                items(&vol[source], &format!("{at}.{source}"), errs);
            }
        }
        for (k, src) in vol["projected"]["sources"].as_array().into_iter().flatten().enumerate() {
            let at = format!("{at}.projected.sources[{k}]");
            for source in ["configMap", "secret", "downwardAPI"] {
                if src[source].is_object() {
                    items(&src[source], &format!("{at}.{source}"), errs);
                }
            }
            if src["serviceAccountToken"].is_object() {
                local_non_reserved_path(src["serviceAccountToken"]["path"].as_str().unwrap_or_default(), &format!("{at}.serviceAccountToken.path"), errs);
            }
        }
    }
}

fn keep_status(new: &mut Value, old: &Value) {
    new["status"] = old.get("status").cloned().unwrap_or(json!({}));
}

// ---------------------------------------------------------------------------------------------

pub struct DeploymentStrategy;

fn default_deployment(obj: &mut Value) {
    set_default(&mut obj["spec"], "replicas", json!(1));
    set_default(&mut obj["spec"], "revisionHistoryLimit", json!(10));
    set_default(&mut obj["spec"], "progressDeadlineSeconds", json!(600));
    let strategy = &mut obj["spec"]["strategy"];
    if strategy.get("type").is_none_or(Value::is_null) {
        strategy["type"] = json!("RollingUpdate");
    }
    if strategy["type"] == "RollingUpdate" {
        let ru = &mut strategy["rollingUpdate"];
        set_default(ru, "maxUnavailable", json!("25%"));
        set_default(ru, "maxSurge", json!("25%"));
    }
    default_pod_spec(&mut obj["spec"]["template"]["spec"]);
}

fn validate_selector_matches_template(obj: &Value, errs: &mut Vec<FieldError>) {
    let sel = &obj["spec"]["selector"];
    if !sel.is_object() || (sel["matchLabels"].as_object().is_none_or(|m| m.is_empty()) && sel["matchExpressions"].as_array().is_none_or(|m| m.is_empty())) {
        errs.push(FieldError::required("spec.selector", ""));
        return;
    }
    match LabelSelector::from_object(sel) {
        Ok(ls) if !ls.matches(obj["spec"]["template"]["metadata"]["labels"].as_object()) => {
            let labels = obj["spec"]["template"]["metadata"]["labels"].as_object().map(|m| {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default())).collect();
                format!("map[string]string{{{}}}", inner.join(", "))
            });
            errs.push(FieldError::invalid_raw(
                "spec.template.metadata.labels",
                labels.unwrap_or_else(|| "map[string]string(nil)".into()),
                "`selector` does not match template `labels`",
            ));
        }
        Ok(_) => {}
        Err(e) => errs.push(FieldError::invalid_raw("spec.selector", sel.to_string(), e.0)),
    }
}

impl Strategy for DeploymentStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<k8s_openapi::api::apps::v1::Deployment>(obj)
    }
    fn prepare_create(&self, obj: &mut Value) -> ApiResult<()> {
        obj["status"] = json!({});
        default_deployment(obj);
        Ok(())
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) -> ApiResult<()> {
        keep_status(new, old);
        default_deployment(new);
        Ok(())
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        validate_selector_matches_template(obj, errs);
        validate_pod_spec(&obj["spec"]["template"]["spec"], "spec.template.spec", errs);
        if obj["spec"]["replicas"].as_i64().is_some_and(|r| r < 0) {
            errs.push(FieldError::invalid_raw("spec.replicas", obj["spec"]["replicas"].to_string(), "must be greater than or equal to 0"));
        }
    }
    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        if new["spec"]["selector"] != old["spec"]["selector"] {
            errs.push(FieldError::invalid_raw("spec.selector", new["spec"]["selector"].to_string(), "field is immutable"));
        }
        self.validate(new, errs);
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn validate_status_update(&self, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        let status = &new["status"];
        validate_replica_counts(
            status,
            &["observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas", "collisionCount"],
            &["updatedReplicas", "readyReplicas", "availableReplicas"],
            errs,
        );
        // ValidateDeploymentStatusUpdate: the collision count only grows.
        let (was, now) = (old["status"]["collisionCount"].as_i64(), status["collisionCount"].as_i64());
        if let (Some(was), now) = (was, now) {
            if now.unwrap_or(0) < was {
                errs.push(FieldError::invalid_raw("status.collisionCount", now.unwrap_or(0).to_string(), "cannot be decremented"));
            }
        }
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::DEPLOYMENT_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let st = &obj["status"];
        let n = |v: &Value| v.as_i64().unwrap_or(0);
        let mut cells = vec![
            json!(crate::object::name(obj)),
            json!(format!("{}/{}", n(&st["readyReplicas"]), n(&obj["spec"]["replicas"]))),
            json!(n(&st["updatedReplicas"])),
            json!(n(&st["availableReplicas"])),
            json!(crate::object::age(obj)),
        ];
        cells.extend(template_cells(obj));
        cells
    }
}

/// The wide columns of a workload with a pod template: CONTAINERS, IMAGES, SELECTOR.
fn template_cells(obj: &Value) -> [Value; 3] {
    let containers = obj["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
    [
        json!(containers.iter().map(|c| s(&c["name"])).collect::<Vec<_>>().join(",")),
        json!(containers.iter().map(|c| s(&c["image"])).collect::<Vec<_>>().join(",")),
        json!(selector_string(&obj["spec"]["selector"])),
    ]
}

fn selector_string(sel: &Value) -> String {
    sel["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// ValidateNonnegativeField and the "cannot be greater than" checks of the apps kinds'
/// status validation (ValidateDeploymentStatus, ValidateReplicaSetStatus): `nonnegative` are
/// the fields that may not be negative, in the order kube checks them; each listed in
/// `within_replicas` may not exceed status.replicas, and availableReplicas may not exceed
/// readyReplicas.
fn validate_replica_counts(status: &Value, nonnegative: &[&str], within_replicas: &[&str], errs: &mut Vec<FieldError>) {
    let n = |f: &str| status[f].as_i64().unwrap_or(0);
    for f in nonnegative {
        if status.get(*f).is_some_and(|v| !v.is_null()) && n(f) < 0 {
            errs.push(FieldError::invalid_raw(format!("status.{f}"), n(f).to_string(), "must be greater than or equal to 0"));
        }
    }
    for f in within_replicas {
        if n(f) > n("replicas") {
            errs.push(FieldError::invalid_raw(format!("status.{f}"), n(f).to_string(), "cannot be greater than status.replicas"));
        }
    }
    if n("availableReplicas") > n("readyReplicas") {
        errs.push(FieldError::invalid_raw("status.availableReplicas", n("availableReplicas").to_string(), "cannot be greater than readyReplicas"));
    }
}

pub struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<k8s_openapi::api::apps::v1::ReplicaSet>(obj)
    }
    fn prepare_create(&self, obj: &mut Value) -> ApiResult<()> {
        obj["status"] = json!({"replicas": 0});
        set_default(&mut obj["spec"], "replicas", json!(1));
        default_pod_spec(&mut obj["spec"]["template"]["spec"]);
        Ok(())
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) -> ApiResult<()> {
        keep_status(new, old);
        set_default(&mut new["spec"], "replicas", json!(1));
        default_pod_spec(&mut new["spec"]["template"]["spec"]);
        Ok(())
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        validate_selector_matches_template(obj, errs);
        validate_pod_spec(&obj["spec"]["template"]["spec"], "spec.template.spec", errs);
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn validate_status_update(&self, new: &Value, _old: &Value, errs: &mut Vec<FieldError>) {
        validate_replica_counts(
            &new["status"],
            &["replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"],
            &["fullyLabeledReplicas", "readyReplicas", "availableReplicas"],
            errs,
        );
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::REPLICASET_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let st = &obj["status"];
        let n = |v: &Value| v.as_i64().unwrap_or(0);
        let mut cells = vec![
            json!(crate::object::name(obj)),
            json!(n(&obj["spec"]["replicas"])),
            json!(n(&st["replicas"])),
            json!(n(&st["readyReplicas"])),
            json!(crate::object::age(obj)),
        ];
        cells.extend(template_cells(obj));
        cells
    }
}

pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<k8s_openapi::api::core::v1::Pod>(obj)
    }
    fn prepare_create(&self, obj: &mut Value) -> ApiResult<()> {
        default_pod_spec(&mut obj["spec"]);
        set_default(&mut obj["spec"], "serviceAccountName", json!("default"));
        let sa = obj["spec"]["serviceAccountName"].clone();
        set_default(&mut obj["spec"], "serviceAccount", sa);
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        Ok(())
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) -> ApiResult<()> {
        keep_status(new, old);
        Ok(())
    }
    fn graceful_deletion(&self) -> bool {
        true
    }
    /// A pod on a node stops gracefully: the requested period, else its
    /// terminationGracePeriodSeconds, else 30 s. One never scheduled is deleted at once.
    fn deletion_grace(&self, current: &Value, requested: Option<i64>) -> Option<i64> {
        let scheduled = current["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        scheduled.then(|| requested.unwrap_or_else(|| current["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30))).filter(|g| *g > 0)
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        validate_pod_spec(&obj["spec"], "spec", errs);
    }
    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        // Pod spec is immutable but for a few fields (images, activeDeadlineSeconds, tolerations).
        let strip = |v: &Value| {
            let mut spec = v["spec"].clone();
            if let Some(cs) = spec.get_mut("containers").and_then(serde_json::Value::as_array_mut) {
                for c in cs {
                    c["image"] = Value::Null;
                }
            }
            for f in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"] {
                spec[f] = Value::Null;
            }
            spec
        };
        if !old["spec"]["nodeName"].is_null() && strip(new) != strip(old) {
            errs.push(FieldError::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        }
        self.validate(new, errs);
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::POD_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let statuses = obj["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
        let total = obj["spec"]["containers"].as_array().map_or(0, |a| a.len());
        let ready = statuses.iter().filter(|c| c["ready"] == true).count();
        let restarts: i64 = statuses.iter().map(|c| c["restartCount"].as_i64().unwrap_or(0)).fold(0, i64::saturating_add);
        vec![
            json!(crate::object::name(obj)),
            json!(format!("{ready}/{total}")),
            json!(pod_status_reason(obj)),
            json!(restarts),
            json!(crate::object::age(obj)),
            json!(s(&obj["status"]["podIP"]).chars().next().map(|_| s(&obj["status"]["podIP"])).unwrap_or_else(|| "<none>".into())),
            json!(if s(&obj["spec"]["nodeName"]).is_empty() { "<none>".to_string() } else { s(&obj["spec"]["nodeName"]) }),
            json!("<none>"),
            json!("<none>"),
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "spec.nodeName" => s(&obj["spec"]["nodeName"]),
            "spec.serviceAccountName" => s(&obj["spec"]["serviceAccountName"]),
            "status.phase" => s(&obj["status"]["phase"]),
            "status.podIP" => s(&obj["status"]["podIP"]),
            "spec.restartPolicy" => s(&obj["spec"]["restartPolicy"]),
            _ => String::new(),
        }
    }
}

/// The STATUS column of `kubectl get pods`: a waiting or terminated reason, else the phase.
pub fn pod_status_reason(pod: &Value) -> String {
    if crate::object::is_deleting(pod) {
        return "Terminating".into();
    }
    let mut reason = s(&pod["status"]["phase"]);
    if !s(&pod["status"]["reason"]).is_empty() {
        reason = s(&pod["status"]["reason"]);
    }
    for c in pod["status"]["containerStatuses"].as_array().cloned().unwrap_or_default() {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
            return r.to_string();
        }
        if let Some(r) = c["state"]["terminated"]["reason"].as_str().filter(|r| !r.is_empty()) {
            reason = r.to_string();
        }
    }
    if reason.is_empty() {
        "Pending".into()
    } else {
        reason
    }
}

pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<k8s_openapi::api::core::v1::Event>(obj)
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::EVENT_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let last =
            obj["lastTimestamp"].as_str().or(obj["eventTime"].as_str()).or(obj["metadata"]["creationTimestamp"].as_str()).and_then(crate::object::parse_time);
        let seen = last.map(|t| crate::object::human_duration(jiff::Timestamp::now().as_second() - t.as_second())).unwrap_or_else(|| "<unknown>".into());
        let first = obj["firstTimestamp"].as_str().or(obj["metadata"]["creationTimestamp"].as_str()).and_then(crate::object::parse_time);
        let first_seen = first.map(|t| crate::object::human_duration(jiff::Timestamp::now().as_second() - t.as_second())).unwrap_or_else(|| "<unknown>".into());
        let source = match (s(&obj["source"]["component"]), s(&obj["source"]["host"])) {
            (c, h) if !h.is_empty() => format!("{c}, {h}"),
            (c, _) => c,
        };
        vec![
            json!(seen),
            obj["type"].clone(),
            obj["reason"].clone(),
            json!(format!("{}/{}", s(&obj["involvedObject"]["kind"]).to_lowercase(), s(&obj["involvedObject"]["name"]))),
            json!(s(&obj["involvedObject"]["fieldPath"])),
            json!(source),
            obj["message"].clone(),
            json!(first_seen),
            json!(obj["count"].as_i64().unwrap_or(1).to_string()),
            json!(crate::object::name(obj)),
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field.strip_prefix("involvedObject.") {
            Some(f) => s(&obj["involvedObject"][f]),
            None => match field {
                "reason" => s(&obj["reason"]),
                "type" => s(&obj["type"]),
                "source" => s(&obj["source"]["component"]),
                _ => String::new(),
            },
        }
    }
}

pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<k8s_openapi::api::core::v1::Node>(obj)
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::NODE_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let ready =
            obj["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")).map(|c| c["status"] == "True").unwrap_or(false);
        let address = |t: &str| {
            obj["status"]["addresses"].as_array().and_then(|a| a.iter().find(|x| x["type"] == t)).map(|x| s(&x["address"])).unwrap_or_else(|| "<none>".into())
        };
        vec![
            json!(crate::object::name(obj)),
            json!(if ready { "Ready" } else { "NotReady" }),
            json!("<none>"),
            json!(crate::object::age(obj)),
            obj["status"]["nodeInfo"]["kubeletVersion"].clone(),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            obj["status"]["nodeInfo"]["osImage"].clone(),
            obj["status"]["nodeInfo"]["kernelVersion"].clone(),
            obj["status"]["nodeInfo"]["containerRuntimeVersion"].clone(),
        ]
    }
}

pub struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn roundtrip(&self, obj: Value) -> Result<(Value, Vec<String>), TypeError> {
        roundtrip_as::<k8s_openapi::api::coordination::v1::Lease>(obj)
    }
    fn columns(&self) -> &'static [Column] {
        &crate::table::LEASE_COLUMNS
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(crate::object::name(obj)), obj["spec"]["holderIdentity"].clone(), json!(crate::object::age(obj))]
    }
}

macro_rules! resource {
    ($name:ident, $group:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr, $short:expr, $cats:expr, $rule:expr, $fields:expr, $strategy:expr, $ty:ty, $subs:expr, $admission:expr) => {
        pub static $name: Resource = Resource {
            group: $group,
            version: "v1",
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: $short,
            categories: $cats,
            name_rule: $rule,
            selectable_fields: $fields,
            strategy: &$strategy,
            register_schema: register::<$ty>,
            verbs: STANDARD_VERBS,
            subresources: $subs,
            admission: $admission,
            grants: None,
            computed: None,
        };
    };
}

resource!(
    DEPLOYMENTS,
    "apps",
    "Deployment",
    "deployments",
    "deployment",
    true,
    &["deploy"],
    &["all"],
    NameRule::Dns1123Subdomain,
    &[],
    DeploymentStrategy,
    k8s_openapi::api::apps::v1::Deployment,
    &[Subresource::Scale, Subresource::Status],
    &[]
);
resource!(
    REPLICASETS,
    "apps",
    "ReplicaSet",
    "replicasets",
    "replicaset",
    true,
    &["rs"],
    &["all"],
    NameRule::Dns1123Subdomain,
    &[],
    ReplicaSetStrategy,
    k8s_openapi::api::apps::v1::ReplicaSet,
    &[Subresource::Scale, Subresource::Status],
    &[]
);
resource!(
    PODS,
    "",
    "Pod",
    "pods",
    "pod",
    true,
    &["po"],
    &["all"],
    NameRule::Dns1123Subdomain,
    &["spec.nodeName", "spec.serviceAccountName", "status.phase", "status.podIP", "spec.restartPolicy"],
    PodStrategy,
    k8s_openapi::api::core::v1::Pod,
    &[Subresource::Attach, Subresource::Binding, Subresource::Exec, Subresource::Log, Subresource::Status],
    &[Admission::ServiceAccount]
);
resource!(
    EVENTS,
    "",
    "Event",
    "events",
    "event",
    true,
    &["ev"],
    &[],
    NameRule::PathSegment,
    &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "type",
        "source"
    ],
    EventStrategy,
    k8s_openapi::api::core::v1::Event,
    &[],
    &[]
);
resource!(
    NODES,
    "",
    "Node",
    "nodes",
    "node",
    false,
    &["no"],
    &[],
    NameRule::Dns1123Subdomain,
    &[],
    NodeStrategy,
    k8s_openapi::api::core::v1::Node,
    &[Subresource::Status],
    &[]
);
resource!(
    LEASES,
    "coordination.k8s.io",
    "Lease",
    "leases",
    "lease",
    true,
    &[],
    &[],
    NameRule::Dns1123Subdomain,
    &[],
    LeaseStrategy,
    k8s_openapi::api::coordination::v1::Lease,
    &[],
    &[]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaulting_adds_no_null_fields() {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        default_pod_spec(&mut spec);
        let obj = spec.as_object().unwrap();
        assert!(!obj.contains_key("initContainers") && !obj.contains_key("volumes"), "{spec}");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn volume_file_paths_stay_inside_their_volume() {
        let spec = json!({
            "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "s", "mountPath": "/m", "subPath": "../up"}]}],
            "volumes": [
                {"name": "s", "secret": {"secretName": "x", "items": [{"key": "a", "path": "/etc/cron.d/x"}, {"key": "b", "path": "a/../../b"}, {"key": "c", "path": "..data"}, {"key": "d", "path": "ok/file"}]}},
                {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "../token"}}, {"configMap": {"name": "c", "items": [{"key": "k", "path": ""}]}}]}},
            ],
        });
        let mut errs = Vec::new();
        validate_pod_spec(&spec, "spec", &mut errs);
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "spec.volumes[0].secret.items[0].path: Invalid value: \"/etc/cron.d/x\": must be a relative path",
                "spec.volumes[0].secret.items[1].path: Invalid value: \"a/../../b\": must not contain '..'",
                "spec.volumes[0].secret.items[2].path: Invalid value: \"..data\": must not start with '..'",
                "spec.volumes[1].projected.sources[0].serviceAccountToken.path: Invalid value: \"../token\": must not contain '..'",
                "spec.volumes[1].projected.sources[1].configMap.items[0].path: Required value",
                "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../up\": must not contain '..'",
            ]
        );
    }
}
