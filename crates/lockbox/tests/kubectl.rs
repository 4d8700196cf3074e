//! End to end with the real kubectl: the seed's configuration steps, and more, under every
//! kubectl version bundled next to the one on PATH (1.27 to 1.33 on these machines).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;

fn shared_manifests() -> PathBuf {
    let base = std::env::var_os("LOCKBOX_SHARED").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = base.join("acceptance/manifests");
    assert!(dir.is_dir(), "the seed manifests are expected at {} (set LOCKBOX_SHARED)", dir.display());
    dir
}

struct Kubectl<'a> {
    bin: &'a Path,
    kubeconfig: PathBuf,
    cache: PathBuf,
    log: Vec<String>,
}

impl Kubectl<'_> {
    /// Runs kubectl; returns (success, stdout + stderr).
    fn run(&mut self, args: &[&str]) -> (bool, String) {
        let out = Command::new(self.bin).args(args).env("KUBECONFIG", &self.kubeconfig).env("KUBECACHEDIR", &self.cache).output().expect("run kubectl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        self.log.push(format!("$ kubectl {}\n{text}", args.join(" ")));
        (out.status.success(), text)
    }

    fn ok(&mut self, args: &[&str], needle: &str) {
        let (ok, text) = self.run(args);
        assert!(ok && text.contains(needle), "{}: `kubectl {}` should succeed with {needle:?}; got:\n{text}", self.bin.display(), args.join(" "));
    }

    fn fails(&mut self, args: &[&str], needle: &str) {
        let (ok, text) = self.run(args);
        assert!(!ok && text.contains(needle), "{}: `kubectl {}` should fail with {needle:?}; got:\n{text}", self.bin.display(), args.join(" "));
    }
}

async fn scenario(bin: &Path) {
    let s = Server::start().await;
    let m = shared_manifests();
    let work = s.dir.path();
    let mut k = Kubectl { bin, kubeconfig: s.kubeconfig(), cache: work.join("kubecache"), log: vec![] };
    let ns = ["-n", "ai-inference"];
    let file = |name: &str| m.join(name).to_string_lossy().into_owned();

    k.ok(&["create", "namespace", "ai-inference"], "namespace/ai-inference created");
    k.ok(&["apply", "-f", &file("01-configmaps.yaml")], "configmap/inference-config created");
    k.ok(&["apply", "-f", &file("01-configmaps.yaml")], "configmap/inference-config unchanged");
    k.ok(&["get", "cm", "inference-config", ns[0], ns[1], "-o", "jsonpath={.data.MAX_BATCH_SIZE}"], "32");
    k.fails(
        &["patch", "cm", "inference-config-immutable", ns[0], ns[1], "--type", "merge", "-p", r#"{"data":{"MODEL_CONFIG":"{}"}}"#],
        "field is immutable when `immutable` is set",
    );
    k.ok(&["apply", "-f", &file("02-secrets.yaml")], "secret/huggingface-token created");
    let (_, b64) = k.run(&["get", "secret", "huggingface-token", ns[0], ns[1], "-o", "jsonpath={.data.hf_token}"]);
    assert_eq!(String::from_utf8(base64_decode(b64.trim())).unwrap(), "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    k.fails(&["apply", "-f", &file("90-seed-verbatim-invalid.yaml")], "Invalid value: \"model-registry credentials\"");
    k.ok(
        &["create", "configmap", "inference-params", "--from-literal=MAX_BATCH_SIZE=32", "--from-literal=LOG_LEVEL=info", "--namespace=ai-inference"],
        "configmap/inference-params created",
    );
    k.ok(&["create", "secret", "generic", "hf-credentials", "--from-literal=hf_token=hf_xxxxx", "--namespace=ai-inference"], "secret/hf-credentials created");
    k.fails(&["create", "configmap", "inference-params", "--from-literal=a=b", "-n", "ai-inference"], "configmaps \"inference-params\" already exists");

    // A TLS secret from a certificate and key made by openssl.
    let (crt, key) = (work.join("tls.crt"), work.join("tls.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=inference", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(made.status.success());
    k.ok(
        &["create", "secret", "tls", "inference-tls", &format!("--cert={}", crt.display()), &format!("--key={}", key.display()), ns[0], ns[1]],
        "secret/inference-tls created",
    );

    // Tables: kube-apiserver's columns, and NAMESPACE from the row objects with -A.
    k.ok(&["get", "secrets", ns[0], ns[1]], "kubernetes.io/tls");
    let (_, all) = k.run(&["get", "secrets", "-A"]);
    assert!(all.lines().next().unwrap_or_default().split_whitespace().eq(["NAMESPACE", "NAME", "TYPE", "DATA", "AGE"]), "{all}");
    assert!(all.lines().any(|l| l.starts_with("ai-inference") && l.contains("hf-credentials") && l.contains("Opaque")), "{all}");
    let (_, cms) = k.run(&["get", "cm", ns[0], ns[1]]);
    assert!(cms.lines().any(|l| l.split_whitespace().take(2).eq(["inference-config", "4"])), "{cms}");
    k.ok(&["get", "ns"], "kube-system");

    // Labels, selectors, annotations, edits by patch and by server-side apply.
    k.ok(&["label", "cm", "inference-params", "tier=gpu", ns[0], ns[1]], "labeled");
    k.ok(&["get", "cm", "-l", "tier=gpu", ns[0], ns[1], "-o", "name"], "configmap/inference-params");
    k.ok(&["get", "cm", "-l", "tier in (cpu,gpu)", ns[0], ns[1], "-o", "name"], "configmap/inference-params");
    k.ok(&["annotate", "secret", "hf-credentials", "owner=ml", ns[0], ns[1]], "secret/hf-credentials annotate");
    k.ok(&["patch", "cm", "inference-params", ns[0], ns[1], "-p", r#"{"data":{"LOG_LEVEL":"debug"}}"#], "patched");
    k.ok(&["get", "cm", "inference-params", ns[0], ns[1], "-o", "jsonpath={.data.LOG_LEVEL}"], "debug");
    k.ok(&["apply", "--server-side", "-f", &file("01-configmaps.yaml")], "serverside-applied");
    k.ok(&["explain", "configmap.data"], "data");

    // Least privilege, as the seed's Role grants it, and the identity commands.
    k.ok(&["apply", "-f", &file("03-rbac.yaml")], "role.rbac.authorization.k8s.io/inference-secret-reader created");
    let sa = "--as=system:serviceaccount:ai-inference:inference-sa";
    k.ok(&["auth", "can-i", "get", "secrets/huggingface-token", ns[0], ns[1], sa], "yes");
    k.fails(&["auth", "can-i", "get", "secrets/hf-credentials", ns[0], ns[1], sa], "no");
    k.ok(&["get", "secret", "huggingface-token", ns[0], ns[1], sa, "-o", "jsonpath={.metadata.name}"], "huggingface-token");
    k.fails(
        &["get", "secret", "hf-credentials", ns[0], ns[1], sa],
        "secrets \"hf-credentials\" is forbidden: User \"system:serviceaccount:ai-inference:inference-sa\" cannot get resource \"secrets\" in API group \"\" in the namespace \"ai-inference\"",
    );
    let (ok, list) = k.run(&["auth", "can-i", "--list", ns[0], ns[1], sa]);
    for name in ["[huggingface-token]", "[model-registry-credentials]"] {
        assert!(ok && list.lines().any(|l| l.starts_with("secrets") && l.contains(name) && l.contains("[get list watch]")), "{list}");
    }
    k.ok(&["create", "token", "inference-sa", ns[0], ns[1], "--duration=10m"], "eyJ");
    if !bin.to_string_lossy().ends_with("1.27") {
        k.ok(&["auth", "whoami"], "system:masters");
    }
    k.ok(&["get", "rolebindings", ns[0], ns[1]], "Role/inference-secret-reader");
    k.ok(&["get", "sa", ns[0], ns[1]], "inference-sa");

    // kubectl's typed create commands: 1.32 and later send these bodies as protobuf.
    k.ok(&["create", "serviceaccount", "builder", ns[0], ns[1]], "serviceaccount/builder created");
    k.ok(
        &["create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps,secrets", "--resource-name=inference-config", ns[0], ns[1]],
        "role.rbac.authorization.k8s.io/cm-reader created",
    );
    k.ok(&["get", "role", "cm-reader", ns[0], ns[1], "-o", "jsonpath={.rules[0].apiGroups}"], r#"[""]"#);
    k.ok(
        &["create", "rolebinding", "cm-reader", "--role=cm-reader", "--serviceaccount=ai-inference:builder", ns[0], ns[1]],
        "rolebinding.rbac.authorization.k8s.io/cm-reader created",
    );
    k.ok(&["auth", "can-i", "get", "configmap/inference-config", "--as=system:serviceaccount:ai-inference:builder", ns[0], ns[1]], "yes");
    k.ok(&["create", "clusterrole", "ns-viewer", "--verb=get", "--resource=namespaces"], "clusterrole.rbac.authorization.k8s.io/ns-viewer created");
    k.ok(
        &["create", "clusterrolebinding", "ns-viewer", "--clusterrole=ns-viewer", "--user=jane"],
        "clusterrolebinding.rbac.authorization.k8s.io/ns-viewer created",
    );
    k.ok(&["auth", "can-i", "get", "namespaces", "--as=jane"], "yes");
    k.ok(&["create", "deployment", "web", "--image=busybox", "--replicas=0", ns[0], ns[1], "--", "sleep", "3600"], "deployment.apps/web created");
    k.ok(&["get", "deployment", "web", ns[0], ns[1], "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].command}"], r#"0 ["sleep","3600"]"#);
    k.ok(
        &["run", "one-shot", "--image=busybox", "--restart=Never", "--env=A=1", "--labels=x=y", ns[0], ns[1], "--dry-run=server", "--", "true"],
        "pod/one-shot created (server dry run)",
    );
    k.ok(&["delete", "clusterrolebinding,clusterrole", "ns-viewer"], "deleted");

    // Delete, then delete the namespace, which waits until it is gone.
    k.ok(&["delete", "cm", "inference-params", ns[0], ns[1]], "configmap \"inference-params\" deleted");
    k.fails(&["get", "cm", "inference-params", ns[0], ns[1]], "configmaps \"inference-params\" not found");
    k.ok(&["delete", "namespace", "ai-inference", "--timeout=30s"], "namespace \"ai-inference\" deleted");
    k.fails(&["get", "ns", "ai-inference"], "not found");
}

fn base64_decode(s: &str) -> Vec<u8> {
    let out = Command::new("base64").arg("-d").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().and_then(|mut c| {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(s.as_bytes())?;
        c.wait_with_output()
    });
    out.expect("base64").stdout
}

#[tokio::test]
async fn seed_configuration_steps_with_every_bundled_kubectl() {
    let versions = common::kubectls();
    assert!(!versions.is_empty(), "no kubectl on PATH");
    for bin in &versions {
        eprintln!("kubectl scenario with {}", bin.display());
        scenario(bin).await;
    }
}
