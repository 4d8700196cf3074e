//! Authentication: who a request comes from, in kube-apiserver's order: an x509 client
//! certificate signed by the cluster CA (CN is the user, O the groups), then a bearer token from
//! the static token file, then a ServiceAccount JWT. Anonymous access is off: a request with no
//! credential, or a bad one, is 401 with a message that says nothing more than "Unauthorized".

use std::sync::Arc;

use auth::tokens::{TokenSigner, Verified};
use auth::UserInfo;
use axum::http::{header, HeaderMap};
use x509_parser::prelude::{FromDer, X509Certificate};

use api::kinds;

use crate::rest::Registry;

/// The user named by a verified client certificate (set per connection by the TLS layer).
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Option<UserInfo>);

pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups: Vec<String> = subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect();
    Some(UserInfo { name, groups, ..Default::default() }.authenticated())
}

pub struct Authenticator {
    pub token_file: Option<auth::tokenfile::TokenFile>,
    pub signer: Arc<TokenSigner>,
    pub registry: Arc<Registry>,
}

#[derive(Debug)]
pub enum AuthnError {
    /// No credential at all.
    Missing,
    /// A credential that does not check out; the reason is for the log only.
    Invalid(String),
}

/// The bearer token, parsed as kube-apiserver's bearertoken authenticator does: the header
/// trimmed, then exactly one space after the scheme (`Bearer  x` carries an empty token).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = v.splitn(3, ' ');
    let (scheme, token) = (parts.next()?, parts.next()?);
    scheme.eq_ignore_ascii_case("bearer").then_some(token).filter(|t| !t.is_empty())
}

impl Authenticator {
    pub async fn authenticate(&self, headers: &HeaderMap, cert: Option<&UserInfo>) -> Result<UserInfo, AuthnError> {
        if let Some(u) = cert {
            return Ok(u.clone());
        }
        let Some(token) = bearer(headers) else { return Err(AuthnError::Missing) };
        if let Some(u) = self.token_file.as_ref().and_then(|f| f.authenticate(token)) {
            return Ok(u);
        }
        let verified = self.signer.verify(token, &[]).map_err(AuthnError::Invalid)?;
        self.service_account_user(&verified, token).await.map_err(AuthnError::Invalid)
    }

    /// Checks that what a ServiceAccount token names still exists, with the same uid, and returns
    /// its user. Used by bearer authentication and by TokenReview.
    pub async fn service_account_user(&self, v: &Verified, token: &str) -> Result<UserInfo, String> {
        let reg = &self.registry;
        let sa = reg.get(&kinds::SERVICEACCOUNTS, &v.namespace, &v.service_account.name).await.map_err(|_| "service account has been deleted".to_string())?;
        let sa_uid = api::object::uid(&sa).to_string();
        if !v.service_account.uid.is_empty() && sa_uid != v.service_account.uid {
            return Err(format!("service account UID ({sa_uid}) does not match claim ({})", v.service_account.uid));
        }
        let mut user = UserInfo::service_account(&v.namespace, &v.service_account.name, &sa_uid);
        if let Some(secret) = &v.secret {
            let s = reg.get(&kinds::SECRETS, &v.namespace, &secret.name).await.map_err(|_| "service account token has been invalidated".to_string())?;
            if v.legacy {
                // A legacy token is valid only while its Secret holds it.
                let stored = s["data"]["token"].as_str().unwrap_or_default();
                use base64::Engine;
                let held = base64::engine::general_purpose::STANDARD.decode(stored).unwrap_or_default();
                if held != token.as_bytes() {
                    return Err("service account token has been invalidated".into());
                }
            } else if api::object::uid(&s) != secret.uid {
                return Err("service account token has been invalidated".into());
            }
        }
        if let Some(pod) = &v.pod {
            match kinds::find("", "v1", "pods") {
                Some(pods) => {
                    let p = reg.get(pods, &v.namespace, &pod.name).await.map_err(|_| "service account token has been invalidated".to_string())?;
                    if api::object::uid(&p) != pod.uid {
                        return Err("service account token has been invalidated".into());
                    }
                }
                None => return Err("service account token has been invalidated".into()),
            }
            user.extra.insert("authentication.kubernetes.io/pod-name".into(), vec![pod.name.clone()]);
            user.extra.insert("authentication.kubernetes.io/pod-uid".into(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &v.node {
            let gone = || "service account token has been invalidated".to_string();
            let nodes = kinds::find("", "v1", "nodes").ok_or_else(gone)?;
            let n = reg.get(nodes, "", &node.name).await.map_err(|_| gone())?;
            if api::object::uid(&n) != node.uid {
                return Err(gone());
            }
            user.extra.insert("authentication.kubernetes.io/node-name".into(), vec![node.name.clone()]);
            user.extra.insert("authentication.kubernetes.io/node-uid".into(), vec![node.uid.clone()]);
        }
        if !v.jti.is_empty() {
            user.extra.insert("authentication.kubernetes.io/credential-id".into(), vec![format!("JTI={}", v.jti)]);
        }
        Ok(user)
    }
}
