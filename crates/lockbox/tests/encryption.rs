//! Encryption at rest, end to end: the default, the Kubernetes key-rotation procedure, switching
//! between identity and encryption, a bad reload, tampering, and KMS v2 through OpenBao Transit.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use common::{raw, Server};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn config(providers: &str) -> String {
    format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}")
}

fn aescbc(name: &str, byte: u8) -> String {
    format!("  - aescbc:\n      keys:\n      - name: {name}\n        secret: {}\n", b64(&[byte; 32]))
}

fn secretbox(name: &str, byte: u8) -> String {
    format!("  - secretbox:\n      keys:\n      - name: {name}\n        secret: {}\n", b64(&[byte; 32]))
}

const IDENTITY: &str = "  - identity: {}\n";

async fn namespace(c: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(c.clone()).create(&PostParams::default(), &ns).await.unwrap();
}

async fn create_secrets(c: &kube::Client, ns: &str, n: usize, marker: &str) {
    let api: Api<Secret> = Api::namespaced(c.clone(), ns);
    for i in 0..n {
        let s: Secret = serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}, "stringData": {"v": format!("{marker}-{i}")}})).unwrap();
        api.create(&PostParams::default(), &s).await.unwrap();
    }
}

/// Every file under `dir`, searched byte by byte (the database, its WAL, everything).
fn find_in_dir(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

async fn status(c: &kube::Client) -> Value {
    let (code, _, v) = raw(c, "GET", "/lockbox/v1/storage/status?resource=secrets", "", b"").await;
    assert_eq!(code, 200, "{v}");
    v
}

/// Waits until the server's write key for secrets is `want` (the reload happened).
async fn wait_for_write_key(c: &kube::Client, ns: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let api: Api<Secret> = Api::namespaced(c.clone(), ns);
    loop {
        // Write a probe secret and look at how it was stored.
        let _ = api.delete("probe", &Default::default()).await;
        let s: Secret = serde_json::from_value(json!({"metadata": {"name": "probe"}, "stringData": {"p": "p"}})).unwrap();
        api.create(&PostParams::default(), &s).await.unwrap();
        let st = status(c).await;
        if st["writeKeys"]["secrets"] == want {
            api.delete("probe", &Default::default()).await.unwrap();
            return;
        }
        assert!(Instant::now() < deadline, "write key never became {want}: {st}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn default_encrypts_secrets_and_no_plaintext_reaches_disk() {
    let s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "enc").await;
    create_secrets(&c, "enc", 5, "plaintext-marker-7f3a").await;
    let api: Api<Secret> = Api::namespaced(c.clone(), "enc");
    assert_eq!(api.get("s3").await.unwrap().data.unwrap()["v"].0, b"plaintext-marker-7f3a-3");
    let st = status(&c).await;
    assert_eq!(st["counts"]["secretbox:key1"], 5);
    assert_eq!(st["stale"], json!([]));
    let generated = std::fs::read_to_string(s.data_dir().join("encryption-config.yaml")).unwrap();
    assert!(generated.contains("secretbox"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(s.data_dir().join("encryption-config.yaml")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(find_in_dir(&s.data_dir(), b"plaintext-marker-7f3a"), Vec::<String>::new());
    assert_eq!(find_in_dir(&s.data_dir(), b_64("plaintext-marker-7f3a-1").as_bytes()), Vec::<String>::new());
    assert!(!std::fs::read_to_string(&s.log).unwrap().contains("plaintext-marker"));

    // The generated key is generated once: a data dir that has lost its file is refused, by the
    // server and by the offline storage commands, and nothing new is written in its place.
    let mut s = s;
    s.stop();
    let config = s.data_dir().join("encryption-config.yaml");
    std::fs::rename(&config, s.dir.path().join("kept.yaml")).unwrap();
    let data = s.data_dir().to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_lockbox")).args(["up", "--data-dir", &data, "--listen", "127.0.0.1:0"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("encryption-config.yaml is missing") && err.contains("generated only on first start"), "{err}");
    let (ok, text) = s.lockbox(&["storage", "status", "--data-dir", &data]);
    assert!(!ok && text.contains("is missing"), "{text}");
    assert!(!config.exists(), "no new key was written");
    std::fs::rename(s.dir.path().join("kept.yaml"), &config).unwrap();
    s.launch().await;
    let c = s.client().await;
    assert_eq!(Api::<Secret>::namespaced(c, "enc").get("s3").await.unwrap().data.unwrap()["v"].0, b"plaintext-marker-7f3a-3");
}

fn b_64(s: &str) -> String {
    b64(s.as_bytes())
}

#[tokio::test]
async fn kubernetes_key_rotation_procedure() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("enc.yaml");
    std::fs::write(&cfg, config(&format!("{}{IDENTITY}", aescbc("key1", 1)))).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let mut s = Server::start_with(&["--encryption-provider-config", cfg_s, "--encryption-provider-config-reload-seconds", "1"]).await;
    let c = s.client().await;
    namespace(&c, "rot").await;
    create_secrets(&c, "rot", 20, "rotation-marker").await;
    assert_eq!(status(&c).await["counts"]["aescbc:key1"], 20);

    // 1. Add the new key first (it writes; the old one still reads).
    std::fs::write(&cfg, config(&format!("{}{}{IDENTITY}", aescbc("key2", 2), aescbc("key1", 1)))).unwrap();
    wait_for_write_key(&c, "rot", "aescbc:key2").await;
    assert_eq!(status(&c).await["stale"].as_array().unwrap().len(), 20);
    // 2. Migrate, against the running server.
    let data = s.data_dir();
    let (ok, out) = s.lockbox(&["storage", "migrate", "--resource", "secrets", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("rewrote 20 objects"), "{out}");
    // 3. No object remains on the old key.
    let st = status(&c).await;
    assert_eq!(st["counts"]["aescbc:key2"], 20, "{st}");
    assert!(st["counts"].get("aescbc:key1").is_none(), "{st}");
    let (ok, out) = s.lockbox(&["storage", "status", "--resource", "secrets", "--data-dir", data.to_str().unwrap()]);
    assert!(ok && out.contains("20 of 20 objects use their current write key"), "{out}");
    // 4. Remove the old key.
    std::fs::write(&cfg, config(&format!("{}{IDENTITY}", aescbc("key2", 2)))).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // 5. Everything still reads, after a restart too, and offline tools agree.
    let api: Api<Secret> = Api::namespaced(c.clone(), "rot");
    for i in 0..20 {
        assert_eq!(api.get(&format!("s{i}")).await.unwrap().data.unwrap()["v"].0, format!("rotation-marker-{i}").as_bytes());
    }
    s.stop();
    let (ok, out) = s.lockbox(&["storage", "status", "--resource", "secrets", "--data-dir", data.to_str().unwrap(), "--encryption-provider-config", cfg_s]);
    assert!(ok && out.contains("aescbc:key2") && out.contains("20 of 20 objects"), "{out}");
    s.launch().await;
    let api: Api<Secret> = Api::namespaced(s.client().await, "rot");
    assert_eq!(api.get("s7").await.unwrap().data.unwrap()["v"].0, b"rotation-marker-7");
}

#[tokio::test]
async fn identity_to_encrypted_and_back_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("enc.yaml");
    std::fs::write(&cfg, config(IDENTITY)).unwrap();
    let cfg_s = cfg.to_str().unwrap().to_string();
    let mut s = Server::start_with(&["--encryption-provider-config", &cfg_s]).await;
    let c = s.client().await;
    namespace(&c, "sw").await;
    create_secrets(&c, "sw", 3, "switch-marker").await;
    // Secret data is stored base64-encoded in JSON; with identity it is all there is.
    assert!(!find_in_dir(&s.data_dir(), b_64("switch-marker-0").as_bytes()).is_empty(), "identity stores plaintext");
    s.stop();
    let data = s.data_dir();
    let data_s = data.to_str().unwrap();

    // Encrypt, on the stopped data dir.
    std::fs::write(&cfg, config(&format!("{}{IDENTITY}", secretbox("sb", 3)))).unwrap();
    let (ok, out) = s.lockbox(&["storage", "migrate", "--data-dir", data_s, "--encryption-provider-config", &cfg_s]);
    assert!(ok && out.contains("rewrote 3 objects"), "{out}");
    s.launch().await;
    let c = s.client().await;
    assert_eq!(status(&c).await["counts"]["secretbox:sb"], 3);
    // Migration compacted the history and zeroed what it freed: no old plaintext anywhere.
    s.stop();
    assert_eq!(find_in_dir(&data, b_64("switch-marker-0").as_bytes()), Vec::<String>::new());

    // And back to plaintext: identity first, the old key still able to read.
    std::fs::write(&cfg, config(&format!("{IDENTITY}{}", secretbox("sb", 3)))).unwrap();
    let (ok, out) = s.lockbox(&["storage", "migrate", "--data-dir", data_s, "--encryption-provider-config", &cfg_s]);
    assert!(ok && out.contains("rewrote 3 objects"), "{out}");
    let (ok, out) = s.lockbox(&["storage", "status", "--data-dir", data_s, "--encryption-provider-config", &cfg_s, "--resource", "secrets"]);
    assert!(ok && out.contains("identity") && !out.contains("secretbox:sb"), "{out}");
}

#[tokio::test]
async fn bad_reload_keeps_the_old_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("enc.yaml");
    std::fs::write(&cfg, config(&secretbox("good", 4))).unwrap();
    let s = Server::start_with(&["--encryption-provider-config", cfg.to_str().unwrap(), "--encryption-provider-config-reload-seconds", "1"]).await;
    let c = s.client().await;
    namespace(&c, "br").await;
    std::fs::write(&cfg, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys: []\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, _, m) = raw(&c, "GET", "/metrics", "", b"").await;
        if m.as_str().unwrap_or_default().contains("apiserver_encryption_config_controller_automatic_reloads_total{status=\"failure\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the bad file was never seen: {m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    create_secrets(&c, "br", 1, "after-bad-reload").await;
    assert_eq!(status(&c).await["counts"]["secretbox:good"], 1);
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("resources[0].providers[0].secretbox.keys: Required value: at least one keys is required"), "{log}");
}

#[tokio::test]
async fn tampered_and_truncated_values_fail_alone_and_leak_nothing() {
    let mut s = Server::start().await;
    let c = s.client().await;
    namespace(&c, "tam").await;
    create_secrets(&c, "tam", 3, "tamper-marker").await;
    s.stop();
    let conn = rusqlite::Connection::open(s.data_dir().join("state.db")).unwrap();
    let flip = |key: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut v: Vec<u8> = conn.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0)).unwrap();
        f(&mut v);
        conn.execute("UPDATE kv SET value = ?1 WHERE key = ?2", rusqlite::params![v, key]).unwrap();
    };
    flip("/registry/secrets/tam/s0", &|v| {
        let n = v.len();
        v[n - 3] ^= 0x40;
    });
    flip("/registry/secrets/tam/s1", &|v| v.truncate(30));
    drop(conn);
    s.launch().await;
    let c = s.client().await;
    for name in ["s0", "s1"] {
        let (code, _, st) = raw(&c, "GET", &format!("/api/v1/namespaces/tam/secrets/{name}"), "", b"").await;
        assert_eq!((code, st["reason"].as_str()), (500, Some("InternalError")), "{st}");
        let msg = st["message"].as_str().unwrap();
        assert!(msg.contains(&format!("/registry/secrets/tam/{name}")), "{msg}");
        assert!(!msg.contains("tamper-marker"), "{msg}");
    }
    let api: Api<Secret> = Api::namespaced(c.clone(), "tam");
    assert_eq!(api.get("s2").await.unwrap().data.unwrap()["v"].0, b"tamper-marker-2");
    let (ok, out) = s.lockbox(&["storage", "status", "--data-dir", s.data_dir().to_str().unwrap()]);
    assert!(!ok && out.contains("UNREADABLE") && out.contains("/registry/secrets/tam/s0"), "{out}");
    assert!(!std::fs::read_to_string(&s.log).unwrap().contains("tamper-marker"));
}

#[tokio::test]
async fn kms_v2_with_openbao_transit_reuses_its_seed() {
    let (_bao, addr) = common::openbao().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kms.sock");
    let plugin_log = std::fs::File::create(dir.path().join("plugin.log")).unwrap();
    let _plugin = common::Peer(
        Command::new(env!("CARGO_BIN_EXE_lockbox"))
            .args(["kms-plugin", "--socket", socket.to_str().unwrap(), "--vault-addr", &addr, "--transit-key", "lockbox-test"])
            .env("VAULT_TOKEN", "root")
            .stdout(Stdio::null())
            .stderr(plugin_log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "plugin did not start: {}", std::fs::read_to_string(dir.path().join("plugin.log")).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cfg = dir.path().join("enc.yaml");
    std::fs::write(
        &cfg,
        config(&format!("  - kms:\n      apiVersion: v2\n      name: bao\n      endpoint: unix://{}\n      timeout: 3s\n{IDENTITY}", socket.display())),
    )
    .unwrap();
    let mut s = Server::start_with(&["--encryption-provider-config", cfg.to_str().unwrap()]).await;
    let c = s.client().await;
    namespace(&c, "kms").await;
    let (code, _, _) = raw(&c, "GET", "/healthz/kms-providers", "", b"").await;
    assert_eq!(code, 200);

    // 1,000 writes, 16 at a time.
    let api: Api<Secret> = Api::namespaced(c.clone(), "kms");
    for chunk in (0..1000).collect::<Vec<_>>().chunks(16) {
        join_all(chunk.iter().map(|i| {
            let api = api.clone();
            async move {
                let s: Secret = serde_json::from_value(json!({"metadata": {"name": format!("k{i}")}, "stringData": {"v": format!("kms-marker-{i}")}})).unwrap();
                api.create(&PostParams::default(), &s).await.unwrap();
            }
        }))
        .await;
    }
    let (_, _, metrics) = raw(&c, "GET", "/metrics", "", b"").await;
    let metrics = metrics.as_str().unwrap().to_string();
    let encrypt_calls = metric(&metrics, "apiserver_envelope_encryption_kms_operations_latency_seconds_count", "/v2.KeyManagementService/Encrypt");
    let writes = metric(&metrics, "apiserver_storage_transformation_operations_total", "to_storage\",transformer_prefix=\"k8s:enc:kms:v2:bao:");
    assert!(writes >= 1000.0, "{metrics}");
    let reads =
        metric(&metrics, "apiserver_storage_transformation_operations_total", "from_storage\",transformer_prefix=\"k8s:enc:kms:v2:bao:\",status=\"OK\"");
    assert!(reads >= 1.0, "reads are counted too:\n{metrics}");
    assert_eq!(encrypt_calls, 1.0, "one seed for 1,000 writes:\n{metrics}");
    assert_eq!(status(&c).await["counts"]["kms:bao"], 1000);

    // A restarted server decrypts its seed once through the plugin and reads everything.
    s.stop();
    s.launch().await;
    let c = s.client().await;
    let api: Api<Secret> = Api::namespaced(c.clone(), "kms");
    assert_eq!(api.get("k999").await.unwrap().data.unwrap()["v"].0, b"kms-marker-999");
    assert_eq!(api.get("k1").await.unwrap().data.unwrap()["v"].0, b"kms-marker-1");
    let (_, _, metrics) = raw(&c, "GET", "/metrics", "", b"").await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert_eq!(metric(&metrics, "apiserver_envelope_encryption_kms_operations_latency_seconds_count", "/v2.KeyManagementService/Decrypt"), 1.0, "{metrics}");

    // Rotating the Transit key changes the key id: the next probe makes a new seed, old data
    // is stale, and a migration moves it.
    let bao = common::peers_venv().join("bin/bao");
    let rotated = Command::new(bao).args(["write", "-f", "transit/keys/lockbox-test/rotate"]).env("BAO_ADDR", &addr).env("BAO_TOKEN", "root").output().unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let (code, _, _) = raw(&c, "GET", "/healthz/kms-providers", "", b"").await;
    assert_eq!(code, 200);
    let st = status(&c).await;
    assert_eq!(st["stale"].as_array().unwrap().len(), 1000, "old seed's objects are stale after rotation");
    let (ok, out) = s.lockbox(&["storage", "migrate", "--resource", "secrets", "--data-dir", s.data_dir().to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(status(&c).await["stale"], json!([]));
    assert_eq!(find_in_dir(&s.data_dir(), b_64("kms-marker-5").as_bytes()), Vec::<String>::new());
}

/// The value of the first sample whose line contains `name` and `label_part`.
fn metric(text: &str, name: &str, label_part: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name) && l.contains(label_part)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}
