//! The audit trail: `audit.k8s.io/v1` Event JSON lines, chosen by an audit Policy
//! (`--audit-policy-file`, first matching rule wins), written to `--audit-log-path` and rotated
//! by size.
//!
//! Without a policy file, every request that touches Secrets or ServiceAccount tokens is
//! recorded at Metadata level, so "who read this secret, when, from where" always has an answer.
//! Events never carry object data: lockbox records the Request and RequestResponse levels as
//! Metadata, so no Secret value can reach the audit log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use auth::{Attributes, UserInfo};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct GroupResources {
    group: String,
    resources: Vec<String>,
    #[serde(rename = "resourceNames")]
    resource_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<String>,
}

pub const DEFAULT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources:
  - group: \"\"
    resources: [secrets, serviceaccounts/token]
- level: Metadata
  resources:
  - group: authentication.k8s.io
    resources: [tokenreviews]
- level: None
";

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        let p: Policy = serde_norway::from_str(text).map_err(|e| format!("audit policy: {e}"))?;
        if p.kind != "Policy" || !p.api_version.starts_with("audit.k8s.io/") {
            return Err(format!("audit policy: expected apiVersion audit.k8s.io/v1 and kind Policy, got {:?} {:?}", p.api_version, p.kind));
        }
        Ok(p)
    }

    /// The level for a request: the first rule that matches, else None.
    pub fn level(&self, a: &Attributes) -> Level {
        self.rules.iter().find(|r| r.matches(a)).map(|r| r.level).unwrap_or(Level::None)
    }

    /// Is `stage` left out for this request (the policy's omitStages and its rule's)?
    fn omits(&self, a: &Attributes, stage: &str) -> bool {
        self.omit_stages.iter().any(|s| s == stage) || self.rules.iter().find(|r| r.matches(a)).is_some_and(|r| r.omit_stages.iter().any(|s| s == stage))
    }
}

impl Rule {
    fn matches(&self, a: &Attributes) -> bool {
        if !self.users.is_empty() && !self.users.contains(&a.user.name) {
            return false;
        }
        if !self.user_groups.is_empty() && !a.user.groups.iter().any(|g| self.user_groups.contains(g)) {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&a.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            if !a.resource_request {
                return false;
            }
            if !self.namespaces.is_empty() && !self.namespaces.contains(&a.namespace) {
                return false;
            }
            if self.resources.is_empty() {
                return true;
            }
            let combined = if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
            return self.resources.iter().any(|gr| {
                gr.group == a.api_group
                    && (gr.resources.is_empty()
                        || gr.resources.iter().any(|r| {
                            r == "*"
                                || *r == combined
                                || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
                                || r.strip_suffix("/*").is_some_and(|base| base == a.resource)
                        }))
                    && (gr.resource_names.is_empty() || gr.resource_names.contains(&a.name))
            });
        }
        if !self.non_resource_urls.is_empty() {
            return !a.resource_request
                && self.non_resource_urls.iter().any(|u| u == "*" || *u == a.path || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*'))));
        }
        true
    }
}

/// What one request did, for its event.
pub struct Record<'a> {
    pub attrs: &'a Attributes,
    pub authenticated: &'a UserInfo,
    pub impersonated: bool,
    pub request_uri: &'a str,
    pub source_ip: String,
    pub user_agent: &'a str,
    pub api_version: &'a str,
    pub code: u16,
    pub status: Option<Value>,
    pub decision: Option<(&'static str, String)>,
    pub received: jiff::Timestamp,
}

pub struct AuditLog {
    pub policy: Policy,
    path: PathBuf,
    max_bytes: u64,
    max_backups: usize,
    file: Mutex<Option<File>>,
}

fn micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl AuditLog {
    pub fn open(path: &Path, policy: Policy, max_megabytes: u64, max_backups: usize) -> Result<AuditLog, String> {
        Self::open_bytes(path, policy, max_megabytes.max(1) * 1024 * 1024, max_backups)
    }

    fn open_bytes(path: &Path, policy: Policy, max_bytes: u64, max_backups: usize) -> Result<AuditLog, String> {
        let log = AuditLog { policy, path: path.to_path_buf(), max_bytes, max_backups, file: Mutex::new(None) };
        *log.file.lock().map_err(|_| "lock")? = Some(log.open_file()?);
        Ok(log)
    }

    /// The log file: `-` is standard output, as with kube-apiserver's `--audit-log-path -`; a
    /// missing directory is created.
    fn open_file(&self) -> Result<File, String> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::OpenOptionsExt;
        if self.to_stdout() {
            let fd = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| format!("audit log on standard output: {e}"))?;
            return Ok(File::from(fd));
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating the audit log's directory {}: {e}", dir.display()))?;
        }
        OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path).map_err(|e| format!("opening audit log {}: {e}", self.path.display()))
    }

    fn to_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }

    /// Moves a full log aside (`audit-<time>.log`) and keeps `max_backups` of them.
    fn rotate(&self, file: &mut Option<File>) {
        let stem = self.path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit").to_string();
        let backup = self.path.with_file_name(format!("{stem}-{}.log", jiff::Timestamp::now().strftime("%Y-%m-%dT%H-%M-%S%.3f")));
        if std::fs::rename(&self.path, &backup).is_err() {
            return;
        }
        if let Some(dir) = self.path.parent() {
            let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{stem}-")) && n.ends_with(".log")))
                        .collect()
                })
                .unwrap_or_default();
            backups.sort();
            while backups.len() > self.max_backups {
                let _ = std::fs::remove_file(backups.remove(0));
            }
        }
        *file = self.open_file().ok();
    }

    pub fn record(&self, r: Record) {
        if self.policy.level(r.attrs) == Level::None {
            return;
        }
        // A watch is recorded when its response starts (it has no end yet); every other
        // request once it is complete.
        let stage = if r.attrs.verb == "watch" && r.code < 300 { "ResponseStarted" } else { "ResponseComplete" };
        if self.policy.omits(r.attrs, stage) {
            return;
        }
        let mut event = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": uuid::Uuid::new_v4().to_string(), "stage": stage,
            "requestURI": r.request_uri, "verb": r.attrs.verb,
            // Nobody, for a failed authentication: kube-apiserver writes an empty user.
            "user": if r.authenticated.name.is_empty() { json!({}) } else { r.authenticated.to_json() },
            "sourceIPs": [r.source_ip], "userAgent": r.user_agent,
            "responseStatus": {"metadata": {}, "code": r.code},
            "requestReceivedTimestamp": micro_time(r.received), "stageTimestamp": micro_time(jiff::Timestamp::now()),
        });
        if r.impersonated {
            event["impersonatedUser"] = r.attrs.user.to_json();
        }
        if r.attrs.resource_request {
            let mut o = json!({"resource": r.attrs.resource, "apiVersion": r.api_version});
            for (k, v) in [("namespace", &r.attrs.namespace), ("name", &r.attrs.name), ("apiGroup", &r.attrs.api_group), ("subresource", &r.attrs.subresource)]
            {
                if !v.is_empty() {
                    o[k] = json!(v);
                }
            }
            event["objectRef"] = o;
        }
        if let Some(st) = r.status {
            // A Status names objects and failures, never their data.
            for k in ["status", "message", "reason", "details"] {
                if let Some(v) = st.get(k) {
                    event["responseStatus"][k] = v.clone();
                }
            }
        }
        if let Some((decision, reason)) = r.decision {
            let mut ann = json!({"authorization.k8s.io/decision": decision});
            if !reason.is_empty() {
                ann["authorization.k8s.io/reason"] = json!(reason);
            }
            event["annotations"] = ann;
        }
        let mut line = event.to_string();
        line.push('\n');
        let Ok(mut guard) = self.file.lock() else { return };
        if !self.to_stdout() && guard.as_ref().and_then(|f| f.metadata().ok()).is_some_and(|m| m.len() + line.len() as u64 > self.max_bytes) {
            self.rotate(&mut guard);
        }
        if let Some(f) = guard.as_mut() {
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::warn!(error = %e, "cannot write the audit log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(resource: &str, sub: &str, verb: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: "ns".into(),
            resource_request: true,
            ..Default::default()
        }
    }

    /// A watch is recorded at ResponseStarted; a policy's omitStages leaves stages out.
    #[test]
    fn watch_stage_and_omit_stages() {
        let dir = std::env::temp_dir().join(format!("lockbox-audit-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested/audit.log");
        let policy =
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verbs: [list]\n  omitStages: [ResponseComplete]\n- level: Metadata\n";
        let log = AuditLog::open_bytes(&path, Policy::parse(policy).unwrap(), 1 << 20, 1).unwrap();
        let user = UserInfo { name: "u".into(), ..Default::default() };
        for verb in ["watch", "list", "get"] {
            log.record(Record {
                attrs: &attrs("secrets", "", verb),
                authenticated: &user,
                impersonated: false,
                request_uri: "/api/v1/namespaces/ns/secrets",
                source_ip: "127.0.0.1".into(),
                user_agent: "t",
                api_version: "v1",
                code: 200,
                status: None,
                decision: None,
                received: jiff::Timestamp::now(),
            });
        }
        let stages: Vec<(String, String)> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|e| (e["verb"].as_str().unwrap().to_string(), e["stage"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(stages, vec![("watch".to_string(), "ResponseStarted".to_string()), ("get".to_string(), "ResponseComplete".to_string())]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_backups() {
        let dir = std::env::temp_dir().join(format!("lockbox-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = AuditLog::open_bytes(&dir.join("audit.log"), Policy::parse(DEFAULT_POLICY).unwrap(), 2000, 2).unwrap();
        let a = Attributes {
            verb: "get".into(),
            resource: "secrets".into(),
            namespace: "ns".into(),
            name: "s".into(),
            resource_request: true,
            ..Default::default()
        };
        let user = UserInfo { name: "u".into(), ..Default::default() };
        for _ in 0..40 {
            log.record(Record {
                attrs: &a,
                authenticated: &user,
                impersonated: false,
                request_uri: "/api/v1/namespaces/ns/secrets/s",
                source_ip: "127.0.0.1".into(),
                user_agent: "t",
                api_version: "v1",
                code: 200,
                status: None,
                decision: None,
                received: jiff::Timestamp::now(),
            });
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(files.len(), 3, "the live log and two backups: {files:?}");
        for f in files {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len <= 2000, "{f:?} has {len} bytes");
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                assert_eq!(serde_json::from_str::<Value>(line).unwrap()["kind"], "Event");
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn default_policy_records_secret_access_only() {
        let p = Policy::parse(DEFAULT_POLICY).unwrap();
        assert_eq!(p.level(&attrs("secrets", "", "get")), Level::Metadata);
        assert_eq!(p.level(&attrs("secrets", "", "watch")), Level::Metadata);
        assert_eq!(p.level(&attrs("serviceaccounts", "token", "create")), Level::Metadata);
        assert_eq!(p.level(&attrs("configmaps", "", "get")), Level::None);
        let custom = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  verbs: [watch]\n- level: Metadata\n  resources: [{group: \"\", resources: [\"pods/*\"]}]\n").unwrap();
        assert_eq!(custom.level(&attrs("pods", "", "get")), Level::Metadata, "pods/* matches pods itself in audit policies");
        assert_eq!(custom.level(&attrs("pods", "log", "get")), Level::Metadata);
        assert_eq!(custom.level(&attrs("pods", "", "watch")), Level::None);
        assert!(Policy::parse("kind: Nope").is_err());
    }
}
