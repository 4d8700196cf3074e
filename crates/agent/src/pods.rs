//! The pod worker: makes the pods bound to this node real. For each pod it mounts a tmpfs for
//! the volumes and keeps them populated, builds each container's environment, runs each
//! container as a process (`container-init`), restarts it per `restartPolicy` with the kubelet's
//! back-off (10 s doubling to 5 min), reports status, and on deletion stops the containers
//! (SIGTERM, the grace period, then SIGKILL), cleans up, and removes the pod object.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::env;
use crate::init::{Mount, Spec};
use crate::volumes::{self, Contents, TokenSource};

pub struct ContainerState {
    child: Option<tokio::process::Child>,
    /// Runs started so far; run `n` logs to `n.log`. The restart count is one less (the kubelet
    /// counts a restart when the container starts again).
    pub runs: i32,
    started_at: Option<String>,
    last_terminated: Option<Value>,
    terminated: Option<Value>,
    waiting: Option<(String, String)>,
    backoff: Duration,
    backoff_until: Option<Instant>,
    pub env: Vec<(String, String)>,
    pub pid_file: PathBuf,
    pub log_dir: PathBuf,
    pub working_dir: Option<String>,
}

pub struct PodState {
    pub uid: String,
    pub dir: PathBuf,
    pub containers: HashMap<String, ContainerState>,
    tokens: HashMap<String, (String, Instant, Duration)>,
    volume_error: Option<String>,
    last_status: Value,
    start_time: String,
    events: std::collections::BTreeSet<String>,
}

pub struct Agent {
    pub client: Client,
    pub node: String,
    pub root: PathBuf,
    pub host_ip: String,
    pub api_host: String,
    pub api_port: u16,
    pub exe: PathBuf,
    /// Pods by namespace/name.
    pub pods: Mutex<HashMap<String, PodState>>,
    /// Uids of pods whose containers are being stopped, each by its own task: one pod's grace
    /// period must not hold up every other pod (the kubelet stops pods in parallel).
    pub terminating: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

struct Tokens<'a> {
    agent: &'a Agent,
    cache: std::sync::Mutex<&'a mut HashMap<String, (String, Instant, Duration)>>,
}

impl TokenSource for Tokens<'_> {
    fn token(&self, pod: &Pod, audience: &str, expiration: i64) -> futures::future::BoxFuture<'_, Result<String, String>> {
        let key = format!("{audience}/{expiration}");
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        let pod = pod.clone();
        let audience = audience.to_string();
        Box::pin(async move {
            // Refresh at 80% of the token's lifetime, as the kubelet does.
            if let Some((t, at, life)) = cached {
                if at.elapsed() < life.mul_f64(0.8) {
                    return Ok(t);
                }
            }
            let ns = pod.namespace().unwrap_or_default();
            let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
            let mut spec =
                json!({"expirationSeconds": expiration, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.name_any(), "uid": pod.uid()}});
            if !audience.is_empty() {
                spec["audiences"] = json!([audience]);
            }
            let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
            let req = http::Request::post(format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"))
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default())
                .map_err(|e| e.to_string())?;
            let v: Value = self.agent.client.request(req).await.map_err(|e| env::short(&e))?;
            let token = v["status"]["token"].as_str().ok_or("no token in TokenRequest status")?.to_string();
            if let Ok(mut c) = self.cache.lock() {
                c.insert(key, (token.clone(), Instant::now(), Duration::from_secs(expiration.max(600) as u64)));
            }
            Ok(token)
        })
    }
}

impl Agent {
    fn key(pod: &Pod) -> String {
        format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
    }

    fn service_env(&self, pod: &Pod) -> Vec<(String, String)> {
        let (h, p) = (&self.api_host, self.api_port);
        vec![
            ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("HOSTNAME".into(), pod.name_any()),
            ("HOME".into(), "/root".into()),
            ("KUBERNETES_SERVICE_HOST".into(), h.clone()),
            ("KUBERNETES_SERVICE_PORT".into(), p.to_string()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".into(), p.to_string()),
            ("KUBERNETES_PORT".into(), format!("tcp://{h}:{p}")),
            (format!("KUBERNETES_PORT_{p}_TCP"), format!("tcp://{h}:{p}")),
            (format!("KUBERNETES_PORT_{p}_TCP_PROTO"), "tcp".into()),
            (format!("KUBERNETES_PORT_{p}_TCP_PORT"), p.to_string()),
            (format!("KUBERNETES_PORT_{p}_TCP_ADDR"), h.clone()),
        ]
    }

    async fn event(&self, pod: &Pod, kind: &str, reason: &str, message: &str) {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(self.client.clone(), &ns);
        let ev = json!({
            "metadata": {"generateName": format!("{}.", pod.name_any()), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "namespace": ns, "uid": pod.uid()},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": now(), "lastTimestamp": now(),
        });
        if let Ok(ev) = serde_json::from_value(ev) {
            let _ = api.create(&PostParams::default(), &ev).await;
        }
    }

    /// One pass over every pod bound to this node.
    pub async fn reconcile_all(self: &Arc<Self>) -> kube::Result<()> {
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let pods = Api::<Pod>::all(self.client.clone()).list(&lp).await?.items;
        let mut seen = std::collections::BTreeSet::new();
        for pod in &pods {
            seen.insert(Self::key(pod));
            if let Err(e) = self.reconcile(pod).await {
                tracing::warn!(pod = %Self::key(pod), error = %e, "pod reconcile failed");
            }
        }
        // Pods gone from the API (deleted with grace 0 elsewhere): stop what is left of them.
        let stale: Vec<String> = self.pods.lock().await.keys().filter(|k| !seen.contains(*k)).cloned().collect();
        for k in stale {
            if let Some(mut st) = self.pods.lock().await.remove(&k) {
                self.stop_all(&mut st, Duration::from_secs(0)).await;
                self.cleanup(&st);
            }
        }
        Ok(())
    }

    /// SIGTERM to every container at once, then SIGKILL to those still running when the grace
    /// period ends.
    async fn stop_all(&self, st: &mut PodState, grace: Duration) {
        // A grace period of i64::MAX seconds is valid API input; a deadline that far is not.
        let deadline = tokio::time::Instant::now() + grace.min(Duration::from_secs(100 * 365 * 86400));
        for c in st.containers.values() {
            if let Some(pid) = c.child.as_ref().and_then(|child| child.id()) {
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        for c in st.containers.values_mut() {
            if let Some(child) = c.child.as_mut() {
                if tokio::time::timeout_at(deadline, child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
            c.child = None;
        }
    }

    fn cleanup(&self, st: &PodState) {
        volumes::unmount(&st.dir.join("volumes"));
        let _ = std::fs::remove_dir_all(&st.dir);
    }

    /// Stops every container (a short grace period) and removes the pods' volumes.
    pub async fn shutdown(&self) {
        let mut pods = self.pods.lock().await;
        for (_, mut st) in std::mem::take(&mut *pods) {
            self.stop_all(&mut st, Duration::from_secs(2)).await;
            self.cleanup(&st);
        }
    }

    async fn reconcile(self: &Arc<Self>, pod: &Pod) -> anyhow::Result<()> {
        let key = Self::key(pod);
        let uid = pod.uid().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let ns = pod.namespace().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            if !self.terminating.lock().expect("terminating lock").insert(uid.clone()) {
                return Ok(()); // already being stopped
            }
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
            let st = self.pods.lock().await.remove(&key);
            let (agent, name) = (self.clone(), pod.name_any());
            tokio::spawn(async move {
                if let Some(mut st) = st {
                    agent.stop_all(&mut st, Duration::from_secs(grace)).await;
                    agent.cleanup(&st);
                }
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..Default::default()
                };
                let _ = Api::<Pod>::namespaced(agent.client.clone(), &ns).delete(&name, &dp).await;
                agent.terminating.lock().expect("terminating lock").remove(&uid);
            });
            return Ok(());
        }
        let mut pods = self.pods.lock().await;
        // A pod recreated under the same name is a new pod.
        if pods.get(&key).is_some_and(|st| st.uid != uid) {
            if let Some(mut old) = pods.remove(&key) {
                self.stop_all(&mut old, Duration::from_secs(0)).await;
                self.cleanup(&old);
            }
        }
        let st = pods.entry(key.clone()).or_insert_with(|| PodState {
            uid: uid.clone(),
            dir: self.root.join("pods").join(&uid),
            containers: HashMap::new(),
            tokens: HashMap::new(),
            volume_error: None,
            last_status: Value::Null,
            start_time: now(),
            events: Default::default(),
        });
        let vol_root = st.dir.join("volumes");
        volumes::mount_tmpfs(&vol_root)?;
        // Volumes first: containers do not start until every volume is populated.
        st.volume_error = None;
        {
            let tokens = Tokens { agent: self, cache: std::sync::Mutex::new(&mut st.tokens) };
            for v in spec.volumes.clone().unwrap_or_default() {
                let dir = vol_root.join(&v.name);
                match volumes::contents(&self.client, pod, &v, &tokens, &self.host_ip).await {
                    Ok(Contents::Files(files)) => {
                        volumes::write_atomic(&dir, &files)?;
                    }
                    Ok(Contents::Empty) => std::fs::create_dir_all(&dir)?,
                    Err(e) => {
                        st.volume_error = Some(format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name));
                        break;
                    }
                }
            }
        }
        if let Some(msg) = st.volume_error.clone() {
            if st.events.insert(msg.clone()) {
                self.event(pod, "Warning", "FailedMount", &msg).await;
            }
        }
        let restart = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        for c in &spec.containers {
            let cs = st.containers.entry(c.name.clone()).or_insert_with(|| {
                let mut cs = ContainerState {
                    child: None,
                    runs: 0,
                    started_at: None,
                    last_terminated: None,
                    terminated: None,
                    waiting: Some(("ContainerCreating".into(), String::new())),
                    backoff: Duration::from_secs(10),
                    backoff_until: None,
                    env: vec![],
                    pid_file: st.dir.join(format!("{}.pid", c.name)),
                    log_dir: st.dir.join("logs").join(&c.name),
                    working_dir: c.working_dir.clone(),
                };
                resume(&mut cs, pod, &c.name, &restart);
                cs
            });
            // Has a running container exited?
            if let Some(child) = cs.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let code = status.code().unwrap_or(128);
                    let term = json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": cs.started_at, "finishedAt": now(), "containerID": format!("lockbox://{}", child.id().unwrap_or(0))});
                    cs.child = None;
                    cs.terminated = Some(term.clone());
                    let again = restart == "Always" || (restart == "OnFailure" && code != 0);
                    if again {
                        cs.last_terminated = Some(term);
                        cs.terminated = None;
                        cs.backoff_until = Some(Instant::now() + cs.backoff);
                        cs.waiting = Some((
                            "CrashLoopBackOff".into(),
                            format!("back-off {}s restarting failed container={} pod={}_{}({})", cs.backoff.as_secs(), c.name, pod.name_any(), ns, uid),
                        ));
                        cs.backoff = (cs.backoff * 2).min(Duration::from_secs(300));
                    }
                }
            }
            if cs.child.is_some() || cs.terminated.is_some() || st.volume_error.is_some() {
                continue;
            }
            if cs.backoff_until.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            match self.start(pod, c, &st.dir, cs).await {
                Ok(()) => {
                    cs.waiting = None;
                    self.event(pod, "Normal", "Pulled", &format!("Container image {:?} already present on machine", c.image.clone().unwrap_or_default())).await;
                    self.event(pod, "Normal", "Created", &format!("Created container: {}", c.name)).await;
                    self.event(pod, "Normal", "Started", &format!("Started container {}", c.name)).await;
                }
                Err((reason, msg)) => {
                    if cs.waiting.as_ref().map(|w| &w.1) != Some(&msg) {
                        self.event(pod, "Warning", "Failed", &format!("Error: {msg}")).await;
                    }
                    cs.waiting = Some((reason, msg));
                }
            }
        }
        let status = self.status(pod, st);
        if status != st.last_status {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
            st.last_status = status;
        }
        Ok(())
    }

    async fn start(&self, pod: &Pod, c: &Container, pod_dir: &std::path::Path, cs: &mut ContainerState) -> Result<(), (String, String)> {
        let env = env::build(&self.client, pod, c, &self.service_env(pod), &self.host_ip).await.map_err(|e| ("CreateContainerConfigError".to_string(), e))?;
        let lookup = |k: &str| env.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut command: Vec<String> = c.command.clone().unwrap_or_default().iter().map(|a| crate::expand::expand(a, lookup)).collect();
        let mut args: Vec<String> = c.args.clone().unwrap_or_default().iter().map(|a| crate::expand::expand(a, lookup)).collect();
        // Without `command`, `args` are run as given: what an image without an ENTRYPOINT
        // (busybox, alpine, debian…) does with them, and what `kubectl run NAME -- CMD` sends.
        if command.is_empty() {
            command = std::mem::take(&mut args);
        }
        if command.is_empty() {
            return Err((
                "CreateContainerError".into(),
                format!("container {:?} has no command: lockbox runs containers as host processes and does not pull image {:?}, so its entrypoint is unknown; set `command` or `args`", c.name, c.image.clone().unwrap_or_default()),
            ));
        }
        let mut mounts = Vec::new();
        for m in c.volume_mounts.clone().unwrap_or_default() {
            let mut source = pod_dir.join("volumes").join(&m.name);
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                // subPath mounts resolve once, through ..data: they do not see updates. The
                // resolved path must stay inside the volume: the API refuses absolute and `..`
                // subPaths, and a symlink a container made in its emptyDir is followed here,
                // as root, so where it leads is checked too (the kubelet's subpath checks).
                let volume = std::fs::canonicalize(&source).unwrap_or_else(|_| source.clone());
                let resolved = std::fs::canonicalize(source.join(sub)).unwrap_or_else(|_| volume.join(sub));
                let escapes = sub.starts_with('/') || sub.split('/').any(|p| p == "..") || !resolved.starts_with(&volume);
                if escapes {
                    return Err((
                        "CreateContainerConfigError".into(),
                        format!("failed to prepare subPath for volumeMount {:?} of container {:?}", m.name, c.name),
                    ));
                }
                source = resolved;
            }
            // ConfigMap, Secret, downward API and projected volumes are read-only whatever the
            // mount says (the kubelet's volume plugins report ReadOnly for them).
            let api_data = pod
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .into_iter()
                .flatten()
                .any(|v| v.name == m.name && (v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some()));
            mounts.push(Mount {
                source: source.to_string_lossy().into_owned(),
                target: m.mount_path.clone(),
                read_only: api_data || m.read_only == Some(true),
            });
        }
        std::fs::create_dir_all(&cs.log_dir).map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
        let log_path = cs.log_dir.join(format!("{}.log", cs.runs));
        let spec = Spec {
            argv: command.into_iter().chain(args).collect(),
            working_dir: c.working_dir.clone(),
            mounts,
            pid_file: cs.pid_file.to_string_lossy().into_owned(),
        };
        let _ = std::fs::remove_file(&cs.pid_file);
        let mut child = tokio::process::Command::new(&self.exe)
            .arg("container-init")
            .env_clear()
            .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
        // Output goes to the log one timestamped line at a time, as the CRI log format has it,
        // so that `kubectl logs --since` and `--timestamps` work.
        for (stream, pipe) in [
            ("stdout", child.stdout.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
            ("stderr", child.stderr.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
        ] {
            if let Some(pipe) = pipe {
                tokio::spawn(crate::logs::copy_lines(pipe, log_path.clone(), stream));
            }
        }
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(serde_json::to_string(&spec).unwrap_or_default().as_bytes()).await;
        }
        for msg in &env.skipped {
            self.event(pod, "Warning", "InvalidEnvironmentVariableNames", msg).await;
        }
        cs.env = env.vars;
        cs.started_at = Some(now());
        cs.child = Some(child);
        cs.runs += 1;
        Ok(())
    }

    fn status(&self, pod: &Pod, st: &PodState) -> Value {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut statuses = Vec::new();
        let mut all_running = true;

        for c in &spec.containers {
            let Some(cs) = st.containers.get(&c.name) else { continue };
            let running = cs.child.is_some();
            all_running &= running;
            let state = if running {
                json!({"running": {"startedAt": cs.started_at}})
            } else if let Some(t) = &cs.terminated {
                json!({"terminated": t})
            } else {
                let (reason, message) = cs.waiting.clone().unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
                if let Some(msg) = st.volume_error.as_ref().filter(|_| reason == "ContainerCreating") {
                    let _ = msg;
                }
                let mut w = json!({"reason": reason});
                if !message.is_empty() {
                    w["message"] = json!(message);
                }
                json!({"waiting": w})
            };
            let mut s = json!({
                "name": c.name, "ready": running, "restartCount": cs.restarts(), "state": state,
                "image": c.image, "imageID": "", "started": running,
            });
            if let Some(child) = cs.child.as_ref() {
                s["containerID"] = json!(format!("lockbox://{}", child.id().unwrap_or(0)));
            }
            if let Some(last) = &cs.last_terminated {
                s["lastState"] = json!({"terminated": last});
            }
            statuses.push(s);
        }
        let phase = phase(&spec.restart_policy.clone().unwrap_or_else(|| "Always".into()), &statuses);
        let ready = if all_running { "True" } else { "False" };
        let t = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.to_string());
        let cond = |type_: &str, status: &str| json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": t.clone().unwrap_or_else(|| st.start_time.clone())});
        json!({
            "phase": phase,
            "conditions": [cond("PodReadyToStartContainers", if st.volume_error.is_none() { "True" } else { "False" }), cond("Initialized", "True"), cond("Ready", ready), cond("ContainersReady", ready), cond("PodScheduled", "True")],
            "hostIP": self.host_ip, "hostIPs": [{"ip": self.host_ip}], "podIP": self.host_ip, "podIPs": [{"ip": self.host_ip}],
            "startTime": st.start_time, "containerStatuses": statuses, "qosClass": "BestEffort",
        })
    }
}

/// A container this agent finds in the pod's status from before it started (the agent, or
/// `lockbox up`, was restarted; its processes died with it): its restart count carries on, a
/// run that was cut off is a termination with reason Unknown (exit code 255), as after a node
/// reboot, and restartPolicy decides whether it runs again. A container that had finished stays
/// finished.
fn resume(cs: &mut ContainerState, pod: &Pod, name: &str, restart_policy: &str) {
    let Some(prev) = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|cs| cs.iter().find(|c| c.name == name)) else {
        return;
    };
    let state = prev.state.clone().unwrap_or_default();
    if let Some(t) = state.terminated {
        cs.runs = prev.restart_count + 1;
        cs.terminated = serde_json::to_value(&t).ok();
        cs.waiting = None;
        return;
    }
    if state.running.is_none() && prev.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_none() {
        return; // it never ran
    }
    cs.runs = prev.restart_count + 1;
    let cut_off =
        json!({"exitCode": 255, "reason": "Unknown", "startedAt": state.running.and_then(|r| r.started_at).map(|t| t.0.to_string()), "finishedAt": now()});
    if restart_policy == "Never" {
        cs.terminated = Some(cut_off);
        cs.waiting = None;
    } else {
        cs.last_terminated = Some(cut_off);
    }
}

/// The kubelet's getPhase, for regular containers: a container waiting to restart after it ran
/// counts as stopped, so a crash-looping pod with restartPolicy Always is Running.
fn phase(restart_policy: &str, statuses: &[Value]) -> &'static str {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = &s["state"];
        if state["running"].is_object() {
            running += 1;
        } else if state["terminated"].is_object() {
            stopped += 1;
            if state["terminated"]["exitCode"] == 0 {
                succeeded += 1;
            }
        } else if s["lastState"]["terminated"].is_object() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    match () {
        _ if waiting > 0 || statuses.is_empty() => "Pending",
        _ if running > 0 => "Running",
        _ if restart_policy == "Always" => "Running",
        _ if stopped == succeeded => "Succeeded",
        _ if restart_policy == "Never" => "Failed",
        _ => "Running",
    }
}

impl ContainerState {
    pub fn restarts(&self) -> i32 {
        (self.runs - 1).max(0)
    }

    /// Which run's log `kubectl logs [--previous]` reads, as the kubelet's
    /// validateContainerLogStatus decides; `Err` carries the kubelet's message.
    pub fn log_run(&self, container: &str, pod: &str, previous: bool) -> Result<i32, String> {
        let running = self.child.is_some();
        if previous {
            if self.last_terminated.is_none() {
                return Err(format!("previous terminated container {container:?} in pod {pod:?} not found"));
            }
            // Waiting to restart, the last terminated run is the latest one.
            let back_off = !running && self.terminated.is_none();
            return Ok(if back_off { self.runs - 1 } else { self.runs - 2 });
        }
        if running || self.terminated.is_some() || self.last_terminated.is_some() {
            return Ok(self.runs - 1);
        }
        let reason = self.waiting.as_ref().map(|w| w.0.clone()).unwrap_or_else(|| "ContainerCreating".into());
        Err(format!("container {container:?} in pod {pod:?} is waiting to start: {reason}"))
    }

    /// Is run `n` still running?
    pub fn is_running(&self, n: i32) -> bool {
        self.child.is_some() && self.runs - 1 == n
    }
}
