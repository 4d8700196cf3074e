//! Starts a real `lockbox up` on a fresh data dir and a free port, and hands out clients.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub log: PathBuf,
    /// Extra arguments for `lockbox up`.
    pub args: Vec<String>,
    /// Extra environment for `lockbox up` (e.g. `AWS_ENDPOINT_URL` pointing at moto).
    pub env: Vec<(String, String)>,
    /// A command that runs `lockbox up` (e.g. `prlimit --as=N --`), or none.
    pub wrapper: Vec<String>,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    pub async fn start_with(args: &[&str]) -> Server {
        Self::start_with_env(args, &[]).await
    }

    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_wrapped(&[], args, env).await
    }

    /// Starts `lockbox up` through `wrapper` (which must exec it, keeping the pid).
    pub async fn start_wrapped(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            log: dir.path().join("server.log"),
            dir,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            wrapper: wrapper.iter().map(|a| a.to_string()).collect(),
        };
        s.launch().await;
        s
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Runs `lockbox ARGS` to completion: (success, stdout + stderr).
    pub fn lockbox(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_lockbox")).args(args).output().expect("run lockbox");
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    /// Starts (or restarts) the process and waits until /readyz answers.
    pub async fn launch(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(env!("CARGO_BIN_EXE_lockbox"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_lockbox")),
        };
        let child = cmd
            .args(["up", "--data-dir"])
            .arg(self.data_dir())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lockbox");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.kubeconfig().exists() {
                if let Ok(c) = self.try_client().await {
                    if c.request_text(http::Request::get("/readyz").body(vec![]).unwrap()).await.is_ok() {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "lockbox did not become ready:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process gracefully (SIGTERM: the agent stops its pods and unmounts their
    /// volumes), and kills it if it has not exited within 20 s. Tests must leave no tmpfs
    /// mounted; `scripts/test.sh` checks at the end of the suite.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9: a crash, leaving whatever the process had not cleaned up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process as a service manager would (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    async fn try_client(&self) -> Result<kube::Client, Box<dyn std::error::Error>> {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(cfg)?)
    }

    pub async fn client(&self) -> kube::Client {
        self.try_client().await.expect("client")
    }

    /// A client with no credentials: TLS to the same server, trusting its CA.
    pub async fn anonymous_client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap();
        cfg.auth_info = Default::default();
        kube::Client::try_from(cfg).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // A failing test shows the end of the server's log: the data dir goes with the test.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the server log ---\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

/// The kubectl binaries to test with: every `kubectl.1.NN` next to the `kubectl` on PATH, or
/// the plain `kubectl` when there are none.
pub fn kubectls() -> Vec<PathBuf> {
    let Some(kubectl) = which("kubectl") else {
        return vec![];
    };
    let real = std::fs::canonicalize(&kubectl).unwrap_or(kubectl.clone());
    let dir = real.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("kubectl.1.")))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if found.is_empty() {
        found.push(kubectl);
    }
    found
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// A raw request: (status, Warning headers, body parsed as JSON or as a string).
pub async fn raw(client: &kube::Client, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<String>, serde_json::Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    if !content_type.is_empty() {
        req = req.header("Content-Type", content_type);
    }
    let req = req.body(kube::client::Body::from(body.to_vec())).unwrap();
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let warnings = resp.headers().get_all("Warning").iter().map(|v| v.to_str().unwrap_or_default().to_string()).collect();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, warnings, value)
}

/// A raw request that may fail (the server killed under it): its status, if it was answered.
pub async fn try_status(client: &kube::Client, method: &str, path: &str, content_type: &str, body: &[u8]) -> Option<u16> {
    let req = http::Request::builder().method(method).uri(path).header("Content-Type", content_type).body(kube::client::Body::from(body.to_vec())).ok()?;
    let resp = client.send(req).await.ok()?;
    let status = resp.status().as_u16();
    resp.into_body().collect_bytes().await.ok()?;
    Some(status)
}

/// The peers venv (scripts/peers.sh): OpenBao, moto, Python crypto libraries.
pub fn peers_venv() -> PathBuf {
    let venv = std::env::var_os("LOCKBOX_PEERS_VENV").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.peers/venv"));
    assert!(venv.join("bin").is_dir(), "no peers venv at {} (run scripts/peers.sh)", venv.display());
    venv
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// OpenBao in dev mode on loopback, ready to write (KV write polled, not just health).
pub async fn openbao() -> (Peer, String) {
    let port = free_port();
    let cluster = free_port();
    let bao = peers_venv().join("bin/bao");
    let child = Command::new(&bao)
        .args(["server", "-dev", "-dev-root-token-id=root", &format!("-dev-listen-address=127.0.0.1:{port}")])
        .env("BAO_CLUSTER_ADDR", format!("https://127.0.0.1:{cluster}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bao");
    let peer = Peer(child);
    let addr = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = Command::new(&bao)
            .args(["kv", "put", "secret/ready", "x=1"])
            .env("BAO_ADDR", &addr)
            .env("BAO_TOKEN", "root")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return (peer, addr);
        }
        assert!(Instant::now() < deadline, "OpenBao did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// moto's AWS emulator on loopback, answering its health endpoint.
pub async fn moto() -> (Peer, String) {
    let port = free_port();
    let child = Command::new(peers_venv().join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let peer = Peer(child);
    let addr = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (peer, addr)
}

impl Server {
    /// A client that authenticates with a bearer token instead of the admin certificate.
    pub async fn token_client(&self, token: &str) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap();
        cfg.auth_info = kube::config::AuthInfo { token: Some(token.to_string().into()), ..Default::default() };
        kube::Client::try_from(cfg).unwrap()
    }
}

/// POSTs a JSON body: (status, response body).
pub async fn post(c: &kube::Client, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (code, _, v) = raw(c, "POST", path, "application/json", body.to_string().as_bytes()).await;
    (code, v)
}

/// Retries `f` every 200 ms until it succeeds; after `secs` seconds, panics with its last error.
pub async fn until(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
