//! KMS v2: envelope encryption through a plugin that speaks Kubernetes' `v2.KeyManagementService`
//! gRPC API over a unix socket.
//!
//! Byte-compatible with kube-apiserver (k8s.io/apiserver/.../envelope/kmsv2): after the prefix
//! `k8s:enc:kms:v2:<name>:` comes a protobuf `EncryptedObject`. lockbox writes the default
//! seed mode: one random 32-byte seed per provider per process, sent to the plugin once
//! (`Encrypt`), and for every write a fresh random 32-byte `info`, the data key
//! `HKDF-Expand(SHA-256, seed, info)[..32]`, a random 12-byte nonce and AES-GCM with the storage
//! key as authenticated data: `encryptedData = info || nonce || ciphertext || tag`. The plugin is
//! therefore not called per write, only when the seed rotates (its Status `key_id` changed) or a
//! read meets a seed it has not decrypted yet (cached afterwards).
//!
//! `Transformer` is synchronous, so the gRPC client lives on its own thread with its own runtime;
//! calls are rare, and the thread keeps probing `Status` (every minute, every 10 s while
//! failing) as kube-apiserver does. Writes fail 3 minutes after the last good Status.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::providers::{gcm_open, gcm_seal};
use crate::{Error, ReadInfo, Transformer};

/// The gRPC API (kubernetes/kms apis/v2/api.proto) and the stored envelope
/// (apiserver envelope/kmsv2/v2/api.proto), as prost messages.
pub mod proto {
    use std::collections::BTreeMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusResponse {
        #[prost(string, tag = "1")]
        pub version: String,
        #[prost(string, tag = "2")]
        pub healthz: String,
        #[prost(string, tag = "3")]
        pub key_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DecryptRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub ciphertext: Vec<u8>,
        #[prost(string, tag = "2")]
        pub uid: String,
        #[prost(string, tag = "3")]
        pub key_id: String,
        #[prost(btree_map = "string, bytes", tag = "4")]
        pub annotations: BTreeMap<String, Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DecryptResponse {
        #[prost(bytes = "vec", tag = "1")]
        pub plaintext: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EncryptRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub plaintext: Vec<u8>,
        #[prost(string, tag = "2")]
        pub uid: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EncryptResponse {
        #[prost(bytes = "vec", tag = "1")]
        pub ciphertext: Vec<u8>,
        #[prost(string, tag = "2")]
        pub key_id: String,
        #[prost(btree_map = "string, bytes", tag = "3")]
        pub annotations: BTreeMap<String, Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EncryptedObject {
        #[prost(bytes = "vec", tag = "1")]
        pub encrypted_data: Vec<u8>,
        #[prost(string, tag = "2")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "3")]
        pub encrypted_dek_source: Vec<u8>,
        #[prost(btree_map = "string, bytes", tag = "4")]
        pub annotations: BTreeMap<String, Vec<u8>>,
        #[prost(int32, tag = "5")]
        pub encrypted_dek_source_type: i32,
    }

    pub const STATUS: &str = "/v2.KeyManagementService/Status";
    pub const ENCRYPT: &str = "/v2.KeyManagementService/Encrypt";
    pub const DECRYPT: &str = "/v2.KeyManagementService/Decrypt";
}

/// `EncryptedDEKSourceType`.
pub const AES_GCM_KEY: i32 = 0;
pub const HKDF_SHA256_XNONCE_AES_GCM_SEED: i32 = 1;

const MAX_KEY_ID: usize = 1024;
const MAX_DEK_SOURCE: usize = 1024;
const MAX_ANNOTATIONS: usize = 32 * 1024;
const WRITE_TTL: Duration = Duration::from_secs(180);

/// Checks an envelope as kube-apiserver's ValidateEncryptedObject does.
pub fn validate(o: &proto::EncryptedObject) -> Result<(), String> {
    if o.encrypted_dek_source_type != AES_GCM_KEY && o.encrypted_dek_source_type != HKDF_SHA256_XNONCE_AES_GCM_SEED {
        return Err(format!("unknown encryptedDEKSourceType: {}", o.encrypted_dek_source_type));
    }
    if o.encrypted_data.is_empty() {
        return Err("encrypted data is empty".into());
    }
    validate_dek_source(&o.encrypted_dek_source)?;
    validate_key_id(&o.key_id)?;
    let total: usize = o.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_ANNOTATIONS {
        return Err(format!("failed to validate annotations: total size of annotations is {total}, which exceeds the max size of {MAX_ANNOTATIONS}"));
    }
    Ok(())
}

fn validate_dek_source(s: &[u8]) -> Result<(), String> {
    if s.is_empty() {
        return Err("failed to validate encrypted DEK source: encrypted DEK source is empty".into());
    }
    if s.len() > MAX_DEK_SOURCE {
        return Err(format!(
            "failed to validate encrypted DEK source: encrypted DEK source is {} bytes, which exceeds the max size of {MAX_DEK_SOURCE}",
            s.len()
        ));
    }
    Ok(())
}

fn validate_key_id(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("failed to validate key id: keyID is empty".into());
    }
    if k.len() > MAX_KEY_ID {
        return Err(format!("failed to validate key id: keyID is {} bytes, which exceeds the max size of {MAX_KEY_ID}", k.len()));
    }
    Ok(())
}

/// HKDF-Expand only (no extract, no salt), as kube-apiserver derives a per-write key from the seed.
pub fn derive_key(seed: &[u8], info: &[u8]) -> Result<[u8; 32], Error> {
    if seed.len() < 32 {
        return Err(Error::Undecryptable(format!("invalid seed length {} used for key generation", seed.len())));
    }
    let hk = hkdf::Hkdf::<Sha256>::from_prk(seed).map_err(|e| Error::Undecryptable(format!("failed to derive read key from KDF: {e}")))?;
    let mut key = [0u8; 32];
    hk.expand(info, &mut key).map_err(|e| Error::Undecryptable(format!("failed to derive read key from KDF: {e}")))?;
    Ok(key)
}

/// Opens `encryptedData` given the plaintext DEK source.
pub fn open_data(kind: i32, dek_source: &[u8], data: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
    let short = || Error::Undecryptable("the stored data was shorter than the required size".into());
    match kind {
        HKDF_SHA256_XNONCE_AES_GCM_SEED => {
            if data.len() < 32 {
                return Err(short());
            }
            let (info, rest) = data.split_at(32);
            let key = derive_key(dek_source, info)?;
            if rest.len() < 12 {
                return Err(short());
            }
            let (nonce, sealed) = rest.split_at(12);
            gcm_open(&key, nonce, sealed, aad)
        }
        _ => {
            if data.len() < 12 {
                return Err(short());
            }
            let (nonce, sealed) = data.split_at(12);
            gcm_open(dek_source, nonce, sealed, aad)
        }
    }
}

/// Seals data as a seed-mode write does; public for the compatibility tests.
pub fn seal_for_test(seed: &[u8], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    seal_data(seed, plaintext, aad).expect("seal")
}

fn seal_data(seed: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
    let mut info = [0u8; 32];
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut info);
    rand::rng().fill_bytes(&mut nonce);
    let key = derive_key(seed, &info)?;
    let sealed = gcm_seal(&key, &nonce, plaintext, aad)?;
    let mut out = Vec::with_capacity(44 + sealed.len());
    out.extend_from_slice(&info);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The seed in use for writes, and what the plugin returned for it.
#[derive(Clone)]
struct WriteState {
    seed: Arc<[u8; 32]>,
    encrypted_seed: Vec<u8>,
    key_id: String,
    annotations: BTreeMap<String, Vec<u8>>,
    valid_until: Instant,
}

/// Counters of plugin calls, for metrics and for tests that prove the seed is reused.
#[derive(Default)]
pub struct KmsStats {
    pub encrypt_calls: AtomicU64,
    pub decrypt_calls: AtomicU64,
    pub status_calls: AtomicU64,
    pub failures: AtomicU64,
}

enum Call {
    Decrypt(proto::DecryptRequest, std::sync::mpsc::Sender<Result<Vec<u8>, String>>),
    Probe(std::sync::mpsc::Sender<Result<(), String>>),
}

/// A KMS v2 provider: the transformer, its plugin connection and its state.
pub struct KmsV2 {
    pub name: String,
    state: Arc<RwLock<Option<WriteState>>>,
    /// Plaintext seeds by sha256(type, encrypted seed, key id).
    seeds: Arc<Mutex<HashMap<[u8; 32], Arc<Vec<u8>>>>>,
    calls: tokio::sync::mpsc::UnboundedSender<Call>,
    timeout: Duration,
    pub stats: Arc<KmsStats>,
    last_error: Arc<Mutex<Option<String>>>,
}

fn cache_key(kind: i32, enc: &[u8], key_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kind.to_be_bytes());
    h.update((enc.len() as u32).to_be_bytes());
    h.update(enc);
    h.update(key_id.as_bytes());
    h.finalize().into()
}

/// Parses `unix:///path` (or `unix:///@abstract`) into a socket path.
pub fn socket_path(endpoint: &str) -> Result<String, String> {
    if endpoint.is_empty() {
        return Err("remote KMS provider can't use empty string as endpoint".into());
    }
    match endpoint.split_once("://") {
        Some(("unix", path)) if !path.is_empty() => Ok(path.to_string()),
        Some((scheme, _)) => Err(format!("unsupported scheme {scheme:?} for remote KMS provider")),
        None => Err(format!("invalid endpoint {endpoint:?} for remote KMS provider")),
    }
}

fn parse_timeout(t: Option<&str>) -> Result<Duration, String> {
    let Some(t) = t.filter(|t| !t.is_empty()) else { return Ok(Duration::from_secs(3)) };
    let (num, unit) = t.split_at(t.find(|c: char| c.is_alphabetic()).unwrap_or(t.len()));
    let n: f64 = num.parse().map_err(|_| format!("invalid timeout {t:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid timeout {t:?}")),
    };
    if secs <= 0.0 {
        return Err(format!("Invalid value: {t:?}: timeout should be a positive value"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl KmsV2 {
    /// Connects to the plugin in the background and starts probing it.
    pub fn start(cfg: &crate::config::KmsConfig) -> Result<KmsV2, String> {
        let path = socket_path(&cfg.endpoint)?;
        let timeout = parse_timeout(cfg.timeout.as_deref())?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let kms = KmsV2 {
            name: cfg.name.clone(),
            state: Arc::new(RwLock::new(None)),
            seeds: Arc::new(Mutex::new(HashMap::new())),
            calls: tx,
            timeout,
            stats: Arc::new(KmsStats::default()),
            last_error: Arc::new(Mutex::new(None)),
        };
        let worker = Worker { path, timeout, state: kms.state.clone(), stats: kms.stats.clone(), last_error: kms.last_error.clone(), name: cfg.name.clone() };
        std::thread::Builder::new()
            .name(format!("kms-{}", cfg.name))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the KMS client runtime");
                        return;
                    }
                };
                rt.block_on(worker.run(rx));
            })
            .map_err(|e| e.to_string())?;
        // One inline probe, as kube-apiserver does at start; a failure is not fatal.
        if let Err(e) = kms.probe() {
            tracing::warn!(provider = %cfg.name, error = %e, "KMS v2 plugin is not ready yet; retrying in the background");
        }
        Ok(kms)
    }

    /// Runs Status now (and rotates the seed if the key id changed).
    pub fn probe(&self) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.calls.send(Call::Probe(tx)).map_err(|_| "KMS client stopped".to_string())?;
        rx.recv_timeout(self.timeout * 3).map_err(|_| format!("KMS provider {} did not answer in time", self.name))?
    }

    /// The health of the provider for /healthz/kms-providers.
    pub fn health(&self) -> Result<(), String> {
        self.probe().map_err(|e| format!("kmsv2 Provider {} is not healthy, error: {e}", self.name))
    }

    fn decrypt_seed(&self, o: &proto::EncryptedObject) -> Result<Arc<Vec<u8>>, Error> {
        let key = cache_key(o.encrypted_dek_source_type, &o.encrypted_dek_source, &o.key_id);
        if let Some(seed) = self.seeds.lock().map_err(|_| Error::Undecryptable("lock".into()))?.get(&key) {
            return Ok(seed.clone());
        }
        let req = proto::DecryptRequest {
            ciphertext: o.encrypted_dek_source.clone(),
            uid: uuid::Uuid::new_v4().to_string(),
            key_id: o.key_id.clone(),
            annotations: o.annotations.clone(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        self.calls.send(Call::Decrypt(req, tx)).map_err(|_| Error::Undecryptable("KMS client stopped".into()))?;
        let plain = rx
            .recv_timeout(self.timeout + Duration::from_secs(1))
            .map_err(|_| Error::Undecryptable(format!("failed to decrypt DEK, error: KMS provider {} timed out", self.name)))?
            .map_err(|e| Error::Undecryptable(format!("failed to decrypt DEK, error: {e}")))?;
        let seed = Arc::new(plain);
        if let Ok(mut cache) = self.seeds.lock() {
            cache.insert(key, seed.clone());
        }
        Ok(seed)
    }
}

impl Transformer for KmsV2 {
    fn transform_to_storage(&self, plaintext: &[u8], context: &str) -> Result<Bytes, Error> {
        let state = self.state.read().map_err(|_| Error::Undecryptable("lock".into()))?.clone();
        let Some(state) = state else {
            return Err(Error::Undecryptable(format!("KMS provider {} has not provided a key yet", self.name)));
        };
        if Instant::now() > state.valid_until {
            let hash = hex_sha256(state.key_id.as_bytes());
            return Err(Error::Undecryptable(format!(
                "encryptedDEKSource with keyID hash \"sha256:{hash}\" expired: the KMS plugin has not answered Status for over 3 minutes"
            )));
        }
        let data = seal_data(state.seed.as_ref(), plaintext, context.as_bytes())?;
        let obj = proto::EncryptedObject {
            encrypted_data: data,
            key_id: state.key_id.clone(),
            encrypted_dek_source: state.encrypted_seed.clone(),
            annotations: state.annotations.clone(),
            encrypted_dek_source_type: HKDF_SHA256_XNONCE_AES_GCM_SEED,
        };
        validate(&obj).map_err(Error::Undecryptable)?;
        Ok(Bytes::from(obj.encode_to_vec()))
    }

    fn transform_from_storage(&self, stored: &[u8], context: &str) -> Result<(Bytes, ReadInfo), Error> {
        let obj = proto::EncryptedObject::decode(stored).map_err(|e| Error::Undecryptable(format!("failed to unmarshal encrypted object: {e}")))?;
        validate(&obj).map_err(Error::Undecryptable)?;
        // Seeds this process generated are known without asking the plugin.
        let current = self.state.read().map_err(|_| Error::Undecryptable("lock".into()))?.clone();
        let seed: Arc<Vec<u8>> = match &current {
            Some(s) if s.encrypted_seed == obj.encrypted_dek_source && s.key_id == obj.key_id => Arc::new(s.seed.to_vec()),
            _ => self.decrypt_seed(&obj)?,
        };
        let plain = open_data(obj.encrypted_dek_source_type, &seed, &obj.encrypted_data, context.as_bytes())?;
        let stale = current.as_ref().is_none_or(|s| s.key_id != obj.key_id) || obj.encrypted_dek_source_type != HKDF_SHA256_XNONCE_AES_GCM_SEED;
        Ok((Bytes::from(plain), ReadInfo { stale }))
    }
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

struct Worker {
    path: String,
    timeout: Duration,
    state: Arc<RwLock<Option<WriteState>>>,
    stats: Arc<KmsStats>,
    last_error: Arc<Mutex<Option<String>>>,
    name: String,
}

type Channel = tonic::transport::Channel;

impl Worker {
    async fn channel(&self) -> Result<Channel, String> {
        let path = self.path.clone();
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        tonic::transport::Endpoint::try_from("http://localhost")
            .map_err(|e| e.to_string())?
            .timeout(self.timeout)
            .connect_with_connector(connector)
            .await
            .map_err(|e| format!("cannot connect to KMS plugin at {}: {e}", self.path))
    }

    async fn unary<Req, Resp>(&self, ch: &Channel, method: &'static str, req: Req) -> Result<Resp, String>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(ch.clone());
        grpc.ready().await.map_err(|e| e.to_string())?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let started = std::time::Instant::now();
        let resp = match tokio::time::timeout(self.timeout, grpc.unary(tonic::Request::new(req), path, codec)).await {
            Err(_) => {
                crate::metrics::kms_call(&self.name, method, "DeadlineExceeded", started.elapsed());
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                return Err(format!("{method}: deadline exceeded"));
            }
            Ok(r) => r,
        };
        crate::metrics::kms_call(&self.name, method, grpc_code_name(resp.as_ref().err().map(|s| s.code())), started.elapsed());
        let resp = resp.map_err(|s| format!("{method}: rpc error: code = {:?} desc = {}", s.code(), s.message()));
        if resp.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        Ok(resp?.into_inner())
    }

    /// Status, then a new seed if the key id changed (or there is none).
    async fn check(&self, ch: &Channel) -> Result<(), String> {
        self.stats.status_calls.fetch_add(1, Ordering::Relaxed);
        let status: proto::StatusResponse = self.unary(ch, proto::STATUS, proto::StatusRequest {}).await?;
        if status.healthz != "ok" {
            return Err(format!("got unexpected healthz status: {}", status.healthz));
        }
        if status.version != "v2" && status.version != "v2beta1" {
            return Err(format!("expected KMSv2 API version v2, got {}", status.version));
        }
        validate_key_id(&status.key_id)?;
        let valid_until = Instant::now() + WRITE_TTL;
        {
            let mut st = self.state.write().map_err(|_| "lock".to_string())?;
            if let Some(s) = st.as_mut().filter(|s| s.key_id == status.key_id) {
                s.valid_until = valid_until;
                return Ok(());
            }
        }
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        self.stats.encrypt_calls.fetch_add(1, Ordering::Relaxed);
        let resp: proto::EncryptResponse =
            self.unary(ch, proto::ENCRYPT, proto::EncryptRequest { plaintext: seed.to_vec(), uid: uuid::Uuid::new_v4().to_string() }).await?;
        validate_dek_source(&resp.ciphertext)?;
        validate_key_id(&resp.key_id)?;
        if resp.key_id != status.key_id {
            return Err(format!("failed to rotate DEK: Encrypt returned key id {:?} but Status said {:?}", resp.key_id, status.key_id));
        }
        *self.state.write().map_err(|_| "lock".to_string())? =
            Some(WriteState { seed: Arc::new(seed), encrypted_seed: resp.ciphertext, key_id: resp.key_id, annotations: resp.annotations, valid_until });
        tracing::info!(provider = %self.name, "KMS v2 seed generated for the current key");
        Ok(())
    }

    async fn run(self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Call>) {
        let mut channel: Option<Channel> = None;
        let mut next_probe = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let call = tokio::select! {
                c = rx.recv() => match c { Some(c) => Some(c), None => return },
                _ = tokio::time::sleep_until(next_probe) => None,
            };
            if channel.is_none() {
                channel = self.channel().await.ok();
            }
            let result: Result<(), String> = match (&channel, call) {
                (None, Some(Call::Probe(reply))) => {
                    let e = format!("cannot connect to KMS plugin at {}", self.path);
                    let _ = reply.send(Err(e.clone()));
                    Err(e)
                }
                (None, Some(Call::Decrypt(_, reply))) => {
                    let _ = reply.send(Err(format!("cannot connect to KMS plugin at {}", self.path)));
                    continue;
                }
                (None, None) => Err(format!("cannot connect to KMS plugin at {}", self.path)),
                (Some(ch), Some(Call::Decrypt(req, reply))) => {
                    self.stats.decrypt_calls.fetch_add(1, Ordering::Relaxed);
                    let r: Result<proto::DecryptResponse, String> = self.unary(ch, proto::DECRYPT, req).await;
                    let _ = reply.send(r.map(|d| d.plaintext));
                    continue;
                }
                (Some(ch), Some(Call::Probe(reply))) => {
                    let r = self.check(ch).await;
                    let _ = reply.send(r.clone());
                    r
                }
                (Some(ch), None) => self.check(ch).await,
            };
            if let Ok(mut last) = self.last_error.lock() {
                *last = result.clone().err();
            }
            if result.is_err() {
                channel = None;
            }
            next_probe = tokio::time::Instant::now() + if result.is_ok() { Duration::from_secs(60) } else { Duration::from_secs(10) };
        }
    }
}

/// Builds the KMS v2 transformer for a config entry; plug into `EncryptionConfig::load`.
pub fn factory(registry: Arc<Mutex<Vec<Arc<KmsV2>>>>) -> impl Fn(&crate::config::KmsConfig) -> Result<Box<dyn Transformer>, String> {
    move |cfg| {
        let kms = Arc::new(KmsV2::start(cfg)?);
        if let Ok(mut r) = registry.lock() {
            r.push(kms.clone());
        }
        Ok(Box::new(Shared(kms)))
    }
}

/// A shared handle as a boxed transformer.
struct Shared(Arc<KmsV2>);

impl Transformer for Shared {
    fn transform_to_storage(&self, plaintext: &[u8], context: &str) -> Result<Bytes, Error> {
        self.0.transform_to_storage(plaintext, context)
    }
    fn transform_from_storage(&self, stored: &[u8], context: &str) -> Result<(Bytes, ReadInfo), Error> {
        self.0.transform_from_storage(stored, context)
    }
}

/// A gRPC status code as Go's codes.Code prints it (the metric label kube-apiserver uses).
fn grpc_code_name(code: Option<tonic::Code>) -> &'static str {
    use tonic::Code::*;
    match code {
        None | Some(Ok) => "OK",
        Some(Cancelled) => "Canceled",
        Some(Unknown) => "Unknown",
        Some(InvalidArgument) => "InvalidArgument",
        Some(DeadlineExceeded) => "DeadlineExceeded",
        Some(NotFound) => "NotFound",
        Some(AlreadyExists) => "AlreadyExists",
        Some(PermissionDenied) => "PermissionDenied",
        Some(ResourceExhausted) => "ResourceExhausted",
        Some(FailedPrecondition) => "FailedPrecondition",
        Some(Aborted) => "Aborted",
        Some(OutOfRange) => "OutOfRange",
        Some(Unimplemented) => "Unimplemented",
        Some(Internal) => "Internal",
        Some(Unavailable) => "Unavailable",
        Some(DataLoss) => "DataLoss",
        Some(Unauthenticated) => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_mode_round_trip_and_envelope_checks() {
        let seed = [9u8; 32];
        let data = seal_data(&seed, b"payload", b"/registry/secrets/a/b").unwrap();
        assert_eq!(data.len(), 32 + 12 + 7 + 16);
        assert_eq!(open_data(HKDF_SHA256_XNONCE_AES_GCM_SEED, &seed, &data, b"/registry/secrets/a/b").unwrap(), b"payload");
        assert!(open_data(HKDF_SHA256_XNONCE_AES_GCM_SEED, &seed, &data, b"/registry/secrets/a/c").is_err());
        assert!(open_data(HKDF_SHA256_XNONCE_AES_GCM_SEED, &seed, &data[..20], b"k").is_err());
        let obj = proto::EncryptedObject {
            encrypted_data: data,
            key_id: "".into(),
            encrypted_dek_source: vec![1],
            annotations: Default::default(),
            encrypted_dek_source_type: 1,
        };
        assert_eq!(validate(&obj).unwrap_err(), "failed to validate key id: keyID is empty");
        assert!(validate(&proto::EncryptedObject { encrypted_dek_source_type: 7, ..obj.clone() }).unwrap_err().contains("unknown encryptedDEKSourceType: 7"));
        assert_eq!(socket_path("unix:///tmp/kms.sock").unwrap(), "/tmp/kms.sock");
        assert!(socket_path("tcp://x").unwrap_err().contains("unsupported scheme"));
        assert_eq!(parse_timeout(Some("3s")).unwrap(), Duration::from_secs(3));
    }
}
