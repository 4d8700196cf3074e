//! The TLS listener: rustls with optional client certificates, HTTP/1.1 and HTTP/2 via ALPN, and
//! the authenticated user attached to every request.
//!
//! As kube-apiserver (`tls.RequestClientCert`), a client certificate is requested but never
//! fails the handshake: one the cluster CA did not sign is simply not an identity, so the request
//! gets 401 from the authenticator (or is authenticated by its bearer token), not a TLS alert.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
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
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::authn::{user_from_certificate, PeerCertificate};
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

/// Accepts connections until the process ends.
pub async fn serve(listener: TcpListener, tls: Tls, app: Router) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls.config));
    let trusted = tls.trusted;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, trusted) = (acceptor.clone(), app.clone(), trusted.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(acceptor, trusted, tcp, peer, app).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

async fn connection(acceptor: TlsAcceptor, trusted: Arc<dyn ClientCertVerifier>, tcp: tokio::net::TcpStream, peer: SocketAddr, app: Router) -> Result<()> {
    let stream = acceptor.accept(tcp).await?;
    // A certificate is an identity only if the cluster CA signed it.
    let user = PeerCertificate(stream.get_ref().1.peer_certificates().and_then(|chain| {
        let (end, intermediates) = chain.split_first()?;
        trusted.verify_client_cert(end, intermediates, UnixTime::now()).ok()?;
        user_from_certificate(end.as_ref())
    }));
    let service = app.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(user.clone());
        req.extensions_mut().insert(peer);
        req
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    auto::Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(stream), service).await.map_err(|e| anyhow::anyhow!(e))?;
    Ok(())
}
