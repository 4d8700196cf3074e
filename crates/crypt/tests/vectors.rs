//! Byte compatibility with kube-apiserver's formats, checked against an independent
//! implementation (`vectors.py`, Python `cryptography` and PyNaCl) in both directions.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use crypt::config::{EncryptionConfig, KmsConfig};
use crypt::kms::{self, proto};
use crypt::Transformer;
use prost::Message;
use serde_json::{json, Value};

fn python() -> PathBuf {
    let venv = std::env::var_os("LOCKBOX_PEERS_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.peers/venv"));
    let py = venv.join("bin/python");
    assert!(py.exists(), "no peers venv at {} (run scripts/peers.sh)", venv.display());
    py
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors.py")
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn enc(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn no_kms(_: &KmsConfig) -> Result<Box<dyn Transformer>, String> {
    Err("not in this test".into())
}

/// A one-key chain for `provider`, built through the configuration file format.
fn chain(provider: &str, key: &str) -> EncryptionConfig {
    let text = format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - {provider}:\n      keys:\n      - name: k1\n        secret: {key}\n");
    EncryptionConfig::parse(&text, &no_kms).unwrap()
}

#[test]
fn lockbox_opens_what_the_independent_implementation_made() {
    let out = Command::new(python()).arg(script()).arg("make").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let vectors: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(vectors.len(), 6);
    for v in vectors {
        let (provider, key, ctx) = (v["provider"].as_str().unwrap(), v["key"].as_str().unwrap(), v["context"].as_str().unwrap());
        let stored = b64(v["stored"].as_str().unwrap());
        let plain = if provider == "kms" {
            let body = stored.strip_prefix(b"k8s:enc:kms:v2:vectors:".as_slice()).unwrap();
            let obj = proto::EncryptedObject::decode(body).unwrap();
            kms::validate(&obj).unwrap();
            assert_eq!(obj.key_id, "vector-key:v1");
            kms::open_data(obj.encrypted_dek_source_type, &b64(key), &obj.encrypted_data, ctx.as_bytes()).unwrap()
        } else {
            let c = chain(provider, key).for_resource("", "secrets").unwrap();
            c.transform_from_storage(&stored, ctx).unwrap().0.to_vec()
        };
        assert_eq!(plain, b64(v["plaintext"].as_str().unwrap()), "{provider}");
    }
}

#[test]
fn the_independent_implementation_opens_what_lockbox_made() {
    let ctx = "/registry/secrets/ns/from-lockbox";
    let pt = br#"{"kind":"Secret","data":{"token":"c2VjcmV0"}}"#;
    let mut vectors = Vec::new();
    for (provider, key) in [("aescbc", vec![7u8; 32]), ("aesgcm", vec![8u8; 16]), ("aesgcm", vec![8u8; 32]), ("secretbox", vec![9u8; 32])] {
        let c = chain(provider, &enc(&key)).for_resource("", "secrets").unwrap();
        let stored = c.transform_to_storage(pt, ctx).unwrap();
        vectors.push(json!({"provider": provider, "key": enc(&key), "context": ctx, "stored": enc(&stored)}));
    }
    // KMS v2 in seed mode, as KmsV2 writes it (with a known seed in place of the plugin's).
    let seed = [5u8; 32];
    let data = kms::seal_for_test(&seed, pt, ctx.as_bytes());
    let obj = proto::EncryptedObject {
        encrypted_data: data,
        key_id: "k:v1".into(),
        encrypted_dek_source: b"sealed-by-plugin".to_vec(),
        annotations: Default::default(),
        encrypted_dek_source_type: kms::HKDF_SHA256_XNONCE_AES_GCM_SEED,
    };
    let mut stored = b"k8s:enc:kms:v2:vectors:".to_vec();
    stored.extend(obj.encode_to_vec());
    vectors.push(json!({"provider": "kms", "key": enc(&seed), "context": ctx, "stored": enc(&stored)}));

    let mut child = Command::new(python()).arg(script()).arg("open").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(serde_json::to_string(&vectors).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plains: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plains.len(), vectors.len());
    for p in plains {
        assert_eq!(b64(&p), pt);
    }
}
