//! `/healthz`, `/livez`, `/readyz` (with kube-apiserver's named checks and `?verbose`), and
//! `/metrics`.
//!
//! The `kms-providers` check probes every KMS v2 plugin of the encryption configuration in
//! force; results are cached for 20 s after success and 3 s after failure, as kube-apiserver
//! does, so that health polling does not turn into plugin load.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use prometheus_client::registry::Registry;

use crate::negotiate;

pub struct Health {
    encryption: Arc<crypt::reload::Reloading>,
    kms_cache: Mutex<Option<(Instant, Result<(), String>)>>,
    metrics: Registry,
}

impl Health {
    pub fn new(encryption: Arc<crypt::reload::Reloading>, extra: &[fn(&mut Registry)]) -> Health {
        let mut metrics = Registry::default();
        crypt::metrics::register(&mut metrics);
        for register in extra {
            register(&mut metrics);
        }
        Health { encryption, kms_cache: Mutex::new(None), metrics }
    }

    /// Probes the KMS providers (cached unless `fresh`).
    pub async fn kms(&self, fresh: bool) -> Result<(), String> {
        if !fresh {
            if let Some((at, r)) = self.kms_cache.lock().ok().and_then(|c| c.clone()) {
                let ttl = if r.is_ok() { Duration::from_secs(20) } else { Duration::from_secs(3) };
                if at.elapsed() < ttl {
                    return r;
                }
            }
        }
        let providers = self.encryption.kms_providers();
        let result = tokio::task::spawn_blocking(move || {
            let errors: Vec<String> = providers.iter().enumerate().filter_map(|(i, p)| p.health().err().map(|e| format!("kms-provider-{i}: {e}"))).collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join(", "))
            }
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Ok(mut c) = self.kms_cache.lock() {
            *c = Some((Instant::now(), result.clone()));
        }
        result
    }

    /// Answers a health path: `/healthz`, `/readyz`, `/livez`, or one of their checks.
    pub async fn respond(&self, segs: &[&str], verbose: bool) -> Response<Body> {
        let endpoint = segs[0];
        let mut checks = vec!["ping", "log", "etcd"];
        if endpoint != "livez" {
            checks.push("kms-providers");
        }
        if let Some(one) = segs.get(1) {
            if !checks.contains(one) {
                return negotiate::error(&api::ApiError::path_not_found());
            }
            return match self.check(one, true).await {
                Ok(()) => negotiate::text(StatusCode::OK, "ok"),
                Err(e) => negotiate::text(StatusCode::INTERNAL_SERVER_ERROR, &format!("internal server error: {e}\n")),
            };
        }
        let mut lines = Vec::new();
        let mut failed = false;
        for c in checks {
            match self.check(c, false).await {
                Ok(()) => lines.push(format!("[+]{c} ok")),
                Err(_) => {
                    failed = true;
                    lines.push(format!("[-]{c} failed: reason withheld"));
                }
            }
        }
        let summary = format!("{endpoint} check {}", if failed { "failed" } else { "passed" });
        let code = if failed { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
        if verbose || failed {
            lines.push(summary);
            negotiate::text(code, &(lines.join("\n") + "\n"))
        } else {
            negotiate::text(code, "ok")
        }
    }

    async fn check(&self, name: &str, fresh: bool) -> Result<(), String> {
        match name {
            "kms-providers" => self.kms(fresh).await,
            _ => Ok(()),
        }
    }

    pub fn metrics(&self) -> Response<Body> {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.metrics) {
            return negotiate::text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
        let mut r = Response::new(Body::from(text));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
        r
    }
}
