//! The processes a benchmark measures, each started fresh on loopback: `lockbox up` (this very
//! binary) on a new data dir, and OpenBao with integrated raft storage on disk (not dev mode, so
//! that both sides are durable), both serving TLS with certificates of their own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident set size of a process: (now, peak) in bytes, from /proc.
pub fn rss(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0) * 1024
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn b64(s: &str) -> Result<Vec<u8>> {
    Ok(base64::engine::general_purpose::STANDARD.decode(s.trim())?)
}

/// Stops a child: SIGTERM, then SIGKILL after `grace`.
fn stop_child(child: &mut Child, grace: Duration) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub struct Lockbox {
    child: Child,
    pub base: String,
    /// An admin client (the kubeconfig's client certificate) on HTTP/1.1, as kube-rs and most
    /// Vault clients speak it: concurrent requests use connections of their own, and so does
    /// each watch.
    pub http: reqwest::Client,
    /// From spawn to the first `/readyz` that answered ok.
    pub ready_after: Duration,
}

impl Lockbox {
    /// Starts `lockbox up` on `data_dir` (reusing what is there) and waits until it is ready.
    pub async fn start(data_dir: &Path, log: &Path) -> Result<Lockbox> {
        let port = free_port()?;
        let kubeconfig = data_dir.join("admin.kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let started = Instant::now();
        let child = Command::new(std::env::current_exe()?)
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting lockbox up")?;
        let mut lb = Lockbox { child, base: format!("https://127.0.0.1:{port}"), http: reqwest::Client::new(), ready_after: Duration::ZERO };
        let deadline = started + Duration::from_secs(120);
        loop {
            if Instant::now() > deadline {
                bail!("lockbox did not become ready within 2 minutes");
            }
            if let Ok(Some(status)) = lb.child.try_wait() {
                bail!("lockbox up exited during start: {status}");
            }
            if kubeconfig.exists() {
                if let Ok(http) = client(&kubeconfig) {
                    if let Ok(r) = http.get(format!("{}/readyz", lb.base)).send().await {
                        if r.status().is_success() {
                            lb.ready_after = started.elapsed();
                            lb.http = http;
                            return Ok(lb);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client that authenticates with a bearer token (another user than the admin), on
    /// HTTP/1.1 like the admin client.
    pub fn token_client(&self, token: &str, data_dir: &Path) -> Result<reqwest::Client> {
        let kc: Value = serde_norway::from_str(&std::fs::read_to_string(data_dir.join("admin.kubeconfig"))?)?;
        let ca = b64(kc["clusters"][0]["cluster"]["certificate-authority-data"].as_str().context("no CA")?)?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
        Ok(reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca)?]).default_headers(headers).http1_only().build()?)
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(15));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a JSON request and fails on any status other than 2xx.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>, content_type: &str) -> Result<Value> {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req.header("Content-Type", content_type).body(serde_json::to_vec(b)?);
        }
        let resp = req.send().await?;
        let code = resp.status();
        let bytes = resp.bytes().await?;
        if !code.is_success() {
            bail!("{method} {path}: {code}: {}", String::from_utf8_lossy(&bytes).chars().take(300).collect::<String>());
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn create(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body), "application/json").await
    }
}

impl Drop for Lockbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The admin client of a kubeconfig.
fn client(kubeconfig: &Path) -> Result<reqwest::Client> {
    let kc: Value = serde_norway::from_str(&std::fs::read_to_string(kubeconfig)?)?;
    let ca = b64(kc["clusters"][0]["cluster"]["certificate-authority-data"].as_str().context("no CA")?)?;
    let mut pem = b64(kc["users"][0]["user"]["client-certificate-data"].as_str().context("no client certificate")?)?;
    pem.extend(b64(kc["users"][0]["user"]["client-key-data"].as_str().context("no client key")?)?);
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .identity(reqwest::Identity::from_pem(&pem)?)
        .http1_only()
        .pool_max_idle_per_host(2048)
        .build()?)
}

/// OpenBao on raft storage, initialised with one unseal key, KV v2 at `secret/` and Transit at
/// `transit/`.
pub struct OpenBao {
    child: Child,
    pub addr: String,
    pub token: String,
    pub ca_file: PathBuf,
    pub http: reqwest::Client,
    pub version: String,
}

impl OpenBao {
    pub async fn start(bao: &Path, dir: &Path) -> Result<OpenBao> {
        std::fs::create_dir_all(dir.join("raft"))?;
        // A CA and a serving certificate for loopback, made as lockbox makes its own, so that
        // OpenBao pays for TLS as lockbox does.
        let pki = apiserver::pki::Pki::ensure(&dir.join("pki"), &[])?;
        let ca_file = pki.dir.join("ca.crt");
        std::fs::write(dir.join("tls.pem"), &pki.serving_cert_pem)?;
        std::fs::write(dir.join("tls.key"), &pki.serving_key_pem)?;
        let (port, cluster) = (free_port()?, free_port()?);
        let config = format!(
            "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"n1\"\n}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_cert_file = \"{d}/tls.pem\"\n  tls_key_file = \"{d}/tls.key\"\n}}\napi_addr = \"https://127.0.0.1:{port}\"\ncluster_addr = \"https://127.0.0.1:{cluster}\"\ndisable_mlock = true\n",
            raft = dir.join("raft").display(),
            d = dir.display()
        );
        std::fs::write(dir.join("config.hcl"), config)?;
        let log = std::fs::File::create(dir.join("bao.log"))?;
        let child =
            Command::new(bao).arg("server").arg("-config").arg(dir.join("config.hcl")).stdout(log.try_clone()?).stderr(log).spawn().context("starting bao")?;
        let addr = format!("https://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_cert_pem.as_bytes())?])
            .http1_only()
            .pool_max_idle_per_host(2048)
            .build()?;
        let mut b = OpenBao { child, addr, token: String::new(), ca_file, http, version: String::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        let init = loop {
            if Instant::now() > deadline {
                bail!("OpenBao did not start; see {}", dir.join("bao.log").display());
            }
            match b.http.put(b.url("sys/init")).json(&json!({"secret_shares": 1, "secret_threshold": 1})).send().await {
                Ok(r) if r.status().is_success() => break r.json::<Value>().await?,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        b.token = init["root_token"].as_str().context("no root token")?.to_string();
        let key = init["keys_base64"][0].as_str().context("no unseal key")?.to_string();
        b.http.put(b.url("sys/unseal")).json(&json!({"key": key})).send().await?.error_for_status()?;
        // Raft elects itself leader a few seconds after unsealing; mounts fail until then.
        for (path, kind) in [("secret", "kv-v2"), ("transit", "transit")] {
            b.until_ok(reqwest::Method::POST, &format!("sys/mounts/{path}"), json!({"type": kind})).await?;
        }
        // KV v2 upgrades its mount in the background: poll a real write.
        b.until_ok(reqwest::Method::PUT, "secret/data/ready", json!({"data": {"x": "1"}})).await?;
        let health: Value = b.http.get(b.url("sys/health")).send().await?.json().await?;
        b.version = health["version"].as_str().unwrap_or_default().to_string();
        Ok(b)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.addr)
    }

    async fn until_ok(&self, method: reqwest::Method, path: &str, body: Value) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.http.request(method.clone(), self.url(path)).header("X-Vault-Token", &self.token).json(&body).send().await;
            match r {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if Instant::now() > deadline => bail!("OpenBao {path}: {}", r.status()),
                Err(e) if Instant::now() > deadline => bail!("OpenBao {path}: {e}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub async fn put(&self, name: &str, value: &str) -> Result<()> {
        let r =
            self.http.put(self.url(&format!("secret/data/{name}"))).header("X-Vault-Token", &self.token).json(&json!({"data": {"v": value}})).send().await?;
        if !r.status().is_success() {
            bail!("OpenBao write {name}: {}", r.status());
        }
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<()> {
        let r = self.http.get(self.url(&format!("secret/data/{name}"))).header("X-Vault-Token", &self.token).send().await?;
        if !r.status().is_success() {
            bail!("OpenBao read {name}: {}", r.status());
        }
        r.bytes().await?;
        Ok(())
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}
