//! Connection exhaustion: idle and slow connections are closed by the server's deadlines, and
//! a normal client is served while 2,000 of them are open.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;

const IDLE: usize = 2000;
const SLOW: usize = 100;
/// The deadlines the server runs with here (kube-apiserver's are 32 s and 90 s; the TLS
/// handshake's is 10 s).
const HEADER_TIMEOUT: u64 = 2;
const IDLE_TIMEOUT: u64 = 3;

fn raise_open_files_limit() {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

fn tls_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Whether the server has closed `conn` (EOF or reset), waiting up to `wait` for it.
fn closed(conn: &mut TcpStream, wait: Duration) -> bool {
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 64];
    match conn.read(&mut b) {
        Ok(0) => true,
        Ok(_) => closed(conn, wait),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_and_others_still_served() {
    raise_open_files_limit();
    let s =
        Server::start_with(&["--request-header-timeout-seconds", &HEADER_TIMEOUT.to_string(), "--idle-connection-timeout-seconds", &IDLE_TIMEOUT.to_string()])
            .await;
    let kc: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(s.kubeconfig()).unwrap()).unwrap();
    let server = kc["clusters"][0]["cluster"]["server"].as_str().unwrap().trim_start_matches("https://").to_string();
    let ca = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, kc["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap())
        .unwrap();

    // Connections that never start TLS.
    let started = Instant::now();
    let mut idle: Vec<TcpStream> = (0..IDLE).map(|_| TcpStream::connect(&server).unwrap()).collect();
    // Connections that finish the handshake and then send a request head a byte at a time.
    let config = tls_config(&ca);
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            let (server, config) = (server.clone(), config.clone());
            std::thread::spawn(move || {
                let tcp = TcpStream::connect(&server).unwrap();
                let conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let began = Instant::now();
                for b in b"GET /version HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
                    if tls.write_all(&[*b]).and_then(|_| tls.flush()).is_err() || began.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                began.elapsed()
            })
        })
        .collect();

    // A normal client is served meanwhile, promptly.
    let c = s.client().await;
    let t = Instant::now();
    let version = c.apiserver_version().await.expect("served while thousands of connections are open");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(version.major, "1");

    for h in slow {
        let lasted = h.join().unwrap();
        assert!(lasted < Duration::from_secs(HEADER_TIMEOUT + 4), "a slow request head held its connection for {lasted:?}");
    }
    // The TLS handshake deadline (10 s from each accept) closes the idle ones.
    let mut open = 0;
    for conn in idle.iter_mut() {
        let wait = Duration::from_secs(20).saturating_sub(started.elapsed()).max(Duration::from_millis(10));
        if !closed(conn, wait) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "{open} of {IDLE} idle connections still open after {:?}", started.elapsed());

    // A kept-alive connection with no request in flight is closed after the idle deadline.
    let tcp = TcpStream::connect(&server).unwrap();
    let conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tls.read(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 "), "{}", String::from_utf8_lossy(&answer[..n]));
    let t = Instant::now();
    tls.sock.set_read_timeout(Some(Duration::from_secs(IDLE_TIMEOUT + 5))).unwrap();
    let end = tls.read(&mut answer);
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert!(t.elapsed() >= Duration::from_secs(IDLE_TIMEOUT - 1) && t.elapsed() < Duration::from_secs(IDLE_TIMEOUT + 3), "closed after {:?}", t.elapsed());
}
