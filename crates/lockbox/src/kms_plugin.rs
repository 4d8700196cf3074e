//! `lockbox kms-plugin`: a KMS v2 plugin for kube-apiserver or lockbox, backed by the Transit
//! secrets engine of OpenBao (or HashiCorp Vault, same HTTP API).
//!
//! The seed kube-apiserver sends is encrypted by Transit; the plugin never stores it. The key
//! id is `<key>:v<latest version>`, so rotating the Transit key (`bao write -f
//! transit/keys/NAME/rotate`) changes the key id, which makes the API server generate a new seed.
//!
//! The gRPC service is written out by hand below (what tonic's code generator would emit for
//! the three methods), because generating it needs `protoc`, which these machines do not have.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use base64::Engine;
use crypt::kms::proto;
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

#[derive(clap::Args)]
pub struct Args {
    /// The unix socket to serve on (the EncryptionConfiguration's `unix://` endpoint).
    #[arg(long)]
    socket: std::path::PathBuf,
    /// OpenBao/Vault address.
    #[arg(long, env = "VAULT_ADDR", default_value = "http://127.0.0.1:8200")]
    vault_addr: String,
    /// A token allowed to use the Transit key.
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
    vault_token: String,
    /// Where the Transit engine is mounted.
    #[arg(long, default_value = "transit")]
    transit_mount: String,
    /// The Transit key; created (aes256-gcm96) if missing.
    #[arg(long, default_value = "lockbox")]
    transit_key: String,
}

/// Calls into OpenBao's Transit engine.
struct Transit {
    http: reqwest::Client,
    addr: String,
    token: String,
    mount: String,
    key: String,
    calls: AtomicU64,
}

impl Transit {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}/v1/{path}", self.addr.trim_end_matches('/'));
        let mut req = self.http.request(method, &url).header("X-Vault-Token", &self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("transit request failed: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            // OpenBao's errors name the failure; they never carry key material.
            return Err(format!("transit answered {status}: {}", text.chars().take(300).collect::<String>()));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    async fn ensure_key(&self) -> Result<(), String> {
        let mounted = self.call(reqwest::Method::POST, &format!("sys/mounts/{}", self.mount), Some(json!({"type": "transit"}))).await;
        if let Err(e) = mounted {
            if !e.contains("path is already in use") {
                return Err(e);
            }
        }
        self.call(reqwest::Method::POST, &format!("{}/keys/{}", self.mount, self.key), Some(json!({"type": "aes256-gcm96"}))).await.map(|_| ())
    }

    async fn key_id(&self) -> Result<String, String> {
        let v = self.call(reqwest::Method::GET, &format!("{}/keys/{}", self.mount, self.key), None).await?;
        let version = v["data"]["latest_version"].as_i64().ok_or("transit key has no latest_version")?;
        Ok(format!("{}:v{version}", self.key))
    }

    async fn encrypt(&self, plaintext: &[u8]) -> Result<(Vec<u8>, String), String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
        let v = self.call(reqwest::Method::POST, &format!("{}/encrypt/{}", self.mount, self.key), Some(json!({"plaintext": b64}))).await?;
        let ct = v["data"]["ciphertext"].as_str().ok_or("transit returned no ciphertext")?.to_string();
        // "vault:v3:..." was made with version 3 of the key.
        let version = ct.split(':').nth(1).unwrap_or("v0").to_string();
        Ok((ct.into_bytes(), format!("{}:{version}", self.key)))
    }

    async fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let ct = std::str::from_utf8(ciphertext).map_err(|_| "ciphertext is not a transit ciphertext")?;
        let v = self.call(reqwest::Method::POST, &format!("{}/decrypt/{}", self.mount, self.key), Some(json!({"ciphertext": ct}))).await?;
        let b64 = v["data"]["plaintext"].as_str().ok_or("transit returned no plaintext")?;
        base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One unary method: a closure from request message to response message.
struct Unary<Req, Resp>(Arc<dyn Fn(Req) -> BoxFuture<Result<Resp, Status>> + Send + Sync>);

impl<Req: Send + 'static, Resp: Send + 'static> tonic::server::UnaryService<Req> for Unary<Req, Resp> {
    type Response = Resp;
    type Future = BoxFuture<Result<Response<Resp>, Status>>;
    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let f = self.0.clone();
        Box::pin(async move { f(request.into_inner()).await.map(Response::new) })
    }
}

#[derive(Clone)]
struct KmsService {
    transit: Arc<Transit>,
}

impl tonic::server::NamedService for KmsService {
    const NAME: &'static str = "v2.KeyManagementService";
}

fn unary<Req, Resp, B>(
    req: http::Request<B>,
    f: Arc<dyn Fn(Req) -> BoxFuture<Result<Resp, Status>> + Send + Sync>,
) -> BoxFuture<Result<http::Response<tonic::body::Body>, Infallible>>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default());
        Ok(grpc.unary(Unary(f), req).await)
    })
}

impl<B> tower::Service<http::Request<B>> for KmsService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let t = self.transit.clone();
        match req.uri().path() {
            proto::STATUS => unary(
                req,
                Arc::new(move |_: proto::StatusRequest| {
                    let t = t.clone();
                    Box::pin(async move {
                        let key_id = t.key_id().await.map_err(Status::unavailable)?;
                        Ok(proto::StatusResponse { version: "v2".into(), healthz: "ok".into(), key_id })
                    })
                }),
            ),
            proto::ENCRYPT => unary(
                req,
                Arc::new(move |r: proto::EncryptRequest| {
                    let t = t.clone();
                    Box::pin(async move {
                        let (ciphertext, key_id) = t.encrypt(&r.plaintext).await.map_err(Status::internal)?;
                        Ok(proto::EncryptResponse { ciphertext, key_id, annotations: Default::default() })
                    })
                }),
            ),
            proto::DECRYPT => unary(
                req,
                Arc::new(move |r: proto::DecryptRequest| {
                    let t = t.clone();
                    Box::pin(async move {
                        let plaintext = t.decrypt(&r.ciphertext).await.map_err(Status::internal)?;
                        Ok(proto::DecryptResponse { plaintext })
                    })
                }),
            ),
            _ => Box::pin(async move {
                let mut r = http::Response::new(tonic::body::Body::default());
                r.headers_mut().insert("grpc-status", http::HeaderValue::from(tonic::Code::Unimplemented as i32));
                r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
                Ok(r)
            }),
        }
    }
}

pub async fn run(args: Args) -> Result<()> {
    let transit = Arc::new(Transit {
        http: reqwest::Client::builder().build()?,
        addr: args.vault_addr,
        token: args.vault_token,
        mount: args.transit_mount,
        key: args.transit_key,
        calls: AtomicU64::new(0),
    });
    transit.ensure_key().await.map_err(anyhow::Error::msg).context("preparing the Transit key")?;
    let _ = std::fs::remove_file(&args.socket);
    let listener = tokio::net::UnixListener::bind(&args.socket).with_context(|| format!("binding {}", args.socket.display()))?;
    tracing::info!(socket = %args.socket.display(), key_id = %transit.key_id().await.unwrap_or_default(), "KMS v2 plugin serving");
    let svc = KmsService { transit: transit.clone() };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! { _ = shutdown => {}, _ = term.recv() => {} }
    };
    tonic::transport::Server::builder().add_service(svc).serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(listener), stop).await?;
    tracing::info!(transit_calls = transit.calls.load(Ordering::Relaxed), "KMS v2 plugin stopped");
    Ok(())
}
