//! The `aws` provider: AWS Secrets Manager over its JSON API, signed with SigV4 from static
//! credentials kept in a Secret. Version stage or id; `dataFrom.find` by name and tags.
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` or `AWS_ENDPOINT_URL` override the endpoint, as in the
//! AWS SDKs (tests point them at moto).

use base64::Engine;
use serde_json::{json, Value};

use super::{sigv4, Credentials, NOT_FOUND};
use crate::eso_api::s;

pub struct Aws {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    region: String,
    creds: sigv4::Credentials,
}

impl Aws {
    pub async fn new(http: &reqwest::Client, spec: &Value, creds: &Credentials<'_>) -> Result<Aws, String> {
        if spec["service"].as_str().unwrap_or("SecretsManager") != "SecretsManager" {
            return Err(format!("aws: service {:?} is not supported (supported: SecretsManager)", s(&spec["service"])));
        }
        let region = spec["region"].as_str().unwrap_or("us-east-1").to_string();
        let sref = &spec["auth"]["secretRef"];
        let access_key = creds.require(&sref["accessKeyIDSecretRef"], "", "aws: auth.secretRef.accessKeyIDSecretRef").await?;
        let secret_key = creds.require(&sref["secretAccessKeySecretRef"], "", "aws: auth.secretRef.secretAccessKeySecretRef").await?;
        let session_token = creds.read(&sref["sessionTokenSecretRef"], "").await?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|_| format!("https://secretsmanager.{region}.amazonaws.com"));
        let host = endpoint.split("://").nth(1).unwrap_or_default().trim_end_matches('/').to_string();
        Ok(Aws { http: http.clone(), endpoint, host, region, creds: sigv4::Credentials { access_key, secret_key, session_token } })
    }

    /// One Secrets Manager call.
    async fn call(&self, target: &str, body: Value) -> Result<Value, String> {
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let date = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let mut req = self.http.post(format!("{}/", self.endpoint.trim_end_matches('/'))).body(body.clone());
        for (k, v) in sigv4::sign(&self.creds, &self.region, "secretsmanager", &self.host, &format!("secretsmanager.{target}"), &body, &date) {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach AWS Secrets Manager: {}", e.without_url()))?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 {
            return Ok(v);
        }
        let kind = s(&v["__type"]);
        Err(if kind.contains("ResourceNotFound") { "ResourceNotFoundException".into() } else { format!("AWS Secrets Manager answered {status} {kind}") })
    }

    /// A secret's value; `version` is a stage, or `uuid/ID` for a version id.
    pub async fn fetch(&self, key: &str, version: &str) -> Result<Vec<u8>, String> {
        let mut body = json!({"SecretId": key});
        match version.strip_prefix("uuid/") {
            Some(id) => body["VersionId"] = json!(id),
            None if !version.is_empty() => body["VersionStage"] = json!(version),
            None => {}
        }
        let v = self.call("GetSecretValue", body).await.map_err(|e| if e == "ResourceNotFoundException" { format!("{NOT_FOUND}{key}") } else { e })?;
        match (v["SecretString"].as_str(), v["SecretBinary"].as_str()) {
            (Some(s), _) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| e.to_string()),
            _ => Err(format!("secret {key:?} has no value")),
        }
    }

    /// The names of the secrets carrying every one of `tags`.
    pub async fn list(&self, tags: Option<&serde_json::Map<String, Value>>) -> Result<Vec<String>, String> {
        let mut filters = Vec::new();
        for (k, v) in tags.into_iter().flatten() {
            filters.push(json!({"Key": "tag-key", "Values": [k]}));
            filters.push(json!({"Key": "tag-value", "Values": [v]}));
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"MaxResults": 100});
            if !filters.is_empty() {
                body["Filters"] = json!(filters);
            }
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = self.call("ListSecrets", body).await?;
            for sec in page["SecretList"].as_array().into_iter().flatten() {
                // The filters match keys and values separately: check the pairs here.
                let tagged =
                    tags.into_iter().flatten().all(|(k, v)| sec["Tags"].as_array().into_iter().flatten().any(|t| t["Key"] == k.as_str() && t["Value"] == *v));
                if tagged {
                    out.push(s(&sec["Name"]));
                }
            }
            match page["NextToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }
}
