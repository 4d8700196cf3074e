//! The TLS listener: rustls with optional client certificates, HTTP/1.1 and HTTP/2 via ALPN, and
//! the authenticated user attached to every request.
//!
//! As kube-apiserver (`tls.RequestClientCert`), a client certificate is requested but never
//! fails the handshake: one the cluster CA did not sign is simply not an identity, so the request
//! gets 401 from the authenticator (or is authenticated by its bearer token), not a TLS alert.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::{Response, StatusCode};
use axum::Router;
use futures::FutureExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::UnixTime;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::authn::{user_from_certificate, PeerCertificate};
use crate::connection::{Activity, Limits, Watched};
use crate::pki::Pki;

/// Accepts any client certificate at the handshake (its signature over the handshake is still
/// checked, so the client holds its key); whether the CA signed it is decided per connection.
#[derive(Debug)]
struct RequestClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The server's TLS configuration, and the verifier that judges client certificates.
pub struct Tls {
    config: rustls::ServerConfig,
    trusted: Arc<dyn ClientCertVerifier>,
}

pub fn tls_config(pki: &Pki) -> Result<Tls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let trusted = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).allow_unauthenticated().build()?;
    let verifier = Arc::new(RequestClientCert(trusted.clone()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pki.serving_cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes()).context("serving key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls { config: cfg, trusted })
}

/// Accepts connections until the process ends, at most `limits.max_connections` at a time.
pub async fn serve(listener: TcpListener, tls: Tls, app: Router, limits: Limits) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls.config));
    let trusted = tls.trusted;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut failing = AcceptBackoff::default();
    loop {
        // At the limit, new connections wait in the listen backlog until a slot frees; the
        // deadlines below free the slots that idle or slow clients hold.
        let slot = slots.clone().acquire_owned().await?;
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                failing.failed(&e).await;
                continue;
            }
        };
        failing.succeeded();
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, trusted) = (acceptor.clone(), app.clone(), trusted.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection(acceptor, trusted, tcp, peer, app, limits).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

/// Go net/http's answer to a failing accept (too many open files, above all): wait 5 ms,
/// doubling to 1 s, instead of spinning; and a warning at most every 10 s, with the count of
/// the failures it stands for, instead of one per failure.
#[derive(Default)]
struct AcceptBackoff {
    delay: Duration,
    unreported: u64,
    last_report: Option<std::time::Instant>,
}

impl AcceptBackoff {
    async fn failed(&mut self, e: &std::io::Error) {
        self.delay = (self.delay * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
        self.unreported += 1;
        if self.last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(error = %e, failures = self.unreported, retry_in_ms = self.delay.as_millis() as u64, "accepting connections failed");
            self.unreported = 0;
            self.last_report = Some(std::time::Instant::now());
        }
        tokio::time::sleep(self.delay).await;
    }
    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    trusted: Arc<dyn ClientCertVerifier>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
) -> Result<()> {
    let stream = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await.context("TLS handshake timeout")??;
    // A certificate is an identity only if the cluster CA signed it.
    let user = PeerCertificate(stream.get_ref().1.peer_certificates().and_then(|chain| {
        let (end, intermediates) = chain.split_first()?;
        trusted.verify_client_cert(end, intermediates, UnixTime::now()).ok()?;
        user_from_certificate(end.as_ref())
    }));
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let activity = Activity::new(http2);
    let watched = activity.clone();
    let service = tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(user.clone());
        req.extensions_mut().insert(peer);
        let in_flight = watched.begin();
        let watched = watched.clone();
        let answer = std::panic::AssertUnwindSafe(app.clone().oneshot(req.map(Body::new))).catch_unwind();
        async move {
            let response = match answer.await {
                Ok(Ok(r)) => r,
                Err(_) => panicked(),
            };
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                watched.upgraded();
            }
            // The request stays in flight until its body (a watch, a log stream) is dropped.
            Ok::<_, std::convert::Infallible>(response.map(|b| {
                Body::new(http_body_util::BodyExt::map_frame(b, move |f| {
                    let _ = &in_flight;
                    f
                }))
            }))
        }
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http2().max_header_list_size(MAX_HEADER_BYTES).max_concurrent_streams(250);
    let serving = http.serve_connection_with_upgrades(TokioIo::new(Watched::new(stream, activity.clone())), service);
    tokio::pin!(serving);
    tokio::select! {
        served = serving.as_mut() => served.map_err(|e| anyhow::anyhow!(e))?,
        _ = activity.expired(limits) => {
            // As Go's server: an HTTP/2 client gets a GOAWAY (and a stream it already sent is
            // still answered, within 5 s); an HTTP/1.1 one, with no request in flight, a close.
            tracing::debug!(%peer, "closing an idle or stalled connection");
            if http2 {
                serving.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
            }
        }
    }
    Ok(())
}

/// Go's `MaxHeaderBytes` as kube-apiserver leaves it (1 MiB), for HTTP/2 header lists.
const MAX_HEADER_BYTES: u32 = 1 << 20;

/// The last line of defence: a handler that panicked answers 500 with a Status. The panic
/// hook (`lockbox`'s) has logged one line saying where, never the message, which may quote
/// request data.
fn panicked() -> Response<Body> {
    crate::negotiate::error(&api::ApiError::internal("the server could not complete the request"))
}
