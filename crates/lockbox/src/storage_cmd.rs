//! `lockbox storage status|migrate`: key rotation as a command.
//!
//! On a stopped data dir (its lock is free) these work on the store directly; while a server
//! holds the data dir they go through its API with the admin kubeconfig. Either way a rewrite
//! is a compare-and-swap, safe under concurrent writes, and a migration can be interrupted and
//! run again.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use apiserver::storage_admin::{self, StatusReport};

/// Which data dir, resource and configuration a storage command works on.
#[derive(clap::Args)]
pub struct Target {
    #[arg(long, env = "LOCKBOX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Only this resource (e.g. `secrets`); all resources by default.
    #[arg(long)]
    resource: Option<String>,
    /// The EncryptionConfiguration to use when the server is not running (default: the data
    /// dir's own).
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum StorageCommand {
    /// Count stored objects by the provider and key that wrote them; flag those on old keys.
    Status(Target),
    /// Rewrite every object not encrypted with its resource's current write key.
    Migrate(Target),
}

enum Mode {
    Offline { store: Arc<dyn store::Store>, enc: Arc<crypt::reload::Reloading>, _lock: std::fs::File },
    Online { client: kube::Client },
}

async fn open(data_dir: Option<PathBuf>, config: Option<PathBuf>) -> Result<Mode> {
    let dir = data_dir.unwrap_or_else(crate::default_data_dir);
    anyhow::ensure!(dir.join("state.db").exists(), "no lockbox data in {}", dir.display());
    match apiserver::lock_data_dir(&dir) {
        Ok(lock) => {
            let path = match config {
                Some(p) => p,
                None => apiserver::default_encryption_config(&dir, false)?,
            };
            let enc = apiserver::load_encryption(path).await?;
            let store: Arc<dyn store::Store> = store::SqliteStore::open(&dir.join("state.db"))?;
            Ok(Mode::Offline { store, enc, _lock: lock })
        }
        Err(_) => {
            anyhow::ensure!(
                config.is_none(),
                "the server running on {} uses its own encryption configuration; stop it to use --encryption-provider-config here",
                dir.display()
            );
            let kc = kube::config::Kubeconfig::read_from(dir.join("admin.kubeconfig")).context("reading the admin kubeconfig")?;
            let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
            Ok(Mode::Online { client: kube::Client::try_from(cfg)? })
        }
    }
}

async fn online_status(client: &kube::Client, resource: Option<&str>) -> Result<StatusReport> {
    let q = resource.map(|r| format!("?resource={r}")).unwrap_or_default();
    let req = http::Request::get(format!("/lockbox/v1/storage/status{q}")).body(vec![])?;
    Ok(client.request::<StatusReport>(req).await?)
}

fn print_status(r: &StatusReport) {
    println!("{:<32} {:>8}", "WRITTEN WITH", "OBJECTS");
    for (label, n) in &r.counts {
        println!("{label:<32} {n:>8}");
    }
    for (res, key) in &r.write_keys {
        println!("current write key for {res}: {key}");
    }
    let readable = r.total - r.unreadable.len() as u64;
    if r.stale.is_empty() {
        println!("{readable} of {} objects use their current write key", r.total);
    } else {
        println!("{} of {} objects are on old keys (run `lockbox storage migrate`):", r.stale.len(), r.total);
        for k in r.stale.iter().take(20) {
            println!("  {k}");
        }
    }
    for k in &r.unreadable {
        println!("UNREADABLE with the current configuration: {k}");
    }
}

fn bar(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} objects ({eta} left)").unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb
}

pub async fn run(cmd: StorageCommand) -> Result<()> {
    match cmd {
        StorageCommand::Status(Target { data_dir, resource, encryption_provider_config }) => {
            let report = match open(data_dir, encryption_provider_config).await? {
                Mode::Offline { store, enc, .. } => {
                    storage_admin::status(store.as_ref(), &enc.current(), resource.as_deref()).await.map_err(anyhow::Error::msg)?
                }
                Mode::Online { client } => online_status(&client, resource.as_deref()).await?,
            };
            print_status(&report);
            anyhow::ensure!(report.unreadable.is_empty(), "{} objects cannot be read with the current configuration", report.unreadable.len());
        }
        StorageCommand::Migrate(Target { data_dir, resource, encryption_provider_config }) => match open(data_dir, encryption_provider_config).await? {
            Mode::Offline { store, enc, .. } => {
                let pb = bar(0);
                let report = storage_admin::migrate_offline(store.as_ref(), &enc.current(), resource.as_deref(), &|done, total| {
                    pb.set_length(total);
                    pb.set_position(done);
                })
                .await
                .map_err(anyhow::Error::msg)?;
                pb.finish();
                println!("rewrote {} objects; {} were already current", report.rewritten, report.already_current);
                anyhow::ensure!(report.unreadable.is_empty(), "{} objects could not be read: {:?}", report.unreadable.len(), report.unreadable);
            }
            Mode::Online { client } => {
                let report = online_status(&client, resource.as_deref()).await?;
                let pb = bar(report.stale.len() as u64);
                let mut rewritten = 0;
                for key in &report.stale {
                    if rewrite_online(&client, key).await? {
                        rewritten += 1;
                    }
                    pb.inc(1);
                }
                pb.finish();
                client.request::<Value>(http::Request::post("/lockbox/v1/storage/compact").body(vec![])?).await?;
                println!("rewrote {rewritten} objects through the API server");
                let after = online_status(&client, resource.as_deref()).await?;
                anyhow::ensure!(after.stale.is_empty(), "{} objects are still on old keys (written concurrently?); run migrate again", after.stale.len());
            }
        },
    }
    Ok(())
}

/// The API path of a storage key, for the kinds lockbox serves.
fn api_path(key: &str) -> Option<String> {
    let rest = key.strip_prefix("/registry/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let res = api::kinds::ALL.iter().find(|r| r.plural == parts[0])?;
    let base = if res.group.is_empty() { format!("/api/{}", res.version) } else { format!("/apis/{}/{}", res.group, res.version) };
    Some(match parts.as_slice() {
        [plural, ns, name] => format!("{base}/namespaces/{ns}/{plural}/{name}"),
        [plural, name] => format!("{base}/{plural}/{name}"),
        _ => return None,
    })
}

/// A no-op update: the server rewrites the object if it is stale. Retries on conflict.
async fn rewrite_online(client: &kube::Client, key: &str) -> Result<bool> {
    let Some(path) = api_path(key) else { return Ok(false) };
    for _ in 0..5 {
        let obj: Value = match client.request(http::Request::get(&path).body(vec![])?).await {
            Ok(v) => v,
            Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let body = serde_json::to_vec(&obj)?;
        match client.request::<Value>(http::Request::put(&path).header("Content-Type", "application/json").body(body)?).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() => continue,
            Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("{key} kept changing; run migrate again")
}
