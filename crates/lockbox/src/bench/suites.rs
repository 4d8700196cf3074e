//! The suites. Each one drives load from this process (async, one connection pool per side,
//! fixed concurrency) against a fresh `lockbox up` and, where the issue names one, a peer
//! measured in the same run, and returns table rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use rand::RngCore;
use reqwest::Method;
use serde_json::{json, Value};

use super::load::{self, Measure};
use super::report::{Figure, Row};
use super::targets::{Lockbox, OpenBao};
use super::Sizes;

/// A payload of `n` random bytes, base64-encoded (a Secret's `data` value, an OpenBao string).
pub fn payload(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn bar(mp: &indicatif::MultiProgress, len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = mp.add(indicatif::ProgressBar::new(len));
    pb.set_style(indicatif::ProgressStyle::with_template("{msg:42} [{bar:30}] {pos}/{len} {per_sec}").expect("template").progress_chars("=> "));
    pb.set_message(what.to_string());
    pb
}

fn done(pb: indicatif::ProgressBar) {
    pb.finish();
}

pub async fn namespace(lb: &Lockbox, name: &str) -> Result<()> {
    lb.create("/api/v1/namespaces", &json!({"metadata": {"name": name}})).await.map(|_| ())
}

/// A namespace for pods: created, and its `default` ServiceAccount made (asynchronously, by a
/// controller, as in Kubernetes).
async fn pod_namespace(lb: &Lockbox, name: &str) -> Result<()> {
    namespace(lb, name).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while lb.send(Method::GET, &format!("/api/v1/namespaces/{name}/serviceaccounts/default"), None, "").await.is_err() {
        if Instant::now() > deadline {
            bail!("no default ServiceAccount in {name}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// 1. Durable writes of 1 KiB Secrets (create, then update), against OpenBao KV v2 on raft
///    and against the SQLite commit floor with the same batching.
pub async fn write(lb: &Arc<Lockbox>, bao: &Arc<OpenBao>, sizes: &Sizes, mp: &indicatif::MultiProgress, floor_dir: &std::path::Path) -> Result<Vec<Row>> {
    namespace(lb, "bench").await?;
    let value = Arc::new(payload(1024));
    let mut rows = Vec::new();
    for &c in &sizes.concurrency {
        let n = sizes.write_ops(c);
        let pb = bar(mp, n, &format!("write: lockbox create, concurrency {c}"));
        let (l, v) = (lb.clone(), value.clone());
        let create = load::drive(c, n, &pb, move |i| {
            let (l, v) = (l.clone(), v.clone());
            async move { l.create("/api/v1/namespaces/bench/secrets", &json!({"metadata": {"name": format!("w{c}-{i}")}, "data": {"v": *v}})).await.map(|_| ()) }
        })
        .await?;
        done(pb);
        let pb = bar(mp, n, &format!("write: lockbox update, concurrency {c}"));
        let (l, v) = (lb.clone(), Arc::new(payload(1024)));
        let update = load::drive(c, n, &pb, move |i| {
            let (l, v) = (l.clone(), v.clone());
            async move {
                l.send(Method::PATCH, &format!("/api/v1/namespaces/bench/secrets/w{c}-{i}"), Some(&json!({"data": {"v": *v}})), "application/merge-patch+json")
                    .await
                    .map(|_| ())
            }
        })
        .await?;
        done(pb);
        let pb = bar(mp, n, &format!("write: OpenBao create, concurrency {c}"));
        let (b, v) = (bao.clone(), value.clone());
        let bao_create = load::drive(c, n, &pb, move |i| {
            let (b, v) = (b.clone(), v.clone());
            async move { b.put(&format!("w{c}-{i}"), &v).await }
        })
        .await?;
        done(pb);
        let pb = bar(mp, n, &format!("write: OpenBao update, concurrency {c}"));
        let (b, v) = (bao.clone(), Arc::new(payload(1024)));
        let bao_update = load::drive(c, n, &pb, move |i| {
            let (b, v) = (b.clone(), v.clone());
            async move { b.put(&format!("w{c}-{i}"), &v).await }
        })
        .await?;
        done(pb);
        let pb = bar(mp, n, &format!("write: SQLite floor, {c} rows per commit"));
        let floor = sqlite_floor(floor_dir, c, n, &pb).await?;
        done(pb);
        let (seq_goal, conc_goal) = (4.0, 7.0);
        for (case, ours, theirs) in [("create", &create, &bao_create), ("update", &update, &bao_update)] {
            let mut row = Row::new("write", format!("{case} 1 KiB Secret, concurrency {c}"), Figure::Latency(ours.clone()))
                .peer("OpenBao KV v2 (raft)", Figure::Latency(theirs.clone()));
            let ratio = ours.ops_per_sec / theirs.ops_per_sec;
            if c == 1 {
                row = row.goal(format!("≥ {seq_goal}× OpenBao sequentially"), ratio >= seq_goal);
            } else if c == 16 {
                row = row.goal(format!("≥ {conc_goal}× OpenBao at concurrency 16"), ratio >= conc_goal);
            }
            rows.push(row);
        }
        rows.push(
            Row::new("write", format!("create, concurrency {c}, against the storage floor"), Figure::Latency(create.clone()))
                .peer(format!("SQLite WAL+FULL, {c} rows/commit"), Figure::Latency(floor)),
        );
    }
    Ok(rows)
}

/// The storage floor: 1 KiB rows committed durably to SQLite (WAL, synchronous=FULL, as the
/// store runs) in batches of `batch`, as group commit batches concurrent writers.
async fn sqlite_floor(dir: &std::path::Path, batch: usize, rows: u64, pb: &indicatif::ProgressBar) -> Result<Measure> {
    let path = dir.join(format!("floor-{batch}.db"));
    let pb = pb.clone();
    tokio::task::spawn_blocking(move || -> Result<Measure> {
        let _ = std::fs::remove_file(&path);
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON; CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )?;
        let mut value = vec![0u8; 1024];
        rand::rng().fill_bytes(&mut value);
        let mut h = load::histogram();
        let started = Instant::now();
        let mut written = 0u64;
        while written < rows {
            let n = (batch as u64).min(rows - written);
            let t = Instant::now();
            let tx = conn.unchecked_transaction()?;
            for i in 0..n {
                tx.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)", rusqlite::params![format!("k{}", written + i), value])?;
            }
            tx.commit()?;
            // Every row of the batch waited for this one commit.
            h.record_n(t.elapsed().as_micros().max(1) as u64, n)?;
            written += n;
            pb.inc(n);
        }
        let m = Measure::from_histogram(&h, started.elapsed());
        drop(conn);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        Ok(m)
    })
    .await?
}

/// 2. Get a Secret by name, against an OpenBao KV v2 read (after the write suite's data).
pub async fn read(lb: &Arc<Lockbox>, bao: &Arc<OpenBao>, sizes: &Sizes, mp: &indicatif::MultiProgress) -> Result<Vec<Row>> {
    let c0 = *sizes.concurrency.last().context("no concurrency")?;
    let keys = sizes.write_ops(c0);
    let mut rows = Vec::new();
    for &c in &sizes.concurrency {
        let n = sizes.read_ops(c);
        let pb = bar(mp, n, &format!("read: lockbox get, concurrency {c}"));
        let l = lb.clone();
        let ours = load::drive(c, n, &pb, move |i| {
            let l = l.clone();
            async move { l.send(Method::GET, &format!("/api/v1/namespaces/bench/secrets/w{c0}-{}", i % keys), None, "").await.map(|_| ()) }
        })
        .await?;
        done(pb);
        let pb = bar(mp, n, &format!("read: OpenBao get, concurrency {c}"));
        let b = bao.clone();
        let theirs = load::drive(c, n, &pb, move |i| {
            let b = b.clone();
            async move { b.get(&format!("w{c0}-{}", i % keys)).await }
        })
        .await?;
        done(pb);
        let ratio = ours.ops_per_sec / theirs.ops_per_sec;
        rows.push(
            Row::new("read", format!("get 1 KiB Secret, concurrency {c}"), Figure::Latency(ours))
                .peer("OpenBao KV v2 (raft)", Figure::Latency(theirs))
                .goal("≥ 3× OpenBao", ratio >= 3.0),
        );
    }
    Ok(rows)
}

/// A list or a Table, its entries skipped rather than decoded.
#[derive(serde::Deserialize)]
struct Counted {
    items: Option<Vec<serde::de::IgnoredAny>>,
    rows: Option<Vec<serde::de::IgnoredAny>>,
}

/// Creates `n` small Secrets in `ns`, every hundredth labelled `tier=gold`.
async fn fill(lb: &Arc<Lockbox>, ns: &str, kind: &str, n: u64, bytes: usize, mp: &indicatif::MultiProgress) -> Result<()> {
    let pb = bar(mp, n, &format!("fill: {n} {kind} in {ns}"));
    let (l, v, ns, kind) = (lb.clone(), Arc::new(payload(bytes)), ns.to_string(), kind.to_string());
    load::drive(32, n, &pb, move |i| {
        let (l, v, ns, kind) = (l.clone(), v.clone(), ns.clone(), kind.clone());
        async move {
            let tier = if i % 100 == 0 { "gold" } else { "standard" };
            let body = json!({"metadata": {"name": format!("o-{i}"), "labels": {"tier": tier}}, "data": {"v": *v}});
            l.create(&format!("/api/v1/namespaces/{ns}/{kind}"), &body).await.map(|_| ())
        }
    })
    .await?;
    done(pb);
    Ok(())
}

/// 3. Lists of 10,000 Secrets in one namespace, whole and by label selector, served from the
///    watch cache; also as the Table kubectl asks for.
pub async fn list(lb: &Arc<Lockbox>, sizes: &Sizes, mp: &indicatif::MultiProgress) -> Result<Vec<Row>> {
    namespace(lb, "list").await?;
    let n = sizes.list_objects;
    fill(lb, "list", "secrets", n, 64, mp).await?;
    let mut rows = Vec::new();
    let cases = [
        (format!("list {n} Secrets (JSON)"), "", "application/json", n),
        (format!("list {n} Secrets with labelSelector tier=gold"), "?labelSelector=tier%3Dgold", "application/json", n.div_ceil(100)),
        (format!("list {n} Secrets as a Table (kubectl get)"), "", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", n),
    ];
    for (case, query, accept, expect) in cases {
        let pb = bar(mp, sizes.list_iterations, &format!("list: {case}"));
        let m = load::repeat(sizes.list_iterations, &pb, |_| {
            let url = lb.url(&format!("/api/v1/namespaces/list/secrets{query}"));
            async move {
                let body = lb.http.get(url).header("Accept", accept).send().await?.error_for_status()?.bytes().await?;
                // Counted without building the objects: the figure is the server's, not the
                // cost of this client's JSON allocations.
                let list: Counted = serde_json::from_slice(&body)?;
                let got = list.items.or(list.rows).map(|v| v.len()).unwrap_or(0) as u64;
                if got != expect {
                    bail!("expected {expect} items, got {got}");
                }
                Ok(())
            }
        })
        .await?;
        done(pb);
        let met = m.p99_ms < 50.0;
        let mut row = Row::new("list", case.clone(), Figure::Latency(m));
        if query.is_empty() && accept == "application/json" {
            row = row.goal("10,000-object list under 50 ms (p99)", met);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// 3b. Fairness: one user's GET of one Secret, alone and while another user (not
///     system:masters, which is never queued) runs 4 loops of LISTs of `fairness_objects`
///     Secrets. The goal is issue 11's: its p99 under that load within 2× its idle p99.
pub async fn fairness(lb: &Arc<Lockbox>, data_dir: &std::path::Path, sizes: &Sizes, mp: &indicatif::MultiProgress) -> Result<Vec<Row>> {
    namespace(lb, "fair").await?;
    let n = sizes.fairness_objects;
    fill(lb, "fair", "secrets", n, 64, mp).await?;
    // Two users, each a ServiceAccount allowed to read Secrets in the namespace.
    let role = json!({"metadata": {"name": "read-secrets"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]});
    lb.create("/apis/rbac.authorization.k8s.io/v1/namespaces/fair/roles", &role).await?;
    let mut tokens = Vec::new();
    for user in ["reader", "lister"] {
        lb.create("/api/v1/namespaces/fair/serviceaccounts", &json!({"metadata": {"name": user}})).await?;
        let binding = json!({"metadata": {"name": user}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets"},
            "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": "fair"}]});
        lb.create("/apis/rbac.authorization.k8s.io/v1/namespaces/fair/rolebindings", &binding).await?;
        let token = lb.create(&format!("/api/v1/namespaces/fair/serviceaccounts/{user}/token"), &json!({"spec": {"expirationSeconds": 3600}})).await?;
        tokens.push(token["status"]["token"].as_str().context("no token")?.to_string());
    }
    let lister = Arc::new(lb.token_client(&tokens[1], data_dir)?);
    let get_url = lb.url("/api/v1/namespaces/fair/secrets/o-1");
    // The measured GETs run on a thread and runtime of their own, so that this process's
    // work for the LIST loops (reading and decrypting their bodies) does not delay them here:
    // the figure is the server's.
    let gets = |label: &str| {
        let pb = bar(mp, sizes.fairness_gets, label);
        let (lb, token, data_dir, url, n) = (lb.clone(), tokens[0].clone(), data_dir.to_path_buf(), get_url.clone(), sizes.fairness_gets);
        async move {
            let m = tokio::task::spawn_blocking(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async {
                    let other = lb.token_client(&token, &data_dir)?;
                    load::repeat(n, &pb, |_| {
                        let (other, url) = (other.clone(), url.clone());
                        async move {
                            other.get(url).send().await?.error_for_status()?.bytes().await?;
                            Ok(())
                        }
                    })
                    .await
                    .map(|m| (m, pb))
                })
            })
            .await?;
            m.map(|(m, pb)| {
                done(pb);
                m
            })
        }
    };
    let idle = gets("fairness: another user's GET, idle").await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lists = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut hogs = Vec::new();
    for _ in 0..4 {
        let (lister, url, stop, lists) = (lister.clone(), lb.url("/api/v1/namespaces/fair/secrets"), stop.clone(), lists.clone());
        hogs.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                lister.get(url.clone()).send().await?.error_for_status()?.bytes().await?;
                lists.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed_before = lists.load(std::sync::atomic::Ordering::Relaxed);
    let started = std::time::Instant::now();
    let loaded = gets("fairness: another user's GET, under 4 LIST loops").await;
    let list_rate = (lists.load(std::sync::atomic::Ordering::Relaxed) - listed_before) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        h.await??;
    }
    let loaded = loaded?;
    let met = loaded.p99_ms <= 2.0 * idle.p99_ms;
    Ok(vec![Row::new("fairness", format!("another user's GET under 4 loops of {n}-Secret LISTs ({list_rate:.0} lists/s)"), Figure::Latency(loaded))
        .anchor("the same GET, idle", Figure::Latency(idle))
        .goal("p99 within 2× the idle p99", met)])
}

/// 4. Watch fan-out: `watchers` concurrent watches on ConfigMaps; the time from sending one
///    update until every watcher has the event.
pub async fn watch(lb: &Arc<Lockbox>, sizes: &Sizes, mp: &indicatif::MultiProgress) -> Result<Vec<Row>> {
    namespace(lb, "watch").await?;
    let created = lb.create("/api/v1/namespaces/watch/configmaps", &json!({"metadata": {"name": "fan"}, "data": {"v": "start"}})).await?;
    let rv = created["metadata"]["resourceVersion"].as_str().context("no resourceVersion")?.to_string();
    let (watchers, updates) = (sizes.watchers, sizes.watch_updates);
    let epoch = Instant::now();
    let sent: Arc<Vec<Mutex<Option<Duration>>>> = Arc::new((0..updates).map(|_| Mutex::new(None)).collect());
    let arrivals: Arc<Vec<Mutex<Vec<Duration>>>> = Arc::new((0..updates).map(|_| Mutex::new(Vec::new())).collect());
    let connected = Arc::new(AtomicUsize::new(0));
    let pb = bar(mp, watchers as u64, &format!("watch: opening {watchers} watches"));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let url = lb.url(&format!("/api/v1/namespaces/watch/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=600"));
        let (http, sent, arrivals, connected, pb) = (lb.http.clone(), sent.clone(), arrivals.clone(), connected.clone(), pb.clone());
        tasks.push(tokio::spawn(async move {
            let mut resp = http.get(url).send().await?.error_for_status()?;
            connected.fetch_add(1, Ordering::SeqCst);
            pb.inc(1);
            let mut buf = Vec::new();
            let mut seen = 0;
            while seen < updates {
                let Some(chunk) = resp.chunk().await? else { bail!("watch ended early") };
                let now = epoch.elapsed();
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let ev: Value = serde_json::from_slice(&line)?;
                    if ev["type"] != "MODIFIED" {
                        continue;
                    }
                    let Some(k) = ev["object"]["data"]["v"].as_str().and_then(|v| v.parse::<usize>().ok()) else { continue };
                    let start = sent[k].lock().expect("lock").context("event before its update was sent")?;
                    arrivals[k].lock().expect("lock").push(now.saturating_sub(start));
                    seen += 1;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::SeqCst) < watchers {
        if Instant::now() > deadline {
            bail!("only {} of {watchers} watches opened", connected.load(Ordering::SeqCst));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done(pb);
    let pb = bar(mp, updates as u64, &format!("watch: updates to {watchers} watchers"));
    let mut all_have_it = load::histogram();
    let mut each = load::histogram();
    let started = Instant::now();
    for k in 0..updates {
        *sent[k].lock().expect("lock") = Some(epoch.elapsed());
        lb.send(Method::PATCH, "/api/v1/namespaces/watch/configmaps/fan", Some(&json!({"data": {"v": k.to_string()}})), "application/merge-patch+json").await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while arrivals[k].lock().expect("lock").len() < watchers {
            if Instant::now() > deadline {
                bail!("update {k} reached {} of {watchers} watchers", arrivals[k].lock().expect("lock").len());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let got = arrivals[k].lock().expect("lock").clone();
        for d in &got {
            each.record(d.as_micros().max(1) as u64)?;
        }
        all_have_it.record(got.iter().max().copied().unwrap_or_default().as_micros().max(1) as u64)?;
        pb.inc(1);
    }
    let elapsed = started.elapsed();
    done(pb);
    for t in tasks {
        t.await??;
    }
    let fan = Measure::from_histogram(&all_have_it, elapsed);
    let met = fan.p99_ms < 100.0;
    Ok(vec![
        Row::new("watch", format!("update → all {watchers} watchers have it"), Figure::Latency(fan)).goal("fan-out p99 under 100 ms", met),
        Row::new("watch", format!("update → one watcher has it ({watchers} watching)"), Figure::Latency(Measure::from_histogram(&each, elapsed))),
    ])
}

/// 7. The encryption providers' cost per operation at 1 KiB and 100 KiB, in this process, and
///    the KMS v2 plugin calls per 10,000 writes (one data key is reused, as kube-apiserver does).
pub async fn crypto(bao: &Arc<OpenBao>, sizes: &Sizes, mp: &indicatif::MultiProgress, dir: &std::path::Path) -> Result<Vec<Row>> {
    let key = || base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let socket = dir.join("kms.sock");
    let log = std::fs::File::create(dir.join("kms-plugin.log"))?;
    let mut plugin = std::process::Command::new(std::env::current_exe()?)
        .args(["kms-plugin", "--socket"])
        .arg(&socket)
        .args(["--vault-addr", &bao.addr, "--transit-key", "bench"])
        .env("VAULT_TOKEN", &bao.token)
        .env("SSL_CERT_FILE", &bao.ca_file)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if Instant::now() > deadline {
            let _ = plugin.kill();
            bail!("the KMS plugin did not start; see {}", dir.join("kms-plugin.log").display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let providers = [
        ("identity", "    - identity: {}".to_string()),
        ("aescbc", format!("    - aescbc:\n        keys:\n        - name: k\n          secret: {}", key())),
        ("aesgcm", format!("    - aesgcm:\n        keys:\n        - name: k\n          secret: {}", key())),
        ("secretbox", format!("    - secretbox:\n        keys:\n        - name: k\n          secret: {}", key())),
        ("kms v2", format!("    - kms:\n        apiVersion: v2\n        name: bench\n        endpoint: unix://{}\n        timeout: 3s", socket.display())),
    ];
    let registry = Arc::new(Mutex::new(Vec::new()));
    let factory = crypt::kms::factory(registry);
    let mut rows = Vec::new();
    let result = async {
        for (name, provider) in &providers {
            let text = format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{provider}\n"
            );
            let cfg = tokio::task::block_in_place(|| crypt::config::EncryptionConfig::parse(&text, &factory)).map_err(anyhow::Error::msg)?;
            let t = cfg.rules[0].transformers.clone();
            for size in [1024usize, 100 * 1024] {
                let plain = vec![7u8; size];
                let n = sizes.crypto_ops;
                let pb = bar(mp, 2 * n, &format!("crypto: {name} {} KiB", size / 1024));
                let t2 = t.clone();
                let (enc, dec) = tokio::task::spawn_blocking(move || -> Result<(Measure, Measure)> {
                    let (mut he, mut hd) = (load::histogram(), load::histogram());
                    let (mut te, mut td) = (Duration::ZERO, Duration::ZERO);
                    for i in 0..n {
                        let ctx = format!("/registry/secrets/bench/s{i}");
                        let s = Instant::now();
                        let stored = crypt::Transformer::transform_to_storage(&*t2, &plain, &ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
                        let e = s.elapsed();
                        let s = Instant::now();
                        crypt::Transformer::transform_from_storage(&*t2, &stored, &ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
                        let d = s.elapsed();
                        // Nanosecond resolution: these are microsecond operations.
                        he.record(e.as_nanos().max(1) as u64)?;
                        hd.record(d.as_nanos().max(1) as u64)?;
                        te += e;
                        td += d;
                    }
                    let ns = |h: &hdrhistogram::Histogram<u64>, total: Duration| {
                        let mut m = Measure::from_histogram(h, total);
                        // The histogram holds nanoseconds: rescale to milliseconds.
                        for v in [&mut m.p50_ms, &mut m.p99_ms, &mut m.p999_ms] {
                            *v /= 1000.0;
                        }
                        m
                    };
                    Ok((ns(&he, te), ns(&hd, td)))
                })
                .await??;
                pb.inc(2 * n);
                done(pb);
                rows.push(Row::new("crypto", format!("{name}: encrypt {} KiB", size / 1024), Figure::Latency(enc)));
                rows.push(Row::new("crypto", format!("{name}: decrypt {} KiB", size / 1024), Figure::Latency(dec)));
            }
        }
        // KMS calls per 10,000 writes, counted by the plugin client's own metrics.
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{}\n",
            providers[4].1
        );
        let before = kms_calls();
        let cfg = tokio::task::block_in_place(|| crypt::config::EncryptionConfig::parse(&text, &factory)).map_err(anyhow::Error::msg)?;
        let t = cfg.rules[0].transformers.clone();
        let writes = sizes.kms_writes;
        tokio::task::spawn_blocking(move || -> Result<()> {
            for i in 0..writes {
                crypt::Transformer::transform_to_storage(&*t, b"value", &format!("/registry/secrets/bench/k{i}")).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Ok(())
        })
        .await??;
        let calls = kms_calls() - before;
        rows.push(
            Row::new(
                "crypto",
                format!("KMS v2 plugin calls per {writes} writes (Encrypt)"),
                Figure::Scalar { value: calls as f64, unit: "calls", lower_is_better: true },
            )
            .anchor("KMS v1 design: one plugin call per write", Figure::Scalar { value: writes as f64, unit: "calls", lower_is_better: true }),
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = plugin.kill();
    let _ = plugin.wait();
    result.map(|_| rows)
}

fn kms_calls() -> u64 {
    let labels = crypt::metrics::KmsLabels { provider_name: "bench".into(), method_name: "/v2.KeyManagementService/Encrypt", grpc_status_code: "OK".into() };
    crypt::metrics::METRICS.kms_call_counts.get_or_create(&labels).get()
}

/// Waits until `n` pods with `selector` in `ns` are Ready.
async fn pods_ready(lb: &Lockbox, ns: &str, selector: &str, n: usize, within: Duration) -> Result<Vec<Value>> {
    let deadline = Instant::now() + within;
    loop {
        let list = lb.send(Method::GET, &format!("/api/v1/namespaces/{ns}/pods?labelSelector={selector}"), None, "").await?;
        let ready: Vec<Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| p["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            .cloned()
            .collect();
        if ready.len() >= n {
            return Ok(ready);
        }
        if Instant::now() > deadline {
            bail!("{} of {n} pods ready in {ns} after {within:?}", ready.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The time (Unix seconds) a pod logged `value`, from lines "<unix time> <value>".
async fn logged_at(lb: &Lockbox, ns: &str, pod: &str, value: &str) -> Result<Option<f64>> {
    let resp = lb.http.get(lb.url(&format!("/api/v1/namespaces/{ns}/pods/{pod}/log"))).send().await?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    let text = resp.text().await?;
    Ok(text.lines().find_map(|l| {
        let (ts, v) = l.split_once(' ')?;
        (v == value).then(|| ts.parse().ok()).flatten()
    }))
}

/// 5. Propagation: a Secret update until a running pod's mounted file shows it, and a
///    ConfigMap update until a pod of a Reloader-annotated Deployment has it in its env. The
///    pods log the time they see each value (`date +%s.%N`, same clock as this process).
pub async fn propagation(lb: &Arc<Lockbox>, sizes: &Sizes, mp: &indicatif::MultiProgress) -> Result<Vec<Row>> {
    pod_namespace(lb, "prop").await?;
    lb.create("/api/v1/namespaces/prop/secrets", &json!({"metadata": {"name": "file"}, "stringData": {"v": "v-start"}})).await?;
    lb.create("/api/v1/namespaces/prop/configmaps", &json!({"metadata": {"name": "env"}, "data": {"v": "v-start"}})).await?;
    // Polls the file every 5 ms and logs each new content once.
    let watcher = r#"last=""; while :; do v=$(cat /etc/p/v); if [ "$v" != "$last" ]; then echo "$(date +%s.%N) $v"; last=$v; fi; sleep 0.005; done"#;
    lb.create(
        "/api/v1/namespaces/prop/pods",
        &json!({"metadata": {"name": "file-watcher", "labels": {"app": "file-watcher"}}, "spec": {
            "containers": [{"name": "w", "image": "busybox", "command": ["sh", "-c", watcher], "volumeMounts": [{"name": "p", "mountPath": "/etc/p"}]}],
            "volumes": [{"name": "p", "secret": {"secretName": "file"}}]}}),
    )
    .await?;
    lb.create(
        "/apis/apps/v1/namespaces/prop/deployments",
        &json!({"metadata": {"name": "env-reader", "annotations": {"configmap.reloader.stakater.com/reload": "env"}}, "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "env-reader"}},
            "template": {"metadata": {"labels": {"app": "env-reader"}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "r", "image": "busybox",
                "command": ["sh", "-c", "echo \"$(date +%s.%N) $VALUE\"; exec sleep 3600"],
                "env": [{"name": "VALUE", "valueFrom": {"configMapKeyRef": {"name": "env", "key": "v"}}}]}]}}}}),
    )
    .await?;
    pods_ready(lb, "prop", "app%3Dfile-watcher", 1, Duration::from_secs(60)).await?;
    pods_ready(lb, "prop", "app%3Denv-reader", 1, Duration::from_secs(60)).await?;
    let n = sizes.propagation_updates;
    let pb = bar(mp, n, "propagation: Secret → mounted file");
    let mut file = load::histogram();
    let started = Instant::now();
    for k in 0..n {
        let value = format!("v-{k}");
        let t0 = now_unix();
        lb.send(Method::PATCH, "/api/v1/namespaces/prop/secrets/file", Some(&json!({"stringData": {"v": value}})), "application/merge-patch+json").await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = loop {
            if let Some(ts) = logged_at(lb, "prop", "file-watcher", &value).await? {
                break ts;
            }
            if Instant::now() > deadline {
                let log = lb.http.get(lb.url("/api/v1/namespaces/prop/pods/file-watcher/log?tailLines=3")).send().await?.text().await?;
                let pod = lb.send(Method::GET, "/api/v1/namespaces/prop/pods/file-watcher", None, "").await?;
                bail!("the mounted file never showed {value}; the pod logged {log:?}; pod status {}", pod["status"]);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        file.record((((seen - t0) * 1e6).max(1.0)) as u64)?;
        pb.inc(1);
    }
    let file_m = Measure::from_histogram(&file, started.elapsed());
    done(pb);
    let n_env = sizes.reload_updates;
    let pb = bar(mp, n_env, "propagation: ConfigMap → env after reload");
    let mut env = load::histogram();
    let started = Instant::now();
    for k in 0..n_env {
        let value = format!("v-{k}");
        let t0 = now_unix();
        lb.send(Method::PATCH, "/api/v1/namespaces/prop/configmaps/env", Some(&json!({"data": {"v": value}})), "application/merge-patch+json").await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let seen = 'found: loop {
            let pods = lb.send(Method::GET, "/api/v1/namespaces/prop/pods?labelSelector=app%3Denv-reader", None, "").await?;
            for p in pods["items"].as_array().into_iter().flatten() {
                if let Some(ts) = logged_at(lb, "prop", p["metadata"]["name"].as_str().unwrap_or_default(), &value).await? {
                    break 'found ts;
                }
            }
            if Instant::now() > deadline {
                bail!("no pod started with {value} in its env");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        env.record((((seen - t0) * 1e6).max(1.0)) as u64)?;
        pb.inc(1);
        // Let the rollout finish before the next edit, so each is one rollout.
        pods_ready(lb, "prop", "app%3Denv-reader", 1, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let env_m = Measure::from_histogram(&env, started.elapsed());
    done(pb);
    let kubelet = Figure::scalar(60_000.0, "ms");
    let file_met = file_m.p99_ms < 1000.0;
    let env_met = env_m.p99_ms < 1000.0;
    let p99 = |m: &Measure| Figure::scalar(m.p99_ms, "ms (p99)");
    Ok(vec![
        Row::new("propagation", "Secret update → running pod's mounted file", Figure::Latency(file_m.clone())).goal("propagation p99 under 1 s", file_met),
        Row::new("propagation", "Secret update → mounted file, p99 against the kubelet", p99(&file_m))
            .anchor("kubelet sync period + cache TTL (60–90 s)", kubelet.clone()),
        Row::new("propagation", "ConfigMap update → env of the restarted pod (Reloader annotation)", Figure::Latency(env_m.clone()))
            .goal("propagation p99 under 1 s", env_met),
        Row::new("propagation", "ConfigMap update → env after reload, p99 against a manual restart", p99(&env_m))
            .anchor("kubelet: env never updates without a restart; file path 60–90 s", kubelet),
    ])
}

/// 6. Footprint: RSS with 10,000 Secrets and 10,000 ConfigMaps stored and 10 pods running,
///    the time from start to `/readyz` with that data, and the database size on disk.
pub async fn footprint(dir: &std::path::Path, sizes: &Sizes, mp: &indicatif::MultiProgress) -> Result<Vec<Row>> {
    let data = dir.join("footprint");
    let log = dir.join("footprint.log");
    let lb = Arc::new(Lockbox::start(&data, &log).await?);
    pod_namespace(&lb, "fp").await?;
    let n = sizes.footprint_objects;
    fill(&lb, "fp", "secrets", n, 1024, mp).await?;
    fill(&lb, "fp", "configmaps", n, 1024, mp).await?;
    let pods = sizes.footprint_pods;
    lb.create(
        "/apis/apps/v1/namespaces/fp/deployments",
        &json!({"metadata": {"name": "idle"}, "spec": {"replicas": pods, "selector": {"matchLabels": {"app": "idle"}},
            "template": {"metadata": {"labels": {"app": "idle"}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                "env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "o-1", "key": "v"}}}],
                "volumeMounts": [{"name": "s", "mountPath": "/etc/s"}]}],
                "volumes": [{"name": "s", "secret": {"secretName": "o-1"}}]}}}}),
    )
    .await?;
    pods_ready(&lb, "fp", "app%3Didle", pods, Duration::from_secs(120)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (steady, peak) = super::targets::rss(lb.pid())?;
    let db: u64 = ["state.db", "state.db-wal", "state.db-shm"].iter().map(|f| std::fs::metadata(data.join(f)).map(|m| m.len()).unwrap_or(0)).sum();
    let mut lb = Arc::into_inner(lb).context("footprint client still shared")?;
    lb.stop();
    drop(lb);
    let lb = Lockbox::start(&data, &log).await?;
    let ready = lb.ready_after;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (restarted, _) = super::targets::rss(lb.pid())?;
    drop(lb);
    let mb = |b: u64| b as f64 / 1e6;
    let what = format!("{n} Secrets + {n} ConfigMaps (1 KiB each), {pods} pods");
    let k3s = Figure::scalar(1600.0, "MB");
    Ok(vec![
        Row::new("footprint", format!("peak RSS, {what}"), Figure::scalar(mb(peak), "MB"))
            .anchor("k3s server with a workload (minimum)", k3s.clone())
            .goal("RSS under 100 MB", mb(peak) < 100.0),
        Row::new("footprint", format!("steady RSS, {what}"), Figure::scalar(mb(steady), "MB"))
            .anchor("k3s server with a workload (minimum)", k3s)
            .goal("RSS under 100 MB", mb(steady) < 100.0),
        Row::new("footprint", "RSS 1 s after a restart with that data", Figure::scalar(mb(restarted), "MB")),
        Row::new("footprint", "start to /readyz ok, with that data", Figure::scalar(ready.as_secs_f64() * 1000.0, "ms"))
            .goal("start-up under 1 s", ready < Duration::from_secs(1)),
        Row::new("footprint", "database on disk (state.db with WAL)", Figure::scalar(mb(db), "MB")),
    ])
}
