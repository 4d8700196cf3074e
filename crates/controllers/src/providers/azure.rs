//! The `azurekv` provider: Azure Key Vault over its documented REST API (api-version 7.4),
//! with a service principal's client secret exchanged for a token by the OAuth 2.0
//! client-credentials flow. `AZURE_AUTHORITY_HOST` overrides the Microsoft Entra endpoint, as
//! in the Azure SDKs. Keys are `NAME` or `secret/NAME`; certificates and keys are not served.
//!
//! Written by hand against the REST documentation: the Azure SDK for Rust brings its own HTTP
//! and runtime stack for two GET calls. Tested against a local fixture that follows those
//! documents, never against the real service.

use serde_json::Value;

use super::{Credentials, NOT_FOUND};
use crate::eso_api::s;

const API_VERSION: &str = "7.4";

pub struct Azure {
    http: reqwest::Client,
    vault_url: String,
    token: String,
}

/// The sign-in host and the Key Vault token scope of each of ESO's `environmentType`s.
fn cloud(environment: &str) -> Result<(&'static str, &'static str), String> {
    Ok(match environment {
        "" | "PublicCloud" => ("https://login.microsoftonline.com/", "https://vault.azure.net/.default"),
        "USGovernmentCloud" => ("https://login.microsoftonline.us/", "https://vault.usgovcloudapi.net/.default"),
        "ChinaCloud" => ("https://login.chinacloudapi.cn/", "https://vault.azure.cn/.default"),
        "GermanCloud" => ("https://login.microsoftonline.de/", "https://vault.microsoftazure.de/.default"),
        other => return Err(format!("azurekv: environmentType {other:?} is not supported")),
    })
}

impl Azure {
    pub async fn connect(http: &reqwest::Client, spec: &Value, creds: &Credentials<'_>) -> Result<Azure, String> {
        let auth_type = spec["authType"].as_str().unwrap_or("ServicePrincipal");
        if auth_type != "ServicePrincipal" {
            return Err(format!("azurekv: authType {auth_type:?} is not supported (supported: ServicePrincipal)"));
        }
        let vault_url = s(&spec["vaultUrl"]).trim_end_matches('/').to_string();
        if vault_url.is_empty() {
            return Err("azurekv: vaultUrl is required".into());
        }
        let tenant = s(&spec["tenantId"]);
        if tenant.is_empty() {
            return Err("azurekv: tenantId is required".into());
        }
        let refs = &spec["authSecretRef"];
        let client_id = creds.require(&refs["clientId"], "", "azurekv: authSecretRef.clientId").await?;
        let client_secret = creds.require(&refs["clientSecret"], "", "azurekv: authSecretRef.clientSecret").await?;
        let (default_authority, scope) = cloud(spec["environmentType"].as_str().unwrap_or_default())?;
        let authority = std::env::var("AZURE_AUTHORITY_HOST").unwrap_or_else(|_| default_authority.to_string());
        let url = format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/'));
        let form = [("grant_type", "client_credentials"), ("client_id", &client_id), ("client_secret", &client_secret), ("scope", scope)];
        let resp = http.post(&url).form(&form).send().await.map_err(|e| format!("azurekv: cannot reach the sign-in endpoint: {}", e.without_url()))?;
        let code = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let token = match body["access_token"].as_str() {
            Some(t) if code == 200 => t.to_string(),
            // Entra's `error` codes (invalid_client, unauthorized_client...) say why and hold no secret.
            _ => return Err(format!("azurekv: sign-in for client {client_id:?} failed ({code} {})", s(&body["error"]))),
        };
        Ok(Azure { http: http.clone(), vault_url, token })
    }

    async fn call(&self, url: &str) -> Result<(u16, Value), String> {
        let resp = self.http.get(url).bearer_auth(&self.token).send().await.map_err(|e| format!("azurekv: cannot reach the vault: {}", e.without_url()))?;
        let code = resp.status().as_u16();
        Ok((code, resp.json().await.unwrap_or(Value::Null)))
    }

    /// A secret's value; `version` empty means the current one.
    pub async fn fetch(&self, key: &str, version: &str) -> Result<Vec<u8>, String> {
        let name = match key.split_once('/') {
            Some(("secret", name)) => name,
            Some((kind @ ("cert" | "key"), _)) => return Err(format!("azurekv: {kind} objects are not supported (only secrets)")),
            _ => key,
        };
        let url = format!("{}/secrets/{name}/{version}?api-version={API_VERSION}", self.vault_url);
        match self.call(&url).await? {
            (200, body) => body["value"].as_str().map(|v| v.as_bytes().to_vec()).ok_or_else(|| format!("secret {key:?} has no value")),
            (404, _) => Err(format!("{NOT_FOUND}{key}")),
            (code @ (401 | 403), body) => Err(format!("azurekv: access denied ({code} {})", s(&body["error"]["code"]))),
            (code, body) => Err(format!("azurekv answered {code} {}", s(&body["error"]["code"]))),
        }
    }

    /// The names of the enabled secrets carrying every one of `tags`, following `nextLink`.
    pub async fn list(&self, tags: Option<&serde_json::Map<String, Value>>) -> Result<Vec<String>, String> {
        let mut url = format!("{}/secrets?api-version={API_VERSION}&maxresults=25", self.vault_url);
        let mut out = Vec::new();
        loop {
            let page = match self.call(&url).await? {
                (200, body) => body,
                (code, body) => return Err(format!("azurekv: listing secrets failed ({code} {})", s(&body["error"]["code"]))),
            };
            for item in page["value"].as_array().into_iter().flatten() {
                let enabled = item["attributes"]["enabled"].as_bool().unwrap_or(true);
                let tagged = tags.into_iter().flatten().all(|(k, v)| item["tags"][k] == *v);
                if let Some(name) = item["id"].as_str().and_then(|id| id.trim_end_matches('/').rsplit('/').next()) {
                    if enabled && tagged {
                        out.push(name.to_string());
                    }
                }
            }
            match page["nextLink"].as_str().filter(|l| !l.is_empty()) {
                Some(next) => url = next.to_string(),
                None => return Ok(out),
            }
        }
    }
}
