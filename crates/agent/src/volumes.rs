//! Pod volumes: their contents (configMap, secret, projected, downwardAPI, serviceAccountToken,
//! emptyDir) and the kubelet's atomic writer layout
//! (pkg/volume/util/atomic_writer.go): the files live in a timestamped directory, `..data` is a
//! symlink to it, and each top-level entry is a symlink through `..data`. An update writes a new
//! directory and swaps `..data` with one rename, so a reader never sees half an update.
//!
//! Every pod's volumes live on a tmpfs of its own: Secret and token contents never touch disk.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Volume};
use kube::{Api, Client, ResourceExt};

use crate::env::{field_value, resource_value, short};

/// A file of a volume: relative path, contents, mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Why a volume cannot be populated (a FailedMount event), or that it needs no files.
pub enum Contents {
    Files(Vec<File>),
    /// emptyDir: a plain directory, populated by the containers.
    Empty,
}

/// What token a projected volume needs, for the caller to request.
pub trait TokenSource: Send + Sync {
    fn token(&self, pod: &Pod, audience: &str, expiration: i64) -> futures::future::BoxFuture<'_, Result<String, String>>;
}

fn items_or_all(
    keys: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    mode: u32,
    kind: &str,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Vec<File>, String> {
    match items {
        None => Ok(keys.into_iter().map(|(k, v)| File { path: k, data: v, mode }).collect()),
        Some(items) => {
            let mut out = Vec::new();
            for it in items {
                match keys.get(&it.key) {
                    Some(v) => out.push(File { path: it.path.clone(), data: v.clone(), mode: it.mode.map(|m| m as u32).unwrap_or(mode) }),
                    None if optional => {}
                    None => return Err(format!("configuration for {kind} {ns}/{name} has no key {:?}", it.key)),
                }
            }
            Ok(out)
        }
    }
}

async fn configmap(client: &Client, ns: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let cm: Option<ConfigMap> = Api::namespaced(client.clone(), ns).get_opt(name).await.map_err(|e| short(&e))?;
    Ok(cm.map(|cm| {
        let mut m: BTreeMap<String, Vec<u8>> = cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        for (k, v) in cm.binary_data.unwrap_or_default() {
            m.insert(k, v.0);
        }
        m
    }))
}

async fn secret(client: &Client, ns: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let s: Option<Secret> = Api::namespaced(client.clone(), ns).get_opt(name).await.map_err(|e| short(&e))?;
    Ok(s.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()))
}

/// Computes a volume's files from the API.
pub async fn contents(client: &Client, pod: &Pod, v: &Volume, tokens: &dyn TokenSource, host_ip: &str) -> Result<Contents, String> {
    let ns = pod.namespace().unwrap_or_default();
    if v.empty_dir.is_some() {
        return Ok(Contents::Empty);
    }
    if let Some(cm) = &v.config_map {
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        let optional = cm.optional == Some(true);
        return match configmap(client, &ns, &cm.name).await? {
            Some(keys) => Ok(Contents::Files(items_or_all(keys, cm.items.as_ref(), mode, "configmap", &ns, &cm.name, optional)?)),
            None if optional => Ok(Contents::Files(vec![])),
            None => Err(format!("configmap {:?} not found", cm.name)),
        };
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        let optional = s.optional == Some(true);
        return match secret(client, &ns, &name).await? {
            Some(keys) => Ok(Contents::Files(items_or_all(keys, s.items.as_ref(), mode, "secret", &ns, &name, optional)?)),
            None if optional => Ok(Contents::Files(vec![])),
            None => Err(format!("secret {name:?} not found")),
        };
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(0o644) as u32;
        let mut files = Vec::new();
        for it in d.items.clone().unwrap_or_default() {
            files.push(File { path: it.path.clone(), data: downward(pod, &it, host_ip)?.into_bytes(), mode: it.mode.map(|m| m as u32).unwrap_or(mode) });
        }
        return Ok(Contents::Files(files));
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        let mut files = Vec::new();
        for src in p.sources.clone().unwrap_or_default() {
            if let Some(cm) = &src.config_map {
                let optional = cm.optional == Some(true);
                match configmap(client, &ns, &cm.name).await? {
                    Some(keys) => files.extend(items_or_all(keys, cm.items.as_ref(), mode, "configmap", &ns, &cm.name, optional)?),
                    None if optional => {}
                    None => return Err(format!("configmap {:?} not found", cm.name)),
                }
            }
            if let Some(s) = &src.secret {
                let optional = s.optional == Some(true);
                match secret(client, &ns, &s.name).await? {
                    Some(keys) => files.extend(items_or_all(keys, s.items.as_ref(), mode, "secret", &ns, &s.name, optional)?),
                    None if optional => {}
                    None => return Err(format!("secret {:?} not found", s.name)),
                }
            }
            if let Some(d) = &src.downward_api {
                for it in d.items.clone().unwrap_or_default() {
                    files.push(File {
                        path: it.path.clone(),
                        data: downward(pod, &it, host_ip)?.into_bytes(),
                        mode: it.mode.map(|m| m as u32).unwrap_or(mode),
                    });
                }
            }
            if let Some(t) = &src.service_account_token {
                let token = tokens.token(pod, t.audience.as_deref().unwrap_or_default(), t.expiration_seconds.unwrap_or(3600)).await?;
                // Token files are readable only by their owner whatever the default mode says.
                files.push(File { path: t.path.clone(), data: token.into_bytes(), mode: mode & 0o600 | 0o600 });
            }
        }
        return Ok(Contents::Files(files));
    }
    Err(format!("volume {:?} has a type lockbox does not support (hostPath, persistent volumes and the like are not available on a process runtime)", v.name))
}

fn downward(pod: &Pod, it: &k8s_openapi::api::core::v1::DownwardAPIVolumeFile, host_ip: &str) -> Result<String, String> {
    if let Some(f) = &it.field_ref {
        return field_value(pod, &f.field_path, host_ip);
    }
    if let Some(r) = &it.resource_field_ref {
        let name = r.container_name.clone().unwrap_or_default();
        let c = pod.spec.as_ref().and_then(|s| s.containers.iter().find(|c| c.name == name)).cloned().ok_or_else(|| format!("container {name:?} not found"))?;
        return resource_value(&c, &r.resource, r.divisor.as_ref().map(|q| q.0.as_str()));
    }
    Ok(String::new())
}

/// Writes `files` into `dir` with the atomic-writer layout; a no-op when nothing changed.
/// Returns whether anything was written.
pub fn write_atomic(dir: &Path, files: &[File]) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link) {
        if same_files(&dir.join(&current), files) {
            return Ok(false);
        }
    }
    let ts = jiff::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.%f").to_string();
    let ts_dir = dir.join(&ts);
    std::fs::create_dir(&ts_dir)?;
    for f in files {
        // The API server refuses such paths; the agent, writing as root, refuses them again.
        let escapes = f.path.is_empty() || f.path.starts_with('/') || f.path.starts_with("..") || f.path.split('/').any(|part| part == "..");
        if escapes {
            let _ = std::fs::remove_dir_all(&ts_dir);
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("volume file path {:?} leaves the volume", f.path)));
        }
        let p = ts_dir.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &f.data)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts, &tmp)?;
    std::fs::rename(&tmp, &data_link)?;
    // One symlink per top-level entry, through ..data; stale ones go.
    let tops: std::collections::BTreeSet<String> = files.iter().filter_map(|f| f.path.split('/').next().map(String::from)).collect();
    for t in &tops {
        let link = dir.join(t);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(PathBuf::from("..data").join(t), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("..") && !tops.contains(&n) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn same_files(dir: &Path, files: &[File]) -> bool {
    let mut count = 0;
    for f in files {
        let p = dir.join(&f.path);
        match (std::fs::read(&p), std::fs::metadata(&p)) {
            (Ok(d), Ok(m)) if d == f.data && m.permissions().mode() & 0o7777 == f.mode => count += 1,
            _ => return false,
        }
    }
    fn walk(d: &Path) -> usize {
        std::fs::read_dir(d).map(|rd| rd.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()).unwrap_or(0)
    }
    count == walk(dir)
}

/// Mounts a tmpfs at `dir` (mode 0750) unless one is there already.
/// Mounts a tmpfs on `dir` unless one is there already. /proc/self/mounts lists absolute,
/// canonical paths with space, tab, newline and backslash escaped in octal, so `dir` is
/// compared in that form (a relative data dir once stacked a fresh tmpfs on every pass).
pub fn mount_tmpfs(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    let target = dir.to_string_lossy().into_owned();
    let escaped = target.replace('\\', "\\134").replace(' ', "\\040").replace('\t', "\\011").replace('\n', "\\012");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts.lines().any(|l| l.split(' ').nth(1) == Some(escaped.as_str())) {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).map_err(|e| std::io::Error::other(e.to_string()));
    let (src, fstype, tgt, opts) = (c("tmpfs")?, c("tmpfs")?, c(&target)?, c("mode=0750")?);
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fstype.as_ptr(), libc::MS_NOSUID | libc::MS_NODEV, opts.as_ptr() as *const libc::c_void) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The clean-up after a crash, run before the agent does anything else: a killed agent left
/// its pods' tmpfs mounts (Secret values, in memory) behind, and no container outlives its
/// agent, so no pod uses one. Every mount under `pods_dir` is detached, deepest first, and
/// every pod's `volumes` directory removed; pods that still exist get theirs anew. Returns how
/// many mounts were removed.
pub fn unmount_all_under(pods_dir: &Path) -> usize {
    let Ok(root) = std::fs::canonicalize(pods_dir) else { return 0 };
    let prefix = format!("{}/", root.to_string_lossy());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<String> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).map(unescape_mount_path).filter(|p| p.starts_with(&prefix)).collect();
    // Deepest first; a path listed twice (mounts stacked there) is unmounted twice.
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in &points {
        unmount(Path::new(p));
    }
    if let Ok(pods) = std::fs::read_dir(&root) {
        for pod in pods.flatten() {
            let volumes = pod.path().join("volumes");
            if volumes.exists() {
                if let Err(e) = std::fs::remove_dir_all(&volumes) {
                    tracing::warn!(path = %volumes.display(), error = %e, "could not remove a stale volume directory");
                }
            }
        }
    }
    points.len()
}

/// /proc/self/mounts escapes space, tab, newline and backslash in octal.
fn unescape_mount_path(p: &str) -> String {
    p.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

pub fn unmount(dir: &Path) {
    if let Ok(t) = std::ffi::CString::new(dir.to_string_lossy().as_bytes()) {
        unsafe {
            libc::umount2(t.as_ptr(), libc::MNT_DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_is_mounted_once_even_on_a_relative_path() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let base = std::env::current_dir().unwrap().join(format!("target/mount-test-{}", std::process::id()));
        let relative = base.strip_prefix(std::env::current_dir().unwrap()).unwrap().join("vol");
        let count =
            || std::fs::read_to_string("/proc/self/mounts").unwrap().lines().filter(|l| l.contains(&format!("mount-test-{}", std::process::id()))).count();
        mount_tmpfs(&relative).unwrap();
        mount_tmpfs(&relative).unwrap();
        mount_tmpfs(&base.join("vol")).unwrap();
        let mounted = count();
        unmount(&base.join("vol"));
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(mounted, 1, "one tmpfs, however the path is spelled");
        // What a crashed agent leaves behind is found and removed.
        let pods = base.join("pods");
        mount_tmpfs(&pods.join("uid-1/volumes")).unwrap();
        mount_tmpfs(&pods.join("uid 2/volumes")).unwrap();
        std::fs::write(pods.join("uid-1/volumes/token"), "x").unwrap();
        assert_eq!(unmount_all_under(&pods), 2);
        assert!(!pods.join("uid-1/volumes").exists() && !pods.join("uid 2/volumes").exists());
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(&*std::fs::canonicalize(&pods).unwrap().to_string_lossy()));
    }

    #[test]
    fn atomic_writer_layout_and_update() {
        let dir = std::env::temp_dir().join(format!("lockbox-aw-{}", uuid::Uuid::new_v4()));
        let f = |p: &str, d: &str, mode: u32| File { path: p.into(), data: d.as_bytes().to_vec(), mode };
        assert!(write_atomic(&dir, &[f("A", "1", 0o644), f("sub/B", "2", 0o600)]).unwrap());
        assert_eq!(std::fs::read_link(dir.join("A")).unwrap(), PathBuf::from("..data/A"));
        assert!(std::fs::read_link(dir.join("..data")).unwrap().to_string_lossy().starts_with(".."));
        assert_eq!(std::fs::read_to_string(dir.join("sub/B")).unwrap(), "2");
        assert_eq!(std::fs::metadata(dir.join("sub/B")).unwrap().permissions().mode() & 0o777, 0o600);
        // A reader holding the old file keeps reading the old content; new opens see the new.
        let mut held = std::fs::File::open(dir.join("A")).unwrap();
        assert!(!write_atomic(&dir, &[f("A", "1", 0o644), f("sub/B", "2", 0o600)]).unwrap(), "unchanged: no write");
        assert!(write_atomic(&dir, &[f("A", "changed", 0o644)]).unwrap());
        let mut old = String::new();
        std::io::Read::read_to_string(&mut held, &mut old).unwrap();
        assert_eq!(old, "1");
        assert_eq!(std::fs::read_to_string(dir.join("A")).unwrap(), "changed");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err(), "entries gone from the data go");
        let ts_dirs = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("..2")).count();
        assert_eq!(ts_dirs, 1, "the old timestamped directory is removed");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
