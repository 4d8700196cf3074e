//! ServiceAccount tokens: JWTs signed with a key made at first start (ECDSA P-256, ES256),
//! carrying the standard claims and the `kubernetes.io` claim (pkg/serviceaccount/claims.go).
//!
//! Bound tokens (TokenRequest, projected volumes) have an audience, an expiry, and may be bound
//! to a Pod or a Secret; legacy Secret-based tokens have issuer `kubernetes/serviceaccount` and no
//! expiry. Verification here checks the signature, times and audience; that the ServiceAccount
//! and bound object still exist with the same uid is the caller's check (it owns storage).

use std::path::Path;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use sha2::Digest;

pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_spki_der: Vec<u8>,
    pub kid: String,
    pub issuer: String,
    /// The audiences the API server accepts (`--api-audiences`; the issuer by default).
    pub api_audiences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub pod: Option<ObjectRef>,
    /// For a token bound to a Node (ServiceAccountTokenNodeBinding).
    pub node: Option<ObjectRef>,
    /// For a bound token, a Secret it is bound to; for a legacy token, the Secret holding it.
    pub secret: Option<ObjectRef>,
    pub legacy: bool,
    pub jti: String,
    /// The token's audiences that are also accepted ones.
    pub audiences: Vec<String>,
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl TokenSigner {
    /// Loads the signing key from `path`, creating it (0600) on first start.
    pub fn load_or_create(path: &Path, write_private: impl Fn(&Path, &[u8]) -> Result<(), String>) -> Result<TokenSigner, String> {
        let pem = match std::fs::read_to_string(path) {
            Ok(p) => p,
            Err(_) => {
                let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
                let pem = key.serialize_pem();
                write_private(path, pem.as_bytes())?;
                pem
            }
        };
        Self::from_pem(&pem)
    }

    pub fn from_pem(pem: &str) -> Result<TokenSigner, String> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(|e| e.to_string())?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let decoding = DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).map_err(|e| e.to_string())?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&spki));
        Ok(TokenSigner { encoding, decoding, public_spki_der: spki, kid, issuer: DEFAULT_ISSUER.into(), api_audiences: vec![DEFAULT_ISSUER.into()] })
    }

    fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = None;
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// A bound token (TokenRequest); `bound` is ("Pod"|"Secret"|"Node", object).
    pub fn issue(
        &self,
        namespace: &str,
        sa: &ObjectRef,
        audiences: &[String],
        expiration_seconds: i64,
        bound: Option<(&str, &ObjectRef)>,
    ) -> Result<(String, i64), String> {
        let iat = now();
        let exp = iat + expiration_seconds;
        let mut k8s = json!({"namespace": namespace, "serviceaccount": {"name": sa.name, "uid": sa.uid}});
        if let Some((kind, obj)) = bound {
            k8s[kind.to_lowercase()] = json!({"name": obj.name, "uid": obj.uid});
        }
        let claims = json!({
            "aud": audiences, "exp": exp, "iat": iat, "iss": self.issuer, "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": k8s, "nbf": iat, "sub": format!("system:serviceaccount:{namespace}:{}", sa.name),
        });
        Ok((self.sign(&claims)?, exp))
    }

    /// A legacy token for a `kubernetes.io/service-account-token` Secret.
    pub fn issue_legacy(&self, namespace: &str, sa: &ObjectRef, secret_name: &str) -> Result<String, String> {
        self.sign(&json!({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": sa.name,
            "kubernetes.io/serviceaccount/service-account.uid": sa.uid,
            "sub": format!("system:serviceaccount:{namespace}:{}", sa.name),
        }))
    }

    /// Verifies signature, issuer, times and audience. `audiences` empty means the API audiences.
    /// Errors say why in general terms only.
    pub fn verify(&self, token: &str, audiences: &[String]) -> Result<Verified, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "invalid bearer token".to_string())?;
        if header.alg != Algorithm::ES256 {
            return Err("invalid bearer token".into());
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = false;
        v.leeway = 60;
        let data = jsonwebtoken::decode::<Value>(token, &self.decoding, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "service account token has expired".to_string(),
            _ => "invalid bearer token".to_string(),
        })?;
        let c = data.claims;
        let wanted: &[String] = if audiences.is_empty() { &self.api_audiences } else { audiences };
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        if c["iss"] == LEGACY_ISSUER {
            return Ok(Verified {
                namespace: s(&c["kubernetes.io/serviceaccount/namespace"]),
                service_account: ObjectRef {
                    name: s(&c["kubernetes.io/serviceaccount/service-account.name"]),
                    uid: s(&c["kubernetes.io/serviceaccount/service-account.uid"]),
                },
                pod: None,
                node: None,
                secret: Some(ObjectRef { name: s(&c["kubernetes.io/serviceaccount/secret.name"]), uid: String::new() }),
                legacy: true,
                jti: String::new(),
                audiences: wanted.to_vec(),
            });
        }
        if c["iss"] != self.issuer.as_str() {
            return Err("invalid bearer token".into());
        }
        if c["exp"].as_i64().is_none() {
            return Err("invalid bearer token".into());
        }
        let token_aud: Vec<String> = match &c["aud"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            _ => vec![],
        };
        let matched: Vec<String> = wanted.iter().filter(|a| token_aud.contains(a)).cloned().collect();
        if matched.is_empty() {
            return Err(format!("token audiences {token_aud:?} is invalid for the target audiences {wanted:?}"));
        }
        let k = &c["kubernetes.io"];
        let obj = |v: &Value| (!v.is_null()).then(|| ObjectRef { name: s(&v["name"]), uid: s(&v["uid"]) });
        Ok(Verified {
            namespace: s(&k["namespace"]),
            service_account: ObjectRef { name: s(&k["serviceaccount"]["name"]), uid: s(&k["serviceaccount"]["uid"]) },
            pod: obj(&k["pod"]),
            node: obj(&k["node"]),
            secret: obj(&k["secret"]),
            legacy: false,
            jti: s(&c["jti"]),
            audiences: matched,
        })
    }

    /// The JSON Web Key Set (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        // The SPKI DER of a P-256 key ends with the 65-byte uncompressed point (0x04 || X || Y).
        let point = &self.public_spki_der[self.public_spki_der.len() - 64..];
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"keys": [{"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256", "x": b64(&point[..32]), "y": b64(&point[32..])}]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::from_pem(&rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap()
    }

    #[test]
    fn bound_tokens_verify_and_check_audience() {
        let s = signer();
        let sa = ObjectRef { name: "sa".into(), uid: "u1".into() };
        let (t, _) = s.issue("ns", &sa, &s.api_audiences.clone(), 3600, Some(("Pod", &ObjectRef { name: "p".into(), uid: "pu".into() }))).unwrap();
        let v = s.verify(&t, &[]).unwrap();
        assert_eq!((v.namespace.as_str(), v.service_account.name.as_str(), v.pod.unwrap().name.as_str()), ("ns", "sa", "p"));
        assert!(s.verify(&t, &["vault".into()]).unwrap_err().contains("is invalid for the target audiences"));
        let (t2, _) = s.issue("ns", &sa, &["vault".into()], 3600, None).unwrap();
        assert!(s.verify(&t2, &[]).is_err());
        assert_eq!(s.verify(&t2, &["vault".into()]).unwrap().audiences, ["vault"]);
        // Expired beyond the leeway.
        let (old, _) = s.issue("ns", &sa, &s.api_audiences.clone(), -120, None).unwrap();
        assert_eq!(s.verify(&old, &[]).unwrap_err(), "service account token has expired");
        // Tampered payload or another key's signature.
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(s.verify(&parts.join("."), &[]).is_err());
        assert!(signer().verify(&t, &[]).is_err());
        let legacy = s.issue_legacy("ns", &sa, "sa-token-x").unwrap();
        assert!(s.verify(&legacy, &[]).unwrap().legacy);
        assert_eq!(s.jwks()["keys"][0]["kid"], s.kid);
    }
}
