//! The Kubernetes-compatible API server: TLS, authentication, routing and content negotiation,
//! the generic REST verbs over the store, the watch cache, and the housekeeping loops.

pub mod admission;
pub mod agents;
pub mod app;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cache;
pub mod connection;
pub mod controllers;
pub mod decode;
pub mod fairness;
pub mod handler;
pub mod health;
pub mod lifecycle;
pub mod negotiate;
pub mod options;
pub mod pki;
pub mod proxy;
pub mod request;
pub mod respond;
pub mod rest;
pub mod reviews;
pub mod routes;
pub mod server;
pub mod storage_admin;
pub mod subresources;
pub mod verbs;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// kube-apiserver's `--encryption-provider-config`; by default lockbox writes and uses
    /// `DATA/encryption-config.yaml` (secretbox for Secrets).
    pub encryption_config: Option<PathBuf>,
    /// How often the encryption configuration file is checked for changes; `None` when
    /// automatic reload is off.
    pub encryption_reload_interval: Option<Duration>,
    /// kube-apiserver's `--token-auth-file` (CSV: token,user,uid,"groups").
    pub token_auth_file: Option<PathBuf>,
    /// `--audit-policy-file`; the built-in policy records Secret access at Metadata level.
    pub audit_policy_file: Option<PathBuf>,
    /// `--audit-log-path` (default DATA/audit.log; empty disables auditing).
    pub audit_log_path: Option<PathBuf>,
    pub audit_log_max_megabytes: u64,
    pub audit_log_max_backups: usize,
    /// Metric families of the components running beside the server (the controllers), served
    /// on `/metrics` with the server's own.
    pub metrics: Vec<fn(&mut prometheus_client::registry::Registry)>,
    /// Deadlines and the connection count of the TLS listener.
    pub connections: connection::Limits,
    /// Max-in-flight limits and fair queuing of LISTs.
    pub fairness: fairness::Limits,
}

/// The encryption configuration file a data dir uses by default, created on first start only
/// (`first_start`: the store does not exist yet). A data dir that holds data but has lost its
/// file is refused: a fresh key would make every Secret written before unreadable.
pub fn default_encryption_config(data_dir: &std::path::Path, first_start: bool) -> Result<PathBuf> {
    let path = data_dir.join("encryption-config.yaml");
    if !path.exists() {
        anyhow::ensure!(
            first_start,
            "{} is missing, but {} already holds data: an encryption key is generated only on first start. Restore the file, or pass --encryption-provider-config with the configuration this data was written under",
            path.display(),
            data_dir.display()
        );
        pki::write_private(&path, crypt::config::default_config_text().as_bytes())?;
        tracing::info!(path = %path.display(), "generated an encryption configuration: Secrets are encrypted with secretbox");
    }
    Ok(path)
}

/// The API group of a storage resource name, for matching encryption rules.
pub fn group_of_resource() -> crypt::reload::GroupOf {
    Arc::new(|plural: &str| api::kinds::ALL.iter().find(|r| r.plural == plural).map(|r| r.group.to_string()).unwrap_or_default())
}

/// Loads an encryption configuration (off the async threads: KMS providers probe their plugin).
pub async fn load_encryption(path: PathBuf) -> Result<Arc<crypt::reload::Reloading>> {
    tokio::task::spawn_blocking(move || crypt::reload::Reloading::load(&path, group_of_resource())).await?.map_err(|e| anyhow::anyhow!(e))
}

/// Runs a housekeeping loop for the life of the process, starting it again (after 1 s,
/// doubling to a minute) if it panics: a panic in a background task ends only that task,
/// silently, and a namespace finalizer or a controller that stopped would never be noticed.
/// A loop that returns is done.
pub fn supervise<F, Fut>(name: &'static str, start: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send,
{
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(1);
        loop {
            match tokio::spawn(start()).await {
                Err(e) if e.is_panic() => {
                    tracing::error!(task = name, retry_in_s = pause.as_secs(), "a background task panicked; starting it again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(60));
                }
                _ => return,
            }
        }
    });
}

/// Holds the data dir's lock for as long as the returned file is open; fails if another
/// lockbox process holds it.
pub fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(data_dir.join("lockbox.lock"))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(_) => anyhow::bail!("the data dir {} is in use by a running lockbox", data_dir.display()),
    }
}

/// A listening socket with the backlog Go gives its listeners (the kernel's `somaxconn`, not
/// tokio's 1,024): a burst of connections waits in the kernel queue instead of being dropped
/// half-open.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let backlog = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(4096u32);
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The address clients should use for `listen` (an unspecified address becomes loopback).
pub fn client_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("https://{host}:{}", listen.port())
}

/// A started API server: where it listens, its PKI (to issue credentials for in-process
/// clients), and the task serving it.
pub struct Started {
    pub listen: SocketAddr,
    pub url: String,
    pub pki: pki::Pki,
    pub serving: tokio::task::JoinHandle<Result<()>>,
}

impl Started {
    /// A kubeconfig for an in-process client with its own certificate.
    pub fn client_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<String> {
        let (cert, key) = self.pki.issue(user, groups, vec![], rcgen::ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(pki::kubeconfig(&self.url, &self.pki.ca_cert_pem, user, &cert, &key))
    }
}

/// Runs the API server until the process is stopped.
pub async fn run(cfg: Config) -> Result<()> {
    start(cfg).await?.serving.await?
}

/// Starts the API server and returns once it accepts connections.
pub async fn start(cfg: Config) -> Result<Started> {
    pki::private_dir(&cfg.data_dir)?;
    let _lock = lock_data_dir(&cfg.data_dir)?;
    // Bind first, so that port 0 works and the kubeconfig names the real port.
    let listener = listen(cfg.listen).with_context(|| format!("listening on {}", cfg.listen))?;
    let listen = listener.local_addr()?;
    let pki = pki::Pki::ensure(&cfg.data_dir.join("pki"), &[listen.ip()])?;
    let (cert, key) = pki.admin_credentials()?;

    let first_start = !cfg.data_dir.join("state.db").exists();
    let enc_path = match cfg.encryption_config.clone() {
        Some(p) => p,
        None => default_encryption_config(&cfg.data_dir, first_start)?,
    };
    let store: Arc<dyn store::Store> = store::SqliteStore::open(&cfg.data_dir.join("state.db")).context("opening the store")?;
    let encryption = load_encryption(enc_path).await?;
    if let Some(every) = cfg.encryption_reload_interval {
        tokio::spawn(encryption.clone().watch(every));
    }
    let transformer: Arc<dyn crypt::Transformer> = encryption.clone();
    let cache = cache::WatchCache::start(store.clone(), rest::Registry::decoder(transformer.clone())).await?;
    let registry = Arc::new(rest::Registry { store, cache, transformer });
    lifecycle::ensure_builtin_namespaces(&registry).await?;
    supervise("namespace finalizer", {
        let r = registry.clone();
        move || lifecycle::namespace_finalizer(r.clone())
    });
    supervise("compactor", {
        let r = registry.clone();
        move || lifecycle::compactor(r.clone(), Duration::from_secs(300))
    });

    let signer = Arc::new(
        auth::tokens::TokenSigner::load_or_create(&cfg.data_dir.join("pki/sa.key"), |p, b| pki::write_private(p, b).map_err(|e| e.to_string()))
            .map_err(anyhow::Error::msg)?,
    );
    let identity = Arc::new(controllers::Identity { registry: registry.clone(), signer: signer.clone(), ca_pem: pki.ca_cert_pem.clone() });
    identity.bootstrap_policy().await.map_err(|e| anyhow::anyhow!("bootstrap RBAC policy: {e}"))?;
    supervise("identity controllers", {
        let i = identity.clone();
        move || i.clone().run()
    });
    let token_file = match &cfg.token_auth_file {
        Some(p) => Some(
            auth::tokenfile::TokenFile::parse(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?).map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let audit_path = cfg.audit_log_path.clone().unwrap_or_else(|| cfg.data_dir.join("audit.log"));
    let audit = if audit_path.as_os_str().is_empty() {
        None
    } else {
        let text = match &cfg.audit_policy_file {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            None => audit::DEFAULT_POLICY.to_string(),
        };
        let policy = audit::Policy::parse(&text).map_err(anyhow::Error::msg)?;
        Some(audit::AuditLog::open(&audit_path, policy, cfg.audit_log_max_megabytes, cfg.audit_log_max_backups).map_err(anyhow::Error::msg)?)
    };
    let authn = authn::Authenticator { token_file, signer, registry: registry.clone() };
    let (kc_cert, kc_key) = pki.issue("kube-apiserver-kubelet-client", &["system:masters"], vec![], rcgen::ExtendedKeyUsagePurpose::ClientAuth)?;
    let agents = agents::AgentClient::new(&pki.ca_cert_pem, &kc_cert, &kc_key)?;
    let app = Arc::new(app::App {
        registry,
        openapi: api::openapi::OpenApi::build(),
        health: health::Health::new(encryption.clone(), &cfg.metrics),
        encryption,
        authn,
        audit,
        agents,
        fairness: fairness::Fairness::new(cfg.fairness),
    });
    let router = axum::Router::new().fallback(handler::handle).with_state(app);
    let tls = server::tls_config(&pki)?;
    // The kubeconfig is written last: once it exists, the server answers.
    let kubeconfig_path = cfg.data_dir.join("admin.kubeconfig");
    let kubeconfig = pki::kubeconfig(&client_url(listen), &pki.ca_cert_pem, "admin", &cert, &key);
    pki::write_private(&kubeconfig_path, kubeconfig.as_bytes())?;
    tracing::info!(%listen, "lockbox API server ready");
    println!("export KUBECONFIG={}", kubeconfig_path.display());
    let connections = cfg.connections;
    let serving = tokio::spawn(async move {
        let _lock = _lock;
        server::serve(listener, tls, router, connections).await
    });
    Ok(Started { listen, url: client_url(listen), pki, serving })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_background_task_is_started_again() {
        let starts = Arc::new(AtomicUsize::new(0));
        let s = starts.clone();
        super::supervise("test", move || {
            let s = s.clone();
            async move {
                if s.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
        // Two panics, two pauses (1 s, 2 s), then a start that returns: done, not restarted.
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }
}
