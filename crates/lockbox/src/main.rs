//! `lockbox`: the configuration-and-secrets slice of Kubernetes in one binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lockbox", version, about = "Kubernetes ConfigMaps and Secrets, in one fast binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
    /// Print the admin kubeconfig of a data dir.
    Kubeconfig {
        #[arg(long, env = "LOCKBOX_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// `$XDG_DATA_HOME/lockbox`, else `~/.local/share/lockbox`.
fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lockbox");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/lockbox")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up { data_dir, listen } => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
                .with_writer(std::io::stderr)
                .init();
            let data_dir = data_dir.unwrap_or_else(default_data_dir);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(apiserver::run(apiserver::Config { data_dir, listen }))
        }
        Command::Kubeconfig { data_dir } => {
            let path = data_dir.unwrap_or_else(default_data_dir).join("admin.kubeconfig");
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {} (has `lockbox up` run with this data dir?)", path.display()))?;
            print!("{text}");
            Ok(())
        }
    }
}
