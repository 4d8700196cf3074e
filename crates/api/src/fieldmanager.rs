//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Every write records which manager set which fields, in the `FieldsV1` format. An update
//! takes ownership of the fields it changes, from whoever held them. An apply declares the full
//! set of fields its manager cares about: fields it stops declaring are removed (unless someone
//! else owns them too), and a field another manager owns with a different value is a conflict
//! unless the apply is forced. This follows sigs.k8s.io/structured-merge-diff, which has no Rust
//! counterpart; the type information it takes from schemas comes from `patch::merge_key` here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::kinds::Resource;
use crate::patch::{merge_key, ListStrategy};
use crate::status::{ApiError, Cause, Details};

/// One member of a field set: a path of FieldsV1 segments (`f:name`, `k:{..}`, `v:..`).
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Map-typed fields, whose FieldsV1 node carries a `.` member for the map itself.
fn is_map_field(name: &str) -> bool {
    matches!(name, "labels" | "annotations" | "data" | "binaryData" | "stringData" | "matchLabels" | "nodeSelector" | "limits" | "requests")
}

/// Top-level and metadata fields that belong to nobody.
fn unowned(path: &[&str], key: &str) -> bool {
    match path {
        [] => matches!(key, "apiVersion" | "kind" | "status"),
        ["metadata"] => matches!(
            key,
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "creationTimestamp"
                | "generation"
                | "managedFields"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "selfLink"
                | "generateName"
        ),
        _ => false,
    }
}

/// The fields an object sets.
pub fn fields_of(obj: &Value) -> FieldSet {
    fields_with_values(obj).into_keys().collect()
}

/// The fields an object sets, each with its value: found in one walk, so that comparing two
/// objects field by field is not a lookup (a scan of a keyed list) per field.
pub fn fields_with_values(obj: &Value) -> BTreeMap<FieldPath, &Value> {
    fields_through(obj, "")
}

/// The fields a write through `subresource` can own: through the object itself everything
/// but the status; through `status` the status only (kube-apiserver's reset fields).
fn fields_through<'a>(obj: &'a Value, subresource: &str) -> BTreeMap<FieldPath, &'a Value> {
    let mut out = BTreeMap::new();
    match (subresource, obj.get("status")) {
        ("status", Some(status)) => {
            let mut path = vec!["f:status".to_string()];
            if status.as_object().is_some_and(|m| m.is_empty()) {
                out.insert(path.clone(), status);
            }
            walk(status, &mut vec!["status".to_string()], &mut path, &mut out);
        }
        ("status", None) => {}
        _ => walk(obj, &mut Vec::new(), &mut Vec::new(), &mut out),
    }
    out
}

fn walk<'a>(v: &'a Value, names: &mut Vec<String>, path: &mut FieldPath, out: &mut BTreeMap<FieldPath, &'a Value>) {
    let Value::Object(m) = v else { return };
    for (k, child) in m {
        let name_path: Vec<&str> = names.iter().map(String::as_str).collect();
        if unowned(&name_path, k) || child.is_null() {
            continue;
        }
        path.push(format!("f:{k}"));
        match child {
            Value::Object(cm) => {
                if is_map_field(k) || cm.is_empty() {
                    out.insert(path.clone(), child);
                }
                names.push(k.clone());
                walk(child, names, path, out);
                names.pop();
            }
            Value::Array(items) => {
                let strategy = merge_key(&name_path, k);
                match strategy {
                    ListStrategy::MergeBy(key) => {
                        names.push(k.clone());
                        for item in items {
                            let Some(kv) = item.get(key) else { continue };
                            path.push(format!("k:{}", json!({ key: kv })));
                            // Two items with one key (ports by containerPort): the first is
                            // the one apply merges into, so it is the one compared.
                            out.entry(path.clone()).or_insert(item);
                            walk(item, names, path, out);
                            path.pop();
                        }
                        names.pop();
                    }
                    ListStrategy::MergePrimitive => {
                        for item in items {
                            path.push(format!("v:{item}"));
                            out.insert(path.clone(), item);
                            path.pop();
                        }
                    }
                    ListStrategy::Replace => {
                        out.insert(path.clone(), child);
                    }
                }
            }
            _ => {
                out.insert(path.clone(), child);
            }
        }
        path.pop();
    }
}

/// FieldsV1 JSON from a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut node = &mut root;
        for (i, seg) in p.iter().enumerate() {
            let child = node.entry(seg.clone()).or_insert_with(|| json!({}));
            let cm = child.as_object_mut().expect("fields node");
            // A path with descendants is also a member itself ("."). The set is ordered, so
            // its descendants, if any, come right after it: one look, not a scan of the set.
            if i == p.len() - 1 && has_descendant(set, p) {
                cm.insert(".".into(), json!({}));
            }
            node = cm;
        }
    }
    Value::Object(root)
}

fn has_descendant(set: &FieldSet, p: &FieldPath) -> bool {
    use std::ops::Bound::{Excluded, Unbounded};
    set.range::<FieldPath, _>((Excluded(p), Unbounded)).next().is_some_and(|o| o.len() > p.len() && o.starts_with(p))
}

/// Whether `p` or one of its ancestors is in `set` (depth lookups, not a scan of the set).
fn self_or_ancestor_in(set: &FieldSet, p: &[String]) -> bool {
    !set.is_empty() && (1..=p.len()).any(|n| set.contains(&p[..n]))
}

/// A set from FieldsV1 JSON.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn rec(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            if child.as_object().is_none_or(|c| c.is_empty()) {
                out.insert(path.clone());
            } else {
                rec(child, path, out);
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// Removes the member at `path` from `obj`.
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parent_path {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = seg.strip_prefix("k:") {
            let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            cur.as_array_mut().and_then(|a| a.iter_mut().find(|item| want.iter().all(|(wk, wv)| item.get(wk) == Some(wv))))
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(want), Some(a)) = (serde_json::from_str::<Map<String, Value>>(k), cur.as_array_mut()) {
            a.retain(|item| !want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)));
        }
    } else if let Some(v) = last.strip_prefix("v:") {
        if let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut()) {
            a.retain(|item| *item != want);
        }
    }
}

/// A path as structured-merge-diff prints it: `.data.key`, `.spec.containers[name="x"].image`.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = seg.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: String,
    fields: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().into(),
                    operation: e["operation"].as_str().unwrap_or_default().into(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                    time: e["time"].as_str().unwrap_or_default().into(),
                    subresource: e["subresource"].as_str().unwrap_or_default().into(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn store_entries(obj: &mut Value, list: Vec<Entry>) {
    let arr: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    crate::object::set_meta(obj, "managedFields", Value::Array(arr));
}

fn changed_fields(old: Option<&Value>, new: &Value, subresource: &str) -> (FieldSet, FieldSet) {
    let new_fields = fields_through(new, subresource);
    let Some(old) = old else {
        return (new_fields.into_keys().collect(), FieldSet::new());
    };
    let old_fields = fields_through(old, subresource);
    let changed = new_fields
        .iter()
        .filter(|(p, v)| match old_fields.get(*p) {
            None => true,
            Some(was) => !is_container(v, p) && was != *v,
        })
        .map(|(p, _)| p.clone())
        .collect();
    let removed = old_fields.keys().filter(|p| !new_fields.contains_key(*p)).cloned().collect();
    (changed, removed)
}

/// Whether the value at `p` holds other fields (a map or a keyed item): its own change is
/// its members'.
fn is_container(value: &Value, p: &[String]) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_)) && p.last().is_some_and(|s| !s.starts_with("v:"))
}

/// Records an Update by `manager` that turned `old` into `new` (None: a create), through
/// `subresource` ("" for the object itself, "status" for its status).
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, subresource: &str, res: &Resource) {
    let mut list = old.map(entries).unwrap_or_default();
    // A client that sends managedFields (e.g. PUT of a read object) keeps what it sent only if
    // it is well formed; lockbox always recomputes ownership from the stored entries.
    let (changed, removed) = changed_fields(old, new, subresource);
    for e in list.iter_mut() {
        e.fields.retain(|p| !changed.contains(p) && !self_or_ancestor_in(&removed, p));
    }
    if !changed.is_empty() {
        let api_version = res.api_version();
        match list.iter_mut().find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = crate::object::now_rfc3339();
            }
            None => list.push(Entry {
                manager: manager.into(),
                operation: "Update".into(),
                api_version,
                time: crate::object::now_rfc3339(),
                subresource: subresource.into(),
                fields: changed,
            }),
        }
    }
    store_entries(new, list);
}

/// True when the two objects differ only in managedFields timestamps.
pub fn same_ignoring_timestamps(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(mf) = v.get_mut("metadata").and_then(|v| v.get_mut("managedFields")).and_then(serde_json::Value::as_array_mut) {
            for e in mf {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// Merges an applied configuration into an object: maps deep-merge, keyed lists merge by key,
/// other lists are replaced.
fn merge_applied(target: &mut Value, applied: &Value, names: &mut Vec<String>) {
    let (Value::Object(t), Value::Object(a)) = (&mut *target, applied) else {
        *target = applied.clone();
        return;
    };
    for (k, av) in a {
        let name_path: Vec<&str> = names.iter().map(String::as_str).collect();
        if av.is_null() {
            continue;
        }
        match (t.get_mut(k), av) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => {
                names.push(k.clone());
                merge_applied(tv, av, names);
                names.pop();
            }
            (Some(Value::Array(tl)), Value::Array(al)) => match merge_key(&name_path, k) {
                ListStrategy::MergeBy(key) => {
                    names.push(k.clone());
                    // By an index of the keys, not a scan of the list per applied item.
                    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
                    for (i, t) in tl.iter().enumerate() {
                        at.entry(t.get(key).unwrap_or(&Value::Null).to_string()).or_insert(i);
                    }
                    for item in al {
                        let k = item.get(key).unwrap_or(&Value::Null).to_string();
                        match at.get(&k) {
                            Some(&i) => merge_applied(&mut tl[i], item, names),
                            None => {
                                at.insert(k, tl.len());
                                tl.push(item.clone());
                            }
                        }
                    }
                    names.pop();
                }
                ListStrategy::MergePrimitive => {
                    let mut seen: std::collections::HashSet<String> = tl.iter().map(Value::to_string).collect();
                    for item in al {
                        if seen.insert(item.to_string()) {
                            tl.push(item.clone());
                        }
                    }
                }
                ListStrategy::Replace => *tl = al.clone(),
            },
            _ => {
                t.insert(k.clone(), av.clone());
            }
        }
    }
}

/// Server-side apply of `applied` by `manager` onto `current` (None: create), through
/// `subresource` ("" or "status"). Returns the new object with managedFields set, or a 409
/// naming the conflicting fields and managers. A manager's apply entry is its own per
/// subresource, as in kube-apiserver.
pub fn apply(current: Option<&Value>, applied: &Value, manager: &str, subresource: &str, force: bool, res: &Resource) -> Result<Value, ApiError> {
    let mine = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == subresource;
    let applied_fields = fields_through(applied, subresource);
    let applied_set: FieldSet = applied_fields.keys().cloned().collect();
    let mut list = current.map(entries).unwrap_or_default();
    let mut conflicts: Vec<(String, String, FieldPath)> = Vec::new();
    if let Some(cur) = current {
        let current_fields = fields_through(cur, subresource);
        for e in list.iter().filter(|e| !mine(e)) {
            for p in e.fields.intersection(&applied_set) {
                let Some(wanted) = applied_fields.get(p) else { continue };
                if is_container(wanted, p) {
                    continue;
                }
                if current_fields.get(p) != Some(wanted) {
                    conflicts.push((e.manager.clone(), e.api_version.clone(), p.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts, res, crate::object::name(applied)));
    }
    let mut obj = current.cloned().unwrap_or_else(|| json!({}));
    // Fields this manager applied before and no longer declares go, unless someone else owns them.
    if let Some(previous) = list.iter().find(|e| mine(e)) {
        let others: FieldSet = list.iter().filter(|e| !mine(e)).flat_map(|e| e.fields.iter().cloned()).collect();
        let mut dropped: Vec<FieldPath> = previous.fields.difference(&applied_set).filter(|p| !others.contains(*p)).cloned().collect();
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in dropped {
            remove_at(&mut obj, &p);
        }
    }
    merge_applied(&mut obj, applied, &mut Vec::new());
    if force {
        let taken: BTreeSet<FieldPath> = conflicts.iter().map(|(_, _, p)| p.clone()).collect();
        for e in list.iter_mut() {
            e.fields.retain(|p| !taken.contains(p));
        }
    }
    list.retain(|e| !mine(e));
    list.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version: res.api_version(),
        time: crate::object::now_rfc3339(),
        subresource: subresource.into(),
        fields: applied_set,
    });
    store_entries(&mut obj, list);
    Ok(obj)
}

fn conflict_error(conflicts: &[(String, String, FieldPath)], res: &Resource, name: &str) -> ApiError {
    let who = |m: &str, v: &str| format!("\"{m}\" using {v}");
    let body = if conflicts.len() == 1 {
        let (m, v, p) = &conflicts[0];
        format!("conflict with {}: {}", who(m, v), path_string(p))
    } else {
        let mut by_manager: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (m, v, p) in conflicts {
            by_manager.entry(who(m, v)).or_default().push(path_string(p));
        }
        let mut s = String::from("conflicts with");
        if by_manager.len() == 1 {
            let (m, paths) = by_manager.iter().next().expect("one");
            s.push_str(&format!(" {m}:"));
            for p in paths {
                s.push_str(&format!("\n- {p}"));
            }
        } else {
            for (m, paths) in &by_manager {
                s.push_str(&format!("\n{m}:"));
                for p in paths {
                    s.push_str(&format!("\n- {p}"));
                }
            }
        }
        s
    };
    let n = conflicts.len();
    let mut e = ApiError::conflict(res.group, res.plural, name, "");
    e.reason = crate::status::Reason::FieldConflict;
    e.message = format!("Apply failed with {n} conflict{}: {body}", if n == 1 { "" } else { "s" });
    e.details = Some(Details {
        name: name.into(),
        group: res.group.into(),
        kind: res.plural.into(),
        causes: conflicts
            .iter()
            .map(|(m, v, p)| Cause { reason: "FieldManagerConflict".into(), message: format!("conflict with {}", who(m, v)), field: path_string(p) })
            .collect(),
        retry_after_seconds: None,
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::CONFIGMAPS;

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"app": "x"}}, "data": {"k": "v"}});
        let set = fields_of(&obj);
        let v1 = to_fields_v1(&set);
        assert_eq!(v1, json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}));
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_conflicts_with_updater_and_force_takes_over() {
        let mut created = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        record_update(None, &mut created, "kubectl-create", "", &CONFIGMAPS);
        let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "other"}});
        let e = apply(Some(&created), &applied, "kubectl", "", false, &CONFIGMAPS).unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(e.message, "Apply failed with 1 conflict: conflict with \"kubectl-create\" using v1: .data.k");
        let forced = apply(Some(&created), &applied, "kubectl", "", true, &CONFIGMAPS).unwrap();
        assert_eq!(forced["data"]["k"], "other");
        // The old manager keeps only the map itself; the forced field moved to the applier.
        let mf = forced["metadata"]["managedFields"].as_array().unwrap();
        let create = mf.iter().find(|e| e["manager"] == "kubectl-create").unwrap();
        assert_eq!(create["fieldsV1"], json!({"f:data": {}}));
        let applier = mf.iter().find(|e| e["manager"] == "kubectl").unwrap();
        assert_eq!(applier["operation"], "Apply");
        assert_eq!(applier["fieldsV1"], json!({"f:data": {".": {}, "f:k": {}}}));
        // Same value: no conflict, shared ownership.
        let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        assert!(apply(Some(&created), &same, "other", "", false, &CONFIGMAPS).is_ok());
    }

    #[test]
    fn apply_removes_fields_no_longer_declared() {
        let first = apply(None, &json!({"metadata": {"name": "a"}, "data": {"a": "1", "b": "2"}}), "m", "", false, &CONFIGMAPS).unwrap();
        let second = apply(Some(&first), &json!({"metadata": {"name": "a"}, "data": {"a": "1"}}), "m", "", false, &CONFIGMAPS).unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));
    }

    #[test]
    fn status_writes_own_the_status_only() {
        use crate::workload_kinds::DEPLOYMENTS;
        let old = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 0}});
        let mut new = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 1, "readyReplicas": 1}});
        record_update(Some(&old), &mut new, "ctl", "status", &DEPLOYMENTS);
        let entry = &new["metadata"]["managedFields"][0];
        assert_eq!((entry["manager"].as_str(), entry["subresource"].as_str()), (Some("ctl"), Some("status")));
        assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}));
        // Apply through status: the body's spec is not the manager's.
        let applied = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}, "status": {"replicas": 2}});
        let out = apply(Some(&new), &applied, "ssa", "status", false, &DEPLOYMENTS).unwrap_err();
        assert_eq!(out.reason, crate::Reason::FieldConflict, "ctl owns status.replicas: {}", out.message);
        let out = apply(Some(&new), &applied, "ssa", "status", true, &DEPLOYMENTS).unwrap();
        let ssa = out["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "ssa").unwrap().clone();
        assert_eq!((ssa["operation"].as_str(), ssa["subresource"].as_str()), (Some("Apply"), Some("status")));
        assert_eq!(ssa["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    }
}
