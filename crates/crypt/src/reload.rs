//! The encryption configuration in force, reloaded when its file changes (kube-apiserver's
//! `--encryption-provider-config-automatic-reload`).
//!
//! The file is hashed periodically; a changed file is parsed and built in full before it
//! replaces the old configuration. A bad file is refused and logged, and the old configuration
//! stays in force: the server never falls back to plaintext because of a typo.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::{EncryptionConfig, ResourceTransformers};
use crate::kms::KmsV2;
use crate::{Error, ReadInfo, Transformer};

pub type GroupOf = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// The live configuration.
pub struct Reloading {
    path: PathBuf,
    group_of: GroupOf,
    current: RwLock<Arc<ResourceTransformers>>,
    kms: RwLock<Arc<Mutex<Vec<Arc<KmsV2>>>>>,
    hash: Mutex<[u8; 32]>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

fn build(path: &Path, group_of: &GroupOf) -> Result<(ResourceTransformers, Arc<Mutex<Vec<Arc<KmsV2>>>>), String> {
    let kms = Arc::new(Mutex::new(Vec::new()));
    let factory = crate::kms::factory(kms.clone());
    let config = EncryptionConfig::load(path, &factory)?;
    let group_of = group_of.clone();
    Ok((ResourceTransformers { config, group_of: Box::new(move |r| group_of(r)) }, kms))
}

fn file_hash(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

impl Reloading {
    /// Loads the file; an error here stops the server from starting.
    pub fn load(path: &Path, group_of: GroupOf) -> Result<Arc<Reloading>, String> {
        let (rt, kms) = build(path, &group_of)?;
        Ok(Arc::new(Reloading {
            path: path.to_path_buf(),
            group_of,
            current: RwLock::new(Arc::new(rt)),
            kms: RwLock::new(kms),
            hash: Mutex::new(file_hash(path).unwrap_or_default()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }))
    }

    pub fn current(&self) -> Arc<ResourceTransformers> {
        self.current.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The KMS v2 providers of the configuration in force.
    pub fn kms_providers(&self) -> Vec<Arc<KmsV2>> {
        self.kms.read().ok().and_then(|k| k.lock().ok().map(|v| v.clone())).unwrap_or_default()
    }

    /// Reloads if the file changed. Returns Some(result) when it tried.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let hash = file_hash(&self.path)?;
        let mut last = self.hash.lock().ok()?;
        if *last == hash {
            return None;
        }
        *last = hash;
        drop(last);
        Some(match build(&self.path, &self.group_of) {
            Ok((rt, kms)) => {
                if let Ok(mut c) = self.current.write() {
                    *c = Arc::new(rt);
                }
                if let Ok(mut k) = self.kms.write() {
                    *k = kms;
                }
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                crate::metrics::reload(true);
                tracing::info!(path = %self.path.display(), "encryption configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                crate::metrics::reload(false);
                tracing::error!(path = %self.path.display(), error = %e, "error processing encryption config file; the previous configuration stays in force");
                Err(e)
            }
        })
    }

    /// Checks the file every `every` until the process ends.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}

impl Transformer for Reloading {
    fn transform_to_storage(&self, plaintext: &[u8], context: &str) -> Result<Bytes, Error> {
        self.current().transform_to_storage(plaintext, context)
    }
    fn transform_from_storage(&self, stored: &[u8], context: &str) -> Result<(Bytes, ReadInfo), Error> {
        self.current().transform_from_storage(stored, context)
    }
}
