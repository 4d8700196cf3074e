//! Kubernetes protobuf request bodies, decoded into the JSON form every other layer uses.
//!
//! kubectl's typed commands (`create namespace|configmap|secret`, `auth can-i`, `create token`)
//! send `application/vnd.kubernetes.protobuf`: the magic `k8s\0`, then a `runtime.Unknown`
//! whose `raw` holds the object's message. The messages come from the k8s-pb crate; this module
//! maps them to JSON. Go encodes zero values explicitly, so empty strings count as absent.

use base64::Engine;
use prost::Message;
use serde_json::{json, Map, Value};

use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;

pub const MAGIC: &[u8] = b"k8s\0";
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

fn put_str(m: &mut Map<String, Value>, k: &str, v: &Option<String>) {
    if let Some(s) = v.as_deref().filter(|s| !s.is_empty()) {
        m.insert(k.into(), json!(s));
    }
}

fn str_map(m: &std::collections::BTreeMap<String, String>) -> Option<Value> {
    (!m.is_empty()).then(|| Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect()))
}

fn time(t: &Option<meta::Time>) -> Option<Value> {
    let secs = t.as_ref()?.seconds.filter(|s| *s != 0)?;
    let ts = jiff::Timestamp::from_second(secs).ok()?;
    Some(json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn object_meta(m: &Option<meta::ObjectMeta>) -> Value {
    let mut out = Map::new();
    let Some(m) = m else {
        return Value::Object(out);
    };
    put_str(&mut out, "name", &m.name);
    put_str(&mut out, "generateName", &m.generate_name);
    put_str(&mut out, "namespace", &m.namespace);
    put_str(&mut out, "uid", &m.uid);
    put_str(&mut out, "resourceVersion", &m.resource_version);
    if let Some(g) = m.generation.filter(|g| *g != 0) {
        out.insert("generation".into(), json!(g));
    }
    if let Some(t) = time(&m.creation_timestamp) {
        out.insert("creationTimestamp".into(), t);
    }
    if let Some(l) = str_map(&m.labels) {
        out.insert("labels".into(), l);
    }
    if let Some(a) = str_map(&m.annotations) {
        out.insert("annotations".into(), a);
    }
    if !m.finalizers.is_empty() {
        out.insert("finalizers".into(), json!(m.finalizers));
    }
    if !m.owner_references.is_empty() {
        let refs: Vec<Value> = m
            .owner_references
            .iter()
            .map(|r| {
                let mut o = Map::new();
                put_str(&mut o, "apiVersion", &r.api_version);
                put_str(&mut o, "kind", &r.kind);
                put_str(&mut o, "name", &r.name);
                put_str(&mut o, "uid", &r.uid);
                if let Some(c) = r.controller {
                    o.insert("controller".into(), json!(c));
                }
                if let Some(b) = r.block_owner_deletion {
                    o.insert("blockOwnerDeletion".into(), json!(b));
                }
                Value::Object(o)
            })
            .collect();
        out.insert("ownerReferences".into(), json!(refs));
    }
    Value::Object(out)
}

fn b64_map(m: &std::collections::BTreeMap<String, Vec<u8>>) -> Option<Value> {
    (!m.is_empty()).then(|| Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect()))
}

fn decode_err(e: impl std::fmt::Display) -> String {
    format!("unable to decode protobuf body: {e}")
}

/// Decodes an enveloped protobuf body into (apiVersion, kind, JSON object).
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]".to_string())?;
    let unknown = Unknown::decode(rest).map_err(decode_err)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns = k8s_pb::api::core::v1::Namespace::decode(raw.as_slice()).map_err(decode_err)?;
            let mut o = json!({"metadata": object_meta(&ns.metadata)});
            if let Some(spec) = ns.spec.filter(|s| !s.finalizers.is_empty()) {
                o["spec"] = json!({"finalizers": spec.finalizers});
            }
            o
        }
        ("v1", "ConfigMap") => {
            let cm = k8s_pb::api::core::v1::ConfigMap::decode(raw.as_slice()).map_err(decode_err)?;
            let mut o = json!({"metadata": object_meta(&cm.metadata)});
            if let Some(d) = str_map(&cm.data) {
                o["data"] = d;
            }
            if let Some(d) = b64_map(&cm.binary_data) {
                o["binaryData"] = d;
            }
            if let Some(i) = cm.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        ("v1", "Secret") => {
            let s = k8s_pb::api::core::v1::Secret::decode(raw.as_slice()).map_err(decode_err)?;
            let mut o = json!({"metadata": object_meta(&s.metadata)});
            if let Some(d) = b64_map(&s.data) {
                o["data"] = d;
            }
            if let Some(d) = str_map(&s.string_data) {
                o["stringData"] = d;
            }
            if let Some(t) = s.r#type.filter(|t| !t.is_empty()) {
                o["type"] = json!(t);
            }
            if let Some(i) = s.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            let r = k8s_pb::api::authorization::v1::SelfSubjectAccessReview::decode(raw.as_slice()).map_err(decode_err)?;
            let spec = r.spec.unwrap_or_default();
            let mut out = Map::new();
            if let Some(ra) = spec.resource_attributes {
                let mut a = Map::new();
                for (k, v) in [
                    ("namespace", &ra.namespace),
                    ("verb", &ra.verb),
                    ("group", &ra.group),
                    ("version", &ra.version),
                    ("resource", &ra.resource),
                    ("subresource", &ra.subresource),
                    ("name", &ra.name),
                ] {
                    put_str(&mut a, k, v);
                }
                out.insert("resourceAttributes".into(), Value::Object(a));
            }
            if let Some(na) = spec.non_resource_attributes {
                let mut a = Map::new();
                put_str(&mut a, "path", &na.path);
                put_str(&mut a, "verb", &na.verb);
                out.insert("nonResourceAttributes".into(), Value::Object(a));
            }
            json!({"metadata": object_meta(&r.metadata), "spec": out})
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            let r = k8s_pb::api::authorization::v1::SelfSubjectRulesReview::decode(raw.as_slice()).map_err(decode_err)?;
            let mut spec = Map::new();
            put_str(&mut spec, "namespace", &r.spec.unwrap_or_default().namespace);
            json!({"metadata": object_meta(&r.metadata), "spec": spec})
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            let r = k8s_pb::api::authentication::v1::TokenRequest::decode(raw.as_slice()).map_err(decode_err)?;
            let spec = r.spec.unwrap_or_default();
            let mut out = Map::new();
            if !spec.audiences.is_empty() {
                out.insert("audiences".into(), json!(spec.audiences));
            }
            if let Some(e) = spec.expiration_seconds.filter(|e| *e != 0) {
                out.insert("expirationSeconds".into(), json!(e));
            }
            if let Some(b) = spec.bound_object_ref {
                let mut o = Map::new();
                put_str(&mut o, "kind", &b.kind);
                put_str(&mut o, "apiVersion", &b.api_version);
                put_str(&mut o, "name", &b.name);
                put_str(&mut o, "uid", &b.u_id);
                if !o.is_empty() {
                    out.insert("boundObjectRef".into(), Value::Object(o));
                }
            }
            json!({"metadata": object_meta(&r.metadata), "spec": out})
        }
        ("authentication.k8s.io/v1", "SelfSubjectReview") => json!({"metadata": {}}),
        _ => return Err(format!("no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"protobuf\"")),
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // Bodies captured from kubectl 1.32 (reference/kubectl-wire.md §2).
    #[test]
    fn kubectl_review_and_token_bodies() {
        let ssar = decode(&unhex("6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a65637441636365737352657669657712440a100a0012001a0022002a0032003800420012260a240a0c61692d696e666572656e636512036765741a0022002a077365637265747332003a001a08080012001a0020001a002200")).unwrap();
        assert_eq!(ssar["spec"], json!({"resourceAttributes": {"namespace": "ai-inference", "verb": "get", "resource": "secrets"}}));
        let tr = decode(&unhex("6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e52657175657374121a0a100a0012001a0022002a0032003800420012001a040a0012001a002200")).unwrap();
        assert_eq!(tr["kind"], "TokenRequest");
        assert_eq!(tr["spec"], json!({}));
    }

    #[test]
    fn kubectl_create_bodies() {
        let ns =
            decode(&unhex("6b3873000a0f0a02763112094e616d65737061636512240a1c0a0c61692d696e666572656e636512001a0022002a0032003800420012001a020a001a002200"))
                .unwrap();
        assert_eq!(ns, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai-inference"}}));
        let cm = decode(&unhex("6b3873000a0f0a0276311209436f6e6669674d617012570a2c0a10696e666572656e63652d706172616d7312001a0c61692d696e666572656e636522002a0032003800420012110a094c4f475f4c4556454c1204696e666f12140a0e4d41585f42415443485f53495a45120233321a002200")).unwrap();
        assert_eq!(cm["data"], json!({"LOG_LEVEL": "info", "MAX_BATCH_SIZE": "32"}));
        assert_eq!(cm["metadata"]["namespace"], "ai-inference");
        let s = decode(&unhex("6b3873000a0c0a027631120653656372657412440a2a0a0e68662d63726564656e7469616c7312001a0c61692d696e666572656e636522002a0032003800420012140a0868665f746f6b656e120868665f78787878781a001a002200")).unwrap();
        assert_eq!(s["data"]["hf_token"], base64::engine::general_purpose::STANDARD.encode("hf_xxxxx"));
        assert!(s.get("type").is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"k8s\0\xff\xff\xff").is_err());
        assert!(decode(b"nope").is_err());
        assert!(decode(b"k8s\0").unwrap_err().contains("no kind"));
    }
}
