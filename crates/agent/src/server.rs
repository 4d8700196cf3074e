//! The agent's endpoint, which only the API server may call (TLS with a client certificate from
//! the cluster CA whose subject is the API server's kubelet client): container logs, and exec
//! over WebSocket with Kubernetes' channel protocols `v5.channel.k8s.io` and
//! `v4.channel.k8s.io` (channel byte first: 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize,
//! 255 close; v5 closes stdin with `255 0`), and exec over SPDY/3.1 (`spdy`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum_ws::body::Body;
use axum_ws::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum_ws::extract::{Path, RawQuery, State};
use axum_ws::http::{Response, StatusCode};
use axum_ws::routing::get;
use axum_ws::Router;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pods::Agent;

/// The client certificate subject the API server uses towards agents.
pub const API_SERVER_CLIENT: &str = "kube-apiserver-kubelet-client";

pub fn tls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn text(code: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(msg.to_string()));
    *r.status_mut() = code;
    r
}

pub async fn serve(agent: Arc<Agent>, listener: tokio::net::TcpListener, tls: rustls::ServerConfig) {
    let app =
        Router::new().route("/containerLogs/{ns}/{pod}/{container}", get(logs)).route("/exec/{ns}/{pod}/{container}", get(exec).post(spdy)).with_state(agent);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let cn = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| {
                X509Certificate::from_der(c.as_ref())
                    .ok()
                    .and_then(|(_, x)| x.subject().iter_common_name().next().and_then(|n| n.as_str().ok().map(String::from)))
            });
            let allowed = cn.as_deref() == Some(API_SERVER_CLIENT);
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    if !allowed {
                        return Ok::<_, std::convert::Infallible>(text(StatusCode::FORBIDDEN, "only the API server may call the agent"));
                    }
                    Ok(app.oneshot(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
        });
    }
}

fn query(raw: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes()).into_owned().collect()
}

async fn logs(State(agent): State<Arc<Agent>>, Path((ns, pod, container)): Path<(String, String, String)>, RawQuery(raw): RawQuery) -> Response<Body> {
    let q: HashMap<String, String> = query(&raw).into_iter().collect();
    let previous = q.get("previous").is_some_and(|v| v == "true");
    let (dir, n) = {
        let pods = agent.pods.lock().await;
        match pods.get(&format!("{ns}/{pod}")).and_then(|p| p.containers.get(&container)) {
            Some(c) => match c.log_run(&container, &pod, previous) {
                Ok(n) => (c.log_dir.clone(), n),
                Err(msg) => return text(StatusCode::BAD_REQUEST, &msg),
            },
            None => return text(StatusCode::BAD_REQUEST, &format!("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating")),
        }
    };
    let path = dir.join(format!("{n}.log"));
    let content = std::fs::read(&path).unwrap_or_default();
    let opts = crate::logs::Options::from_query(&q);
    let initial = opts.render(&content);
    let follow = q.get("follow").is_some_and(|v| v == "true") && !previous;
    if !follow {
        return Response::new(Body::from(initial));
    }
    let start = content.len() as u64;
    let live = crate::logs::Options { tail: None, limit_bytes: None, ..opts };
    let stream = async_stream(agent, ns, pod, container, n, path, start, initial, live);
    Response::new(Body::from_stream(stream))
}

/// The log from `offset` on, as it grows, until the container stops.
#[allow(clippy::too_many_arguments)]
fn async_stream(
    agent: Arc<Agent>,
    ns: String,
    pod: String,
    container: String,
    run: i32,
    path: std::path::PathBuf,
    offset: u64,
    initial: Vec<u8>,
    opts: crate::logs::Options,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::unfold((Some(initial), offset), move |(first, mut offset)| {
        let (agent, ns, pod, container, path, opts) = (agent.clone(), ns.clone(), pod.clone(), container.clone(), path.clone(), opts.clone());
        async move {
            if let Some(f) = first {
                return Some((Ok(bytes::Bytes::from(f)), (None, offset)));
            }
            loop {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if len > offset {
                    let mut f = tokio::fs::File::open(&path).await.ok()?;
                    use tokio::io::AsyncSeekExt;
                    f.seek(std::io::SeekFrom::Start(offset)).await.ok()?;
                    let mut buf = vec![0u8; (len - offset).min(1 << 20) as usize];
                    let n = f.read(&mut buf).await.ok()?;
                    buf.truncate(n);
                    // Only whole records; a partial one is read again next time.
                    let whole = buf.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
                    if whole == 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    offset += whole as u64;
                    return Some((Ok(bytes::Bytes::from(opts.render(&buf[..whole]))), (None, offset)));
                }
                // Follow ends when the run exits (after what it wrote last is read).
                let alive = agent.pods.lock().await.get(&format!("{ns}/{pod}")).and_then(|p| p.containers.get(&container)).is_some_and(|c| c.is_running(run));
                if !alive {
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    if len > offset {
                        continue;
                    }
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

/// The exec target: the container's init pid (for nsenter), its env and working directory.
async fn target(agent: &Agent, ns: &str, pod: &str, container: &str) -> Option<(String, Vec<(String, String)>, Option<String>)> {
    let pods = agent.pods.lock().await;
    pods.get(&format!("{ns}/{pod}"))
        .and_then(|p| p.containers.get(container))
        .map(|c| (std::fs::read_to_string(&c.pid_file).unwrap_or_default().trim().to_string(), c.env.clone(), c.working_dir.clone()))
        .filter(|t| !t.0.is_empty())
}

/// A process in the container's mount and PID namespaces, with its environment, as CRI exec runs it.
///
/// With a TTY, the command runs under `setsid -c`: nsenter forks it into the container's PID
/// namespace, where nsenter's own session and process group are invisible, so a shell there
/// could not own the terminal (dash: "Cannot set tty process group"). `setsid -c` gives it a
/// session in its own namespace with the terminal as controlling terminal, and execs (the exit
/// code is the command's).
fn exec_command(pid: &str, env: &[(String, String)], wd: Option<String>, command: &[String], tty: bool) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("nsenter");
    cmd.arg("-t").arg(pid).args(["-m", "-p"]);
    if let Some(d) = wd.filter(|d| !d.is_empty()) {
        cmd.arg(format!("--wd={d}"));
    }
    cmd.arg("--");
    if tty {
        cmd.args(["setsid", "-w", "-c"]);
    }
    cmd.args(command).env_clear().envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

/// Exec over SPDY/3.1 (kubectl 1.27–1.29, and the fallback of later versions).
async fn spdy(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    mut req: axum_ws::extract::Request,
) -> Response<Body> {
    let upgrade = req.headers().get("upgrade").and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if upgrade != "spdy/3.1" {
        return text(StatusCode::BAD_REQUEST, "unable to upgrade: missing upgrade headers in request");
    }
    let offered: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    // As the kubelet: v4 over SPDY (v5 is for WebSocket). v1–v3 report errors as plain text
    // and are not offered by any kubectl that lockbox serves without v4.
    let Some(protocol) = ["v4.channel.k8s.io"].into_iter().find(|p| offered.iter().any(|o| o == p)) else {
        return text(
            StatusCode::FORBIDDEN,
            &format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [v4.channel.k8s.io]"),
        );
    };
    let q = query(&raw);
    let command: Vec<String> = q.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let flag = |k: &str| q.iter().any(|(n, v)| n == k && (v == "true" || v == "1"));
    let wanted = crate::spdy::Wanted { stdin: flag("stdin"), stdout: flag("stdout"), stderr: flag("stderr"), tty: flag("tty") };
    let Some((pid, env, wd)) = target(&agent, &ns, &pod, &container).await else {
        return text(StatusCode::NOT_FOUND, &format!("container {container:?} not found in pod {pod:?}"));
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (stdin, tty) = (wanted.stdin, wanted.tty);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let io = TokioIo::new(upgraded);
        let spawn = move || crate::execio::spawn(exec_command(&pid, &env, wd, &command, tty), stdin, tty);
        if let Err(e) = crate::spdy::serve(io, wanted, spawn).await {
            tracing::debug!(error = %e, "SPDY exec session ended with an error");
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("connection", axum_ws::http::HeaderValue::from_static("Upgrade"));
    h.insert("upgrade", axum_ws::http::HeaderValue::from_static("SPDY/3.1"));
    h.insert("x-stream-protocol-version", axum_ws::http::HeaderValue::from_static(protocol));
    r
}

async fn exec(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Response<Body> {
    let q = query(&raw);
    let command: Vec<String> = q.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let flag = |k: &str| q.iter().any(|(n, v)| n == k && (v == "true" || v == "1"));
    let (stdin, stdout, stderr, tty) = (flag("stdin"), flag("stdout"), flag("stderr"), flag("tty"));
    let target = {
        let pods = agent.pods.lock().await;
        pods.get(&format!("{ns}/{pod}"))
            .and_then(|p| p.containers.get(&container))
            .map(|c| (std::fs::read_to_string(&c.pid_file).unwrap_or_default().trim().to_string(), c.env.clone(), c.working_dir.clone()))
    };
    let Some((pid, env, wd)) = target.filter(|t| !t.0.is_empty()) else {
        return text(StatusCode::NOT_FOUND, &format!("container {container:?} not found in pod {pod:?}"));
    };
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"]).on_upgrade(move |socket| run_exec(socket, pid, env, wd, command, stdin, stdout, stderr, tty))
}

#[allow(clippy::too_many_arguments)]
async fn run_exec(
    socket: WebSocket,
    pid: String,
    env: Vec<(String, String)>,
    wd: Option<String>,
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) {
    let (mut tx, mut rx) = socket.split();
    let status_frame = |status: serde_json::Value| {
        let mut b = vec![3u8];
        b.extend(serde_json::to_vec(&status).unwrap_or_default());
        Message::Binary(b.into())
    };
    if command.is_empty() {
        let _ = tx.send(status_frame(json!({"metadata": {}, "status": "Failure", "message": "you must specify at least one command for the container", "reason": "BadRequest", "code": 400}))).await;
        close(&mut tx).await;
        return;
    }
    let io = match crate::execio::spawn(exec_command(&pid, &env, wd, &command, tty), stdin, tty) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(status_frame(json!({"metadata": {}, "status": "Failure", "message": format!("failed to exec in container: {e}"), "reason": "InternalError", "code": 500}))).await;
            close(&mut tx).await;
            return;
        }
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
    let crate::execio::ExecIo { mut child, stdin: child_stdin, stdout: out, stderr: err, resize } = io;
    for (chan, pipe) in [(1u8, out), (2u8, err)] {
        let (Some(mut pipe), tx) = (pipe, out_tx.clone()) else { continue };
        // With a TTY everything comes out of the terminal, as stdout.
        let wanted = if chan == 1 { stdout || tty } else { stderr };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if wanted && tx.send((chan, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(out_tx);
    let mut child_stdin = child_stdin;
    let input = async {
        while let Some(Ok(msg)) = rx.next().await {
            if let Message::Binary(b) = msg {
                match b.first() {
                    Some(0) => {
                        if let Some(s) = child_stdin.as_mut() {
                            let _ = s.write_all(&b[1..]).await;
                        }
                    }
                    Some(255) if b.get(1) == Some(&0) => child_stdin = None,
                    Some(4) => crate::execio::apply_resize(&resize, &b[1..]),
                    _ => {}
                }
            } else if let Message::Close(_) = msg {
                break;
            }
        }
    };
    let output = async {
        while let Some((chan, data)) = out_rx.recv().await {
            let mut frame = vec![chan];
            frame.extend(data);
            if tx.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = async { output.await } => {}
        _ = input => {}
    }
    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(1);
    let status = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure", "message": format!("command terminated with non-zero exit code: exit status {code}"), "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    };
    let _ = tx.send(status_frame(status)).await;
    close(&mut tx).await;
}

/// Closes with 1000 (normal closure): kubectl treats a close without a code as an error.
async fn close(tx: &mut futures::stream::SplitSink<WebSocket, Message>) {
    let _ = tx.send(Message::Close(Some(axum_ws::extract::ws::CloseFrame { code: 1000, reason: "".into() }))).await;
    let _ = tx.close().await;
}
