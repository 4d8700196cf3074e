//! The three patch types kube-apiserver accepts on PATCH.
//!
//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902) come from the `json-patch` crate.
//! Strategic merge patch is Kubernetes' own format and no Rust crate implements it, so it is
//! written here: maps merge recursively, `null` deletes, lists with a patch merge key merge
//! item by item, and the `$patch`, `$setElementOrder/`, `$retainKeys` and
//! `$deleteFromPrimitiveList/` directives are honoured (see
//! k8s.io/apimachinery/pkg/util/strategicpatch).

use serde_json::{Map, Value};

use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

pub const PATCH_CONTENT_TYPES: &[&str] =
    &["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"];

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// kube-apiserver's `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// kube-apiserver's `JSONPatchMaxCopyBytes` (its request body limit): how much `copy`
/// operations may add to a document in one patch. Without it, a 2 KB patch whose copies keep
/// doubling an array grows without bound.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

pub fn json_patch(original: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: json_patch::Patch = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if patch.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::request_entity_too_large(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            patch.0.len()
        )));
    }
    let mut doc = original.clone();
    // Applied one operation at a time, so that the copies' growth is checked before each copy
    // is made, never after (the crate applies a whole patch at once). The document is our
    // own clone, so a failure half-way leaves nothing behind.
    let mut copied = 0usize;
    for (i, op) in patch.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(c) = op {
            if let Some(from) = doc.pointer(c.from.as_str()) {
                copied = copied.saturating_add(encoded_len_up_to(from, MAX_JSON_PATCH_COPY_BYTES + 1));
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(ApiError::unprocessable(format!(
                        "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                    )));
                }
            }
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            ApiError::unprocessable(e.to_string())
        })?;
    }
    Ok(doc)
}

/// The length of `v` encoded as JSON, counting no further than `cap` (so measuring a huge
/// value costs no more than the cap).
pub fn encoded_len_up_to(v: &Value, cap: usize) -> usize {
    struct Counter {
        n: usize,
        cap: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.n += b.len();
            if self.n > self.cap {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter { n: 0, cap };
    let _ = serde_json::to_writer(&mut c, v);
    c.n.min(cap)
}

pub fn merge_patch(original: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch = parse_json(body)?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("error decoding patch: a merge patch must be a JSON object"));
    }
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

pub fn strategic_merge_patch(original: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch = parse_json(body)?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request("error decoding patch: a strategic merge patch must be a JSON object"));
    };
    let mut doc = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(&mut doc, &patch, &[]).map_err(ApiError::unprocessable)?;
    Ok(Value::Object(doc))
}

/// How a list field merges, by the field's name and its parent path. This is the part of the
/// Kubernetes types' `patchStrategy`/`patchMergeKey` tags that the served kinds need.
pub fn merge_key(path: &[&str], field: &str) -> ListStrategy {
    let parent = path.last().copied().unwrap_or_default();
    match (parent, field) {
        ("metadata", "finalizers") => ListStrategy::MergePrimitive,
        ("metadata", "ownerReferences") => ListStrategy::MergeBy("uid"),
        (_, "containers" | "initContainers" | "ephemeralContainers") => ListStrategy::MergeBy("name"),
        (_, "env") => ListStrategy::MergeBy("name"),
        (_, "volumes") => ListStrategy::MergeBy("name"),
        (_, "volumeMounts") => ListStrategy::MergeBy("mountPath"),
        (_, "volumeDevices") => ListStrategy::MergeBy("devicePath"),
        (_, "imagePullSecrets") => ListStrategy::MergeBy("name"),
        (_, "hostAliases") => ListStrategy::MergeBy("ip"),
        (_, "conditions") => ListStrategy::MergeBy("type"),
        (_, "topologySpreadConstraints") => ListStrategy::MergeBy("topologyKey"),
        (_, "resourceClaims") => ListStrategy::MergeBy("name"),
        ("containers" | "initContainers" | "ephemeralContainers", "ports") => ListStrategy::MergeBy("containerPort"),
        _ => ListStrategy::Replace,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    Replace,
    MergePrimitive,
    MergeBy(&'static str),
}

fn merge_map(orig: &mut Map<String, Value>, patch: &Map<String, Value>, path: &[&str]) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *orig = strip_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            orig.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other} in map: {}", Value::Object(patch.clone()))),
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<Value> = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if value.is_null() {
            orig.remove(key);
            continue;
        }
        let mut child_path = path.to_vec();
        child_path.push(key);
        match (orig.get_mut(key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => merge_map(o, p, &child_path)?,
            (Some(Value::Array(o)), Value::Array(p)) => {
                let merged = merge_list(o, p, path, key)?;
                *o = merged;
            }
            (_, Value::Object(p)) => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, p, &child_path)?;
                orig.insert(key.clone(), Value::Object(fresh));
            }
            (_, Value::Array(p)) => {
                let merged = merge_list(&[], p, path, key)?;
                orig.insert(key.clone(), Value::Array(merged));
            }
            (_, v) => {
                orig.insert(key.clone(), v.clone());
            }
        }
    }
    for (k, order) in patch.iter().filter_map(|(k, v)| k.strip_prefix("$setElementOrder/").map(|f| (f.to_string(), v.clone()))) {
        if let (Some(Value::Array(list)), Some(order)) = (orig.get_mut(&k), order.as_array()) {
            reorder(list, order, merge_key(path, &k));
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn strip_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn merge_list(orig: &[Value], patch: &[Value], path: &[&str], field: &str) -> Result<Vec<Value>, String> {
    match merge_key(path, field) {
        ListStrategy::Replace => {
            // A list without a merge strategy is replaced whole; `$patch` items make no sense there.
            Ok(patch.iter().map(|v| if let Value::Object(m) = v { Value::Object(strip_directives(m)) } else { v.clone() }).collect())
        }
        ListStrategy::MergePrimitive => {
            let mut out = orig.to_vec();
            let mut seen: std::collections::HashSet<String> = out.iter().map(Value::to_string).collect();
            for v in patch {
                if seen.insert(v.to_string()) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeBy(key) => {
            if patch.iter().any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace")) {
                return Ok(patch.iter().filter(|p| p.get("$patch").is_none()).cloned().collect());
            }
            // Items found by an index of their merge keys, not a scan per patch item: a patch
            // of 10,000 env entries on a list of 10,000 is 10,000 lookups, not 10^8 compares.
            let mut out: Vec<Option<Value>> = orig.iter().cloned().map(Some).collect();
            let mut at: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
            for (i, o) in orig.iter().enumerate() {
                if let Some(k) = o.get(key) {
                    at.entry(k.to_string()).or_default().push(i);
                }
            }
            let mut child_path = path.to_vec();
            child_path.push(field);
            for p in patch {
                let Value::Object(pm) = p else {
                    return Err(format!("{field}: expected a map in a list merged by {key}"));
                };
                let Some(k) = pm.get(key) else {
                    return Err(format!("map: {p} does not contain declared merge key: {key}"));
                };
                let k = k.to_string();
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    for i in at.remove(&k).unwrap_or_default() {
                        out[i] = None;
                    }
                    continue;
                }
                match at.get(&k).and_then(|is| is.first()) {
                    Some(&i) => {
                        if let Some(Value::Object(om)) = &mut out[i] {
                            merge_map(om, pm, &child_path)?;
                        }
                    }
                    None => {
                        let mut fresh = Map::new();
                        merge_map(&mut fresh, pm, &child_path)?;
                        at.entry(k).or_default().push(out.len());
                        out.push(Some(Value::Object(fresh)));
                    }
                }
            }
            Ok(out.into_iter().flatten().collect())
        }
    }
}

/// Orders `list` as `$setElementOrder` says; items it does not name keep their relative order
/// after the named ones.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let key_of = |v: &Value| -> Value {
        match strategy {
            ListStrategy::MergeBy(k) => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let mut wanted: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, o) in order.iter().enumerate() {
        wanted.entry(key_of(o).to_string()).or_insert(i);
    }
    let mut named: Vec<(usize, Value)> = Vec::new();
    let mut rest = Vec::new();
    for item in list.drain(..) {
        match wanted.get(&key_of(&item).to_string()).copied() {
            Some(i) => named.push((i, item)),
            None => rest.push(item),
        }
    }
    named.sort_by_key(|(i, _)| *i);
    list.extend(named.into_iter().map(|(_, v)| v));
    list.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_copies_are_bounded_before_they_are_made() {
        // Each copy doubles the array: unbounded, 40 copies would need terabytes.
        let mut ops = vec![json!({"op": "add", "path": "/data/a", "value": ["x".repeat(1000)]})];
        for _ in 0..40 {
            ops.push(json!({"op": "copy", "from": "/data/a", "path": "/data/a/-"}));
            ops.push(json!({"op": "copy", "from": "/data/a", "path": "/data/b"}));
            ops.push(json!({"op": "move", "from": "/data/b", "path": "/data/a"}));
        }
        let e = json_patch(&json!({"data": {}}), Value::Array(ops).to_string().as_bytes()).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.starts_with("Unable to complete the copy"), "{}", e.message);

        let many = Value::Array(vec![json!({"op": "test", "path": "/a", "value": 1}); MAX_JSON_PATCH_OPERATIONS + 1]);
        let e = json_patch(&json!({"a": 1}), many.to_string().as_bytes()).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (413, "The allowed maximum operations in a JSON patch is 10000, got 10001"));
    }

    #[test]
    fn json_patch_errors_name_the_failing_operation() {
        let ops = json!([{"op": "test", "path": "/a", "value": 1}, {"op": "remove", "path": "/nope"}]);
        let e = json_patch(&json!({"a": 1}), ops.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.starts_with("operation '/1' failed at path '/nope'"), "{}", e.message);
        let ok = json!([{"op": "copy", "from": "/a", "path": "/b"}, {"op": "replace", "path": "/a", "value": 2}]);
        assert_eq!(json_patch(&json!({"a": 1}), ok.to_string().as_bytes()).unwrap(), json!({"a": 2, "b": 1}));
    }

    fn smp(orig: Value, patch: Value) -> Value {
        strategic_merge_patch(&orig, patch.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn kubectl_set_env_patch() {
        let orig = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "server", "image": "x", "env": [{"name": "HF_TOKEN", "value": "a"}, {"name": "KEEP", "value": "k"}]}
        ]}}}});
        let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"server"}],"containers":[{"$setElementOrder/env":[{"name":"HF_TOKEN"},{"name":"KEEP"},{"name":"LOG_LEVEL"}],"env":[{"name":"LOG_LEVEL","valueFrom":{"configMapKeyRef":{"key":"LOG_LEVEL","name":"inference-params"}}}],"name":"server"}]}}}});
        let out = smp(orig, patch);
        let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect::<Vec<_>>(), ["HF_TOKEN", "KEEP", "LOG_LEVEL"]);
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["image"], "x");
    }

    #[test]
    fn directives() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}, "data": {"k": "v"}});
        assert_eq!(smp(orig.clone(), json!({"metadata": {"labels": {"a": null}}}))["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(smp(orig.clone(), json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}))["metadata"]["labels"], json!({"c": "3"}));
        assert_eq!(smp(orig.clone(), json!({"metadata": {"finalizers": ["y"]}}))["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(smp(orig.clone(), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}))["metadata"]["finalizers"], json!([]));
        let list = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(smp(list.clone(), json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}))["spec"]["containers"], json!([{"name": "b"}]));
        assert_eq!(smp(list, json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}))["spec"]["containers"], json!([{"name": "c"}]));
        let retain = smp(
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(retain["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn json_and_merge_patches() {
        let orig = json!({"data": {"a": "1"}});
        assert_eq!(merge_patch(&orig, br#"{"data":{"a":null,"b":"2"}}"#).unwrap(), json!({"data": {"b": "2"}}));
        assert_eq!(json_patch(&orig, br#"[{"op":"add","path":"/data/c","value":"3"}]"#).unwrap()["data"]["c"], "3");
        let e = json_patch(&orig, br#"[{"op":"remove","path":"/nope"}]"#).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(merge_patch(&orig, b"{not json").unwrap_err().code, 400);
    }
}
