//! The `vault` provider: HashiCorp Vault or OpenBao, KV v1 and v2. Auth by a token kept in a
//! Secret, or by Vault's kubernetes auth method: a service account token (requested through
//! the TokenRequest API, or kept in a Secret) is exchanged at `auth/<mountPath>/login` for a
//! Vault token; Vault checks it by calling this server's TokenReview API.

use serde_json::{json, Value};

use super::{Credentials, Remote, NOT_FOUND};
use crate::eso_api::{s, typed};

pub struct Vault {
    http: reqwest::Client,
    server: String,
    path: String,
    v2: bool,
    token: String,
    namespace: Option<String>,
}

/// How long a requested service account token lives: it is used once, for the login.
const LOGIN_TOKEN_SECONDS: i64 = 600;

impl Vault {
    pub async fn connect(http: &reqwest::Client, spec: &Value, creds: &Credentials<'_>) -> Result<Vault, String> {
        let mut v = Vault {
            http: http.clone(),
            server: s(&spec["server"]).trim_end_matches('/').to_string(),
            path: spec["path"].as_str().unwrap_or("secret").trim_matches('/').to_string(),
            v2: spec["version"].as_str().unwrap_or("v2") == "v2",
            token: String::new(),
            namespace: spec["namespace"].as_str().map(String::from),
        };
        let auth = &spec["auth"];
        if auth["tokenSecretRef"].is_object() {
            v.token = creds.require(&auth["tokenSecretRef"], "token", "vault: auth.tokenSecretRef").await?;
        } else if let Some(k) = auth.get("kubernetes").filter(|k| k.is_object()) {
            let jwt = service_account_token(k, creds).await?;
            v.token = v.login(k["mountPath"].as_str().unwrap_or("kubernetes"), &s(&k["role"]), &jwt).await?;
        } else {
            return Err("vault: the supported auth methods are tokenSecretRef and kubernetes".into());
        }
        Ok(v)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}/v1/{path}", self.server));
        if let Some(n) = &self.namespace {
            req = req.header("X-Vault-Namespace", n);
        }
        req
    }

    /// Exchanges a service account token for a Vault token (kubernetes auth).
    async fn login(&self, mount: &str, role: &str, jwt: &str) -> Result<String, String> {
        let resp = self
            .request(reqwest::Method::PUT, &format!("auth/{}/login", mount.trim_matches('/')))
            .json(&json!({"role": role, "jwt": jwt}))
            .send()
            .await
            .map_err(|e| format!("cannot reach the vault server: {}", e.without_url()))?;
        let code = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match body["auth"]["client_token"].as_str() {
            Some(t) if code == 200 => Ok(t.to_string()),
            // Vault's own errors say why (role, binding, token review); they hold no secret.
            _ => Err(format!(
                "vault: kubernetes login with role {role:?} failed ({code}): {}",
                body["errors"].as_array().map(|e| e.iter().map(s).collect::<Vec<_>>().join("; ")).unwrap_or_default()
            )),
        }
    }

    pub async fn fetch(&self, key: &str, version: &str) -> Result<Remote, String> {
        let key = key.trim_start_matches('/');
        let path = if self.v2 {
            let q = if version.is_empty() { String::new() } else { format!("?version={version}") };
            format!("{}/data/{key}{q}", self.path)
        } else {
            format!("{}/{key}", self.path)
        };
        let resp = self
            .request(reqwest::Method::GET, &path)
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the vault server: {}", e.without_url()))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(format!("{NOT_FOUND}{key}")),
            403 => return Err("vault: permission denied (check the token)".into()),
            code => return Err(format!("vault answered {code}")),
        }
        let body: Value = resp.json().await.map_err(|e| format!("vault: malformed response: {}", e.without_url()))?;
        let data = if self.v2 { &body["data"]["data"] } else { &body["data"] };
        Ok(Remote::Map(data.as_object().cloned().unwrap_or_default()))
    }
}

/// The token presented at login: from `secretRef`, or requested for `serviceAccountRef`
/// through the TokenRequest API with the reference's audiences.
async fn service_account_token(k: &Value, creds: &Credentials<'_>) -> Result<String, String> {
    if let Some(token) = creds.read(&k["secretRef"], "token").await? {
        return Ok(token);
    }
    let sa = &k["serviceAccountRef"];
    if !sa.is_object() {
        return Err("vault: kubernetes auth needs serviceAccountRef or secretRef".into());
    }
    let ns = creds.namespace(sa);
    let name = s(&sa["name"]);
    let mut spec = json!({"expirationSeconds": LOGIN_TOKEN_SECONDS});
    if let Some(aud) = sa["audiences"].as_array().filter(|a| !a.is_empty()) {
        spec["audiences"] = json!(aud);
    }
    let req = typed(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}))?;
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> = kube::Api::namespaced(creds.client.clone(), &ns);
    let out = accounts
        .create_token_request(&name, &Default::default(), &req)
        .await
        .map_err(|e| format!("vault: cannot request a token for service account {ns}/{name}: {}", crate::short(&e)))?;
    out.status.map(|s| s.token).filter(|t| !t.is_empty()).ok_or_else(|| "vault: the token request returned no token".into())
}
