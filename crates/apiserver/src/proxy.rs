//! `pods/log` and `pods/exec`: proxied to the node agent that runs the pod, as kube-apiserver
//! proxies to the kubelet. The API server has already authorized the request; it then connects to
//! the agent over TLS with its own client certificate (the agent accepts nothing else), forwards
//! the request, and for an upgrade (WebSocket or SPDY) relays bytes both ways once both sides
//! have switched protocols, the way kube-apiserver's UpgradeAwareProxy does.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use api::kinds;
use api::{ApiError, ApiResult, Reason};

use crate::app::App;
use crate::request::Query;

pub struct AgentClient {
    tls: Arc<rustls::ClientConfig>,
}

/// Headers an upgrade needs on the way to the agent and back.
const FORWARDED: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "x-stream-protocol-version",
    "accept",
    "content-type",
];

impl AgentClient {
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<AgentClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c?)?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AgentClient { tls: Arc::new(cfg) })
    }

    /// Forwards one request to the agent at `addr` and answers with what it answered.
    pub async fn forward(
        &self,
        addr: &str,
        path_and_query: &str,
        method: &Method,
        headers: &HeaderMap,
        on_upgrade: Option<OnUpgrade>,
    ) -> ApiResult<Response<Body>> {
        let unavailable = ApiError::backend_unavailable;
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| unavailable(e.to_string()))?;
        let host = addr.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or("127.0.0.1").to_string();
        let name = ServerName::try_from(host.clone()).map_err(|e| unavailable(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| unavailable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unavailable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut req = Request::builder().method(method.clone()).uri(path_and_query).header(header::HOST, host);
        for (k, v) in headers {
            if FORWARDED.contains(&k.as_str()) {
                req = req.header(k, v);
            }
        }
        let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut resp = sender.send_request(req).await.map_err(|e| unavailable(e.to_string()))?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = on_upgrade else { return Err(ApiError::bad_request("the request cannot be upgraded")) };
            let agent_upgrade = hyper::upgrade::on(&mut resp);
            let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
            for (k, v) in resp.headers() {
                if FORWARDED.contains(&k.as_str()) {
                    out = out.header(k, v);
                }
            }
            tokio::spawn(async move {
                let (Ok(client), Ok(agent)) = (client_upgrade.await, agent_upgrade.await) else { return };
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(agent)).await;
            });
            return out.body(Body::empty()).map_err(|e| ApiError::internal(e.to_string()));
        }
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(Body::new(body));
        *out.status_mut() = parts.status;
        for (k, v) in &parts.headers {
            if k == header::CONTENT_TYPE || k == header::TRANSFER_ENCODING {
                out.headers_mut().insert(k, v.clone());
            }
        }
        Ok(out)
    }
}

/// The agent address of the node a pod runs on.
async fn agent_address(app: &App, ns: &str, pod: &str) -> ApiResult<(String, serde_json::Value)> {
    let reg = &app.registry;
    let p = reg.get(&api::workload_kinds::PODS, ns, pod).await?;
    let node_name = p["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {pod} does not have a host assigned")));
    }
    let node = reg.get(&api::workload_kinds::NODES, "", &node_name).await?;
    let ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .unwrap_or("127.0.0.1")
        .to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64().unwrap_or(10250);
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
    let _ = kinds::ALL;
    Ok((format!("{host}:{port}"), (*p).clone()))
}

/// The container a request names, or the pod's only (or first) container.
fn container(pod: &serde_json::Value, q: &Query) -> ApiResult<String> {
    let names: Vec<String> =
        pod["spec"]["containers"].as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect()).unwrap_or_default();
    match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {}", pod["metadata"]["name"].as_str().unwrap_or_default()))),
        None => names.first().cloned().ok_or_else(|| ApiError::bad_request("the pod has no containers")),
    }
}

pub async fn logs(app: &App, ns: &str, pod: &str, q: &Query, headers: &HeaderMap) -> ApiResult<Response<Body>> {
    let (addr, p) = agent_address(app, ns, pod).await?;
    let c = container(&p, q)?;
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for k in ["follow", "tailLines", "sinceSeconds", "sinceTime", "previous", "timestamps", "limitBytes"] {
            if let Some(v) = q.get(k) {
                query.append_pair(k, v);
            }
        }
        query.finish()
    };
    let path = format!("/containerLogs/{ns}/{pod}/{c}?{query}");
    let mut r = app.agents.forward(&addr, &path, &Method::GET, headers, None).await?;
    if r.status() != StatusCode::OK {
        // The kubelet's refusal becomes a Status with its text (NewGenericServerResponse).
        let code = r.status().as_u16();
        let body = http_body_util::BodyExt::collect(r.into_body()).await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).trim().to_string();
        let reason = match code {
            400 => Reason::BadRequest,
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            409 => Reason::Conflict,
            500 => Reason::InternalError,
            _ => Reason::Unknown,
        };
        let message = if text.is_empty() { "the server rejected our request for an unknown reason".to_string() } else { text };
        return Err(ApiError { code, reason, message, details: None });
    }
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

pub async fn exec(
    app: &App,
    ns: &str,
    pod: &str,
    method: &Method,
    q: &Query,
    raw_query: &str,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
) -> ApiResult<Response<Body>> {
    let (addr, p) = agent_address(app, ns, pod).await?;
    let c = container(&p, q)?;
    if p["status"]["phase"] != "Running" {
        return Err(ApiError::bad_request(format!("unable to upgrade connection: container not found (\"{c}\")")));
    }
    app.agents.forward(&addr, &format!("/exec/{ns}/{pod}/{c}?{raw_query}"), method, headers, on_upgrade).await
}
