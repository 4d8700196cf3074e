//! The API server's client to the node agents: TLS with the API server's own client
//! certificate (the agent accepts nothing else), one request forwarded, and for an upgrade
//! (WebSocket or SPDY) the bytes relayed both ways once both sides have switched protocols,
//! as kube-apiserver's UpgradeAwareProxy does.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use api::{ApiError, ApiResult};

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
