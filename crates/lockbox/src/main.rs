//! `lockbox`: the configuration-and-secrets slice of Kubernetes in one binary.

mod bench;
mod hardening;
mod kms_plugin;
mod storage_cmd;
mod up;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lockbox", version, about = "Kubernetes ConfigMaps and Secrets, in one fast binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Allow core dumps and ptrace by other processes of the same user. By default lockbox
    /// sets RLIMIT_CORE to 0 and makes itself non-dumpable, because a core of a process
    /// holding Secrets holds their plaintext. For debugging a crash only.
    #[arg(long, global = true)]
    allow_core_dumps: bool,
    /// Lock all of lockbox's memory (mlockall), so that no Secret is ever swapped to disk.
    /// Needs CAP_IPC_LOCK or a large enough `ulimit -l`; lockbox refuses to start without it.
    #[arg(long, global = true)]
    mlock: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server on the embedded store.
    Up {
        /// Where state, certificates and the admin kubeconfig live.
        #[arg(long, env = "LOCKBOX_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Address to serve the Kubernetes API on (TLS).
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// kube-apiserver's EncryptionConfiguration file. Without it, lockbox generates
        /// DATA/encryption-config.yaml (secretbox for Secrets) on first start and uses that.
        #[arg(long)]
        encryption_provider_config: Option<PathBuf>,
        /// Reload the encryption configuration when its file changes (kube-apiserver's flag;
        /// on by default here). `=false` keeps the configuration read at start.
        #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        encryption_provider_config_automatic_reload: bool,
        /// How often the encryption configuration is checked for changes, in seconds.
        #[arg(long, default_value_t = 5)]
        encryption_provider_config_reload_seconds: u64,
        /// Static bearer tokens, in kube-apiserver's CSV format: token,user,uid,"group1,group2".
        #[arg(long)]
        token_auth_file: Option<PathBuf>,
        /// An audit.k8s.io/v1 Policy; by default every request touching Secrets is recorded.
        #[arg(long)]
        audit_policy_file: Option<PathBuf>,
        /// Where audit events go (JSON lines); default DATA/audit.log; "" turns auditing off.
        #[arg(long)]
        audit_log_path: Option<PathBuf>,
        /// Rotate the audit log when it reaches this many megabytes.
        #[arg(long, default_value_t = 100)]
        audit_log_maxsize: u64,
        /// How many rotated audit logs to keep.
        #[arg(long, default_value_t = 10)]
        audit_log_maxbackup: usize,
        /// kube-apiserver's: read-only requests (get, list) in flight at once; more get 429.
        /// Long-running requests (watch, exec, logs) are not counted.
        #[arg(long, default_value_t = 400)]
        max_requests_inflight: usize,
        /// kube-apiserver's: mutating requests in flight at once; more get 429.
        #[arg(long, default_value_t = 200)]
        max_mutating_requests_inflight: usize,
        /// How many connections are served at once; more wait in the listen backlog.
        #[arg(long, default_value_t = 10_000)]
        max_connections: usize,
        /// Seconds a connection may stay open with no request in flight (Go's IdleTimeout).
        #[arg(long, default_value_t = 90, hide = true)]
        idle_connection_timeout_seconds: u64,
        /// Seconds a request head may take to arrive (Go's ReadHeaderTimeout).
        #[arg(long, default_value_t = 32, hide = true)]
        request_header_timeout_seconds: u64,
    },
    /// Print the admin kubeconfig of a data dir.
    Kubeconfig {
        #[arg(long, env = "LOCKBOX_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Encryption at rest: which keys stored objects use, and re-encryption with the current key.
    Storage {
        #[command(subcommand)]
        command: storage_cmd::StorageCommand,
    },
    /// A KMS v2 plugin (gRPC on a unix socket) backed by OpenBao's or Vault's Transit engine.
    KmsPlugin(kms_plugin::Args),
    /// Benchmarks against peers measured in the same run (OpenBao on raft, the SQLite floor).
    Bench(bench::Args),
}

/// `$XDG_DATA_HOME/lockbox`, else `~/.local/share/lockbox`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lockbox");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/lockbox")
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the command; a failure is printed as one line with its causes (no backtrace, whatever
/// RUST_BACKTRACE says), so that the last line of a log says why lockbox stopped.
fn main() {
    if let Err(e) = run() {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    // The container entry point runs before any thread exists: it forks.
    if std::env::args().nth(1).as_deref() == Some("container-init") {
        agent::init::main();
    }
    // One TLS crypto provider for every client and server in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    hardening::quiet_panics();
    hardening::apply(&hardening::Options { allow_core_dumps: cli.allow_core_dumps, mlock: cli.mlock })?;
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Up {
            data_dir,
            listen,
            encryption_provider_config,
            encryption_provider_config_automatic_reload,
            encryption_provider_config_reload_seconds,
            token_auth_file,
            audit_policy_file,
            audit_log_path,
            audit_log_maxsize,
            audit_log_maxbackup,
            max_requests_inflight,
            max_mutating_requests_inflight,
            max_connections,
            idle_connection_timeout_seconds,
            request_header_timeout_seconds,
        } => {
            init_logging();
            // Absolute, so that every path derived from it (mount points above all) is.
            let data_dir = std::path::absolute(data_dir.unwrap_or_else(default_data_dir))?;
            rt.block_on(up::run(apiserver::Config {
                data_dir,
                listen,
                encryption_config: encryption_provider_config,
                encryption_reload_interval: encryption_provider_config_automatic_reload
                    .then(|| Duration::from_secs(encryption_provider_config_reload_seconds.max(1))),
                token_auth_file,
                audit_policy_file,
                audit_log_path,
                audit_log_max_megabytes: audit_log_maxsize,
                audit_log_max_backups: audit_log_maxbackup,
                metrics: vec![controllers::metrics::register],
                connections: apiserver::connection::Limits {
                    max_connections: max_connections.max(1),
                    idle_timeout: Duration::from_secs(idle_connection_timeout_seconds.max(1)),
                    header_timeout: Duration::from_secs(request_header_timeout_seconds.max(1)),
                    ..Default::default()
                },
                fairness: apiserver::fairness::Limits { max_requests_inflight, max_mutating_requests_inflight, list_seats: 0 },
            }))
        }
        Command::Kubeconfig { data_dir } => {
            let path = data_dir.unwrap_or_else(default_data_dir).join("admin.kubeconfig");
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {} (has `lockbox up` run with this data dir?)", path.display()))?;
            print!("{text}");
            Ok(())
        }
        Command::Storage { command } => {
            // `lockbox storage status | head` ends quietly, as a Unix tool does, instead of
            // panicking on a closed stdout (Rust ignores SIGPIPE). Only here: in a server, a
            // peer that hangs up must not kill the process.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            rt.block_on(storage_cmd::run(command))
        }
        Command::Bench(args) => rt.block_on(bench::run(args)),
        Command::KmsPlugin(args) => {
            init_logging();
            rt.block_on(kms_plugin::run(args))
        }
    }
}
