//! Validation, status validation and patch cases as data: each fixture file under
//! `tests/fixtures/` is a list of named cases with their input and the exact answer
//! kube-apiserver gives (its messages, byte for byte). A new case is a few lines of JSON.

use std::path::Path;

use serde_json::Value;

use api::validation::{self, FieldError};

fn cases(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn resource(case: &Value) -> &'static api::kinds::Resource {
    let plural = case["resource"].as_str().unwrap();
    api::kinds::ALL.iter().copied().find(|r| r.plural == plural).unwrap_or_else(|| panic!("no resource {plural}"))
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

fn expected(case: &Value) -> Vec<String> {
    case["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect()
}

#[test]
fn validation() {
    for case in cases("validation.json") {
        let res = resource(&case);
        let obj = &case["object"];
        let mut errs = Vec::new();
        validation::validate_object_meta(obj, res.namespaced, res.name_rule, &mut errs);
        match case.get("old") {
            Some(old) => res.strategy.validate_update(obj, old, &mut errs),
            None => res.strategy.validate(obj, &mut errs),
        }
        assert_eq!(messages(&errs), expected(&case), "{}", case["name"]);
    }
}

#[test]
fn status_validation() {
    for case in cases("status.json") {
        let res = resource(&case);
        let mut errs = Vec::new();
        res.strategy.validate_status_update(&case["object"], &case["old"], &mut errs);
        assert_eq!(messages(&errs), expected(&case), "{}", case["name"]);
    }
}

#[test]
fn patches() {
    for case in cases("patch.json") {
        let body = case["patch"].to_string();
        let current = &case["current"];
        let out = match case["type"].as_str().unwrap() {
            "json" => api::patch::json_patch(current, body.as_bytes()),
            "merge" => api::patch::merge_patch(current, body.as_bytes()),
            "strategic" => api::patch::strategic_merge_patch(current, body.as_bytes()),
            other => panic!("patch type {other}"),
        };
        match (out, case.get("result"), case.get("error")) {
            (Ok(v), Some(want), None) => assert_eq!(&v, want, "{}", case["name"]),
            (Err(e), None, Some(want)) => assert_eq!(Some(u64::from(e.code)), want["code"].as_u64(), "{}: {}", case["name"], e.message),
            (got, _, _) => panic!("{}: got {got:?}", case["name"]),
        }
    }
}
