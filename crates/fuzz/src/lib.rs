//! Every parser a client's bytes reach, as fuzzing entry points, and a mutation harness that
//! drives them on the stable toolchain (no coverage guidance: seeds, byte mutations, splices
//! and a dictionary of each format's tokens). The same entry points serve cargo-fuzz's
//! libFuzzer targets in `fuzz/` on nightly.
//!
//! A target fails when it panics or takes longer than [`SLOW`] on one input; either way the
//! input is written to `crashes/` so that it can be replayed and added to the corpus.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Tokens the mutator inserts: what makes an input of this format interesting.
    pub dictionary: &'static [&'static [u8]],
}

const JSON_TOKENS: &[&[u8]] =
    &[b"{", b"}", b"[", b"]", b"\"", b":", b",", b"null", b"true", b"1e999", b"-0", b"\\u0000", b"\\ud800", b"\"metadata\"", b"\"data\"", b"\"name\""];
const YAML_TOKENS: &[&[u8]] =
    &[b"{", b"[", b": ", b"- ", b"&a ", b"*a", b"!!binary ", b"<<: ", b"? ", b"|\n", b">\n", b"'", b"\"", b"#", b"---\n", b"\n  ", b"\t", b"%YAML 1.1\n"];
const SELECTOR_TOKENS: &[&[u8]] =
    &[b"=", b"==", b"!=", b",", b"!", b"in", b"notin", b"(", b")", b" ", b"\\", b"\xc3\xbf", b"metadata.name", b"a.b/c", b"<", b">"];

pub const TARGETS: &[Target] = &[
    Target { name: "decode_json", run: decode_json, dictionary: JSON_TOKENS },
    Target { name: "decode_yaml", run: decode_yaml, dictionary: YAML_TOKENS },
    Target {
        name: "decode_protobuf",
        run: decode_protobuf,
        dictionary: &[b"k8s\0", b"\n", b"\x12", b"\x1a", b"\x22", b"\x0a\x02v1", b"\x12\x09ConfigMap", b"\x7f", b"\x80"],
    },
    Target { name: "label_selector", run: label_selector, dictionary: SELECTOR_TOKENS },
    Target { name: "field_selector", run: field_selector, dictionary: SELECTOR_TOKENS },
    Target {
        name: "json_patch",
        run: json_patch,
        dictionary: &[
            b"{\"op\":\"copy\",\"from\":\"/data\",\"path\":\"/x\"}",
            b"\"op\"",
            b"\"add\"",
            b"\"remove\"",
            b"\"move\"",
            b"\"test\"",
            b"\"path\"",
            b"\"from\"",
            b"/-",
            b"/~1",
            b"/~0",
            b"/0",
        ],
    },
    Target { name: "merge_patch", run: merge_patch, dictionary: JSON_TOKENS },
    Target {
        name: "strategic_merge_patch",
        run: strategic_merge_patch,
        dictionary: &[
            b"\"$patch\"",
            b"\"replace\"",
            b"\"delete\"",
            b"\"$retainKeys\"",
            b"\"$setElementOrder/containers\"",
            b"\"$deleteFromPrimitiveList/finalizers\"",
            b"\"containers\"",
            b"\"env\"",
            b"\"name\"",
            b"null",
            b"[",
            b"{",
        ],
    },
    Target { name: "server_side_apply", run: server_side_apply, dictionary: JSON_TOKENS },
    Target {
        name: "encryption_config",
        run: encryption_config,
        dictionary: &[
            b"resources:\n",
            b"- resources: [secrets]\n",
            b"providers:\n",
            b"- aescbc:\n",
            b"keys:\n",
            b"- name: k\n",
            b"secret: ",
            b"identity: {}\n",
            b"kms:\n",
            b"apiVersion: v2\n",
            b"*.*",
            b"secrets.*",
            b"  ",
        ],
    },
    Target { name: "bearer_token", run: bearer_token, dictionary: &[b"Bearer ", b"bearer", b" ", b"\t", b"eyJ", b".", b"\0", b"\xc3\xbf"] },
    Target { name: "jwt", run: jwt, dictionary: &[b"eyJ", b".", b"eyJhbGciOiJFUzI1NiJ9", b"eyJhbGciOiJub25lIn0", b"=", b"-", b"_"] },
    Target {
        name: "spdy_frames",
        run: spdy_frames,
        dictionary: &[b"\x80\x03\x00\x01", b"\x80\x03\x00\x03", b"\x80\x03\x00\x06", b"\x00\x00\x00\x01", b"\x01", b"\xff\xff\xff", b"\x78\xbb"],
    },
];

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or_default()
}

pub fn decode_json(data: &[u8]) {
    let _ = api::codec::decode("application/json", data, "ConfigMap");
}

pub fn decode_yaml(data: &[u8]) {
    let _ = api::codec::decode("application/yaml", data, "ConfigMap");
}

pub fn decode_protobuf(data: &[u8]) {
    let _ = api::codec::decode(api::protobuf::CONTENT_TYPE, data, "ConfigMap");
}

pub fn label_selector(data: &[u8]) {
    if let Ok(s) = api::selector::LabelSelector::parse(text(data)) {
        let labels = json!({"app": "web", "tier": "5", "ÿ": "ÿ"});
        let _ = s.matches(labels.as_object());
    }
}

pub fn field_selector(data: &[u8]) {
    if let Ok(s) = api::selector::FieldSelector::parse(text(data)) {
        let _ = s.exact_name();
        let _ = s.matches(|f| Some(f.to_string()));
    }
}

/// The object patches are applied to: a Pod, with every list kind strategic merge knows.
fn original() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}, "finalizers": ["f"], "ownerReferences": [{"uid": "u", "name": "o"}]},
        "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "v"}], "ports": [{"containerPort": 80}], "volumeMounts": [{"name": "v", "mountPath": "/m"}]}],
            "volumes": [{"name": "v", "emptyDir": {}}]},
        "data": {"k": "v"}})
}

pub fn json_patch(data: &[u8]) {
    let _ = api::patch::json_patch(&original(), data);
}

pub fn merge_patch(data: &[u8]) {
    let _ = api::patch::merge_patch(&original(), data);
}

pub fn strategic_merge_patch(data: &[u8]) {
    let _ = api::patch::strategic_merge_patch(&original(), data);
}

pub fn server_side_apply(data: &[u8]) {
    let Ok(decoded) = api::codec::decode("application/yaml", data, "ConfigMap") else { return };
    let current = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "managedFields": [{"manager": "m", "operation": "Apply", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:k": {}}}}]}, "data": {"k": "v"}});
    for force in [false, true] {
        let _ = api::fieldmanager::apply(Some(&current), &decoded.value, "fuzz", "", force, &api::kinds::CONFIGMAPS);
        let _ = api::fieldmanager::apply(None, &decoded.value, "fuzz", "", force, &api::kinds::CONFIGMAPS);
    }
}

pub fn encryption_config(data: &[u8]) {
    let no_kms: crypt::config::KmsFactory = &|_| Err("no KMS here".to_string());
    let _ = crypt::config::EncryptionConfig::parse(text(data), no_kms);
}

pub fn bearer_token(data: &[u8]) {
    let Ok(v) = http::HeaderValue::from_bytes(data) else { return };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, v);
    if let Some(token) = apiserver::authn::bearer(&headers) {
        let file = auth::tokenfile::TokenFile::parse("t0k3n,user,1,\"a,b\"\n").expect("token file");
        let _ = file.authenticate(token);
    }
    let _ = auth::tokenfile::TokenFile::parse(text(data));
}

/// A fixed P-256 key, so that every run verifies against the same issuer.
const SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgki5HkOQbIbDBAsJp
VsJOiUXScj2kR3vlvJ0HNCbjhJ2hRANCAARKY0YkD1FD+EmcffxmsnUUC0lDJtNN
aZaUA8G4Qo+FqgW//bOBKSiF+Gu/u0/bvAjvg0jwuAWvKVKzsGy89hDm
-----END PRIVATE KEY-----
";

pub fn jwt(data: &[u8]) {
    thread_local! {
        static SIGNER: auth::tokens::TokenSigner = auth::tokens::TokenSigner::from_pem(SIGNING_KEY).expect("signing key");
    }
    SIGNER.with(|s| {
        let _ = s.verify(text(data), &["https://kubernetes.default.svc.cluster.local".to_string()]);
    });
}

pub fn spdy_frames(data: &[u8]) {
    let _ = agent::spdy::read_client_frames(data);
}

/// One input taking longer than this is a failure (a hang, or work out of proportion).
pub const SLOW: Duration = Duration::from_secs(2);

/// xorshift64*: small, seedable, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A mutation of `input`: a few edits, each a bit flip, a random or boundary byte, an
/// insertion of a dictionary token, a deletion, a duplication (which makes depth and
/// repetition), or a splice with another corpus entry.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], dictionary: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = [0u8, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'['][rng.below(8)];
            }
            2 if !dictionary.is_empty() => {
                let token = dictionary[rng.below(dictionary.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(64)).min(out.len());
                let piece: Vec<u8> = out[start..end].to_vec();
                for _ in 0..1 + rng.below(8) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.insert(at, rng.next_u64() as u8),
        }
    }
    // Bodies are bounded by the server (3 MiB); inputs here stay small so runs are fast.
    out.truncate(64 << 10);
    out
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub executions: u64,
    /// Inputs that panicked or were slow, as written to `crashes/`.
    pub failures: Vec<(PathBuf, String)>,
}

/// The seed corpus of a target: `corpus/NAME/*`.
pub fn seeds(target: &Target) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target.name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    let mut out: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

/// Runs one input; `Err` says why it failed.
pub fn execute(target: &Target, input: &[u8]) -> Result<(), String> {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let took = started.elapsed();
    match outcome {
        Err(_) => Err("panicked".into()),
        Ok(()) if took > SLOW => Err(format!("took {took:?}")),
        Ok(()) => Ok(()),
    }
}

/// Fuzzes `target` for `budget`: every seed first, then mutations of seeds and of the inputs
/// that were mutated from them, from `seed`. Failing inputs are saved under `crashes/`.
pub fn run(target: &Target, budget: Duration, seed: u64) -> Report {
    let mut corpus = seeds(target);
    let mut report = Report::default();
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + budget;
    let fail = |input: &[u8], why: String, report: &mut Report| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes");
        let _ = std::fs::create_dir_all(&dir);
        let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let path = dir.join(format!("{}-{hash:016x}", target.name));
        let _ = std::fs::write(&path, input);
        report.failures.push((path, why));
    };
    for input in corpus.clone() {
        report.executions += 1;
        if let Err(why) = execute(target, &input) {
            fail(&input, why, &mut report);
        }
    }
    while Instant::now() < deadline && report.failures.len() < 10 {
        let base = corpus[rng.below(corpus.len())].clone();
        let input = mutate(&mut rng, &base, &corpus, target.dictionary);
        report.executions += 1;
        if let Err(why) = execute(target, &input) {
            fail(&input, why, &mut report);
            continue;
        }
        // Keep some mutants to mutate further: without coverage feedback, a bounded random
        // pool lets edits accumulate (deeper nesting, longer repetitions).
        if corpus.len() < 256 {
            corpus.push(input);
        } else if rng.below(8) == 0 {
            let i = rng.below(corpus.len());
            corpus[i] = input;
        }
    }
    report
}
