//! kube-apiserver's EncryptionConfiguration file (`apiserver.config.k8s.io/v1`), turned into a
//! transformer per resource.
//!
//! A malformed file is an error that names the field, never a silent fall-back to plaintext.
//! Resources the file does not mention are stored as they are (identity), as in Kubernetes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use crate::prefix::{PrefixEntry, PrefixTransformers};
use crate::providers::{AesCbc, AesGcm, Secretbox};
use crate::{Error, Identity, ReadInfo, Transformer};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ResourceConfig {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    aescbc: Option<KeysConfig>,
    aesgcm: Option<KeysConfig>,
    secretbox: Option<KeysConfig>,
    identity: Option<serde_norway::Value>,
    kms: Option<KmsConfig>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct KeysConfig {
    #[serde(default)]
    keys: Vec<Key>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Key {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KmsConfig {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub cachesize: Option<i64>,
    #[serde(default)]
    pub timeout: Option<String>,
}

/// One `resources` entry: which resources it covers and their provider chain.
pub struct Rule {
    pub resources: Vec<String>,
    pub transformers: Arc<PrefixTransformers>,
}

/// A loaded configuration.
pub struct EncryptionConfig {
    pub rules: Vec<Rule>,
    /// The KMS v2 providers it names (name, endpoint), for health checks.
    pub kms: Vec<KmsConfig>,
    /// (group, resource) → the joined chain of every rule naming it; `*` for wildcards.
    by_resource: BTreeMap<(String, String), Arc<PrefixTransformers>>,
}

/// Builds a KMS v2 transformer for a provider; supplied by the caller so that this module
/// stays free of gRPC.
pub type KmsFactory<'a> = &'a dyn Fn(&KmsConfig) -> Result<Box<dyn Transformer>, String>;

fn decode_key(path: &str, secret: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(secret)
        .map_err(|e| format!("{path}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded: {e}"))
}

impl EncryptionConfig {
    pub fn load(path: &Path, kms: KmsFactory) -> Result<EncryptionConfig, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("error reading encryption provider configuration file {:?}: {e}", path.display().to_string()))?;
        Self::parse(&text, kms).map_err(|e| format!("error while parsing encryption provider configuration file {:?}: {e}", path.display().to_string()))
    }

    pub fn parse(text: &str, kms: KmsFactory) -> Result<EncryptionConfig, String> {
        let file: File = serde_norway::from_str(text).map_err(|e| format!("strict decoding error: {e}"))?;
        match (file.api_version.as_deref(), file.kind.as_deref()) {
            (Some("apiserver.config.k8s.io/v1"), Some("EncryptionConfiguration")) => {}
            (v, k) => {
                return Err(format!(
                    "no kind \"{}\" is registered for version \"{}\": expected apiVersion apiserver.config.k8s.io/v1 and kind EncryptionConfiguration",
                    k.unwrap_or_default(),
                    v.unwrap_or_default()
                ))
            }
        }
        if file.resources.is_empty() {
            return Err("resources: Required value: at least one resources is required".into());
        }
        let mut rules = Vec::new();
        let mut kms_all = Vec::new();
        let mut seen_resources: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut by_resource: BTreeMap<(String, String), Vec<PrefixEntry>> = BTreeMap::new();
        let mut kms_names = BTreeSet::new();
        for (ri, rc) in file.resources.iter().enumerate() {
            let rpath = format!("resources[{ri}]");
            if rc.resources.is_empty() {
                return Err(format!("{rpath}.resources: Required value: at least one {rpath}.resources is required"));
            }
            validate_resource_names(&rpath, &rc.resources)?;
            // A resource after a wildcard rule that already covers it would never be used
            // (encryptionconfig's "masked by earlier rule").
            for r in &rc.resources {
                let (resource, group) = parse_group_resource(r);
                for mask in [(group, "*"), ("*", "*")] {
                    if seen_resources.contains(&mask) {
                        return Err(format!(
                            "error while building transformers: resource {:?} is masked by earlier rule {:?}",
                            gr_string(resource, group),
                            gr_string(mask.1, mask.0)
                        ));
                    }
                }
            }
            for r in &rc.resources {
                let (resource, group) = parse_group_resource(r);
                seen_resources.insert((group, resource));
            }
            if rc.providers.is_empty() {
                return Err(format!("{rpath}.providers: Required value: at least one {rpath}.providers is required"));
            }
            let mut entries = Vec::new();
            for (pi, p) in rc.providers.iter().enumerate() {
                let ppath = format!("{rpath}.providers[{pi}]");
                let set = [p.aescbc.is_some(), p.aesgcm.is_some(), p.secretbox.is_some(), p.identity.is_some(), p.kms.is_some()].iter().filter(|b| **b).count();
                if set == 0 {
                    return Err(format!(
                        "{ppath}: Invalid value: {{}}: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"
                    ));
                }
                if set > 1 {
                    return Err(format!(
                        "{ppath}: Invalid value: {{}}: more than one provider specified in a single element, should split into different list elements"
                    ));
                }
                if p.identity.is_some() {
                    entries.push(PrefixEntry { prefix: vec![], transformer: Arc::new(Identity), label: "identity".into() });
                    continue;
                }
                if let Some(k) = &p.kms {
                    let kpath = format!("{ppath}.kms");
                    match k.api_version.as_str() {
                        "v2" => {}
                        "" | "v1" => {
                            return Err("KMSv1 is deprecated and will only receive security updates going forward. Use KMSv2 instead.".into());
                        }
                        other => {
                            return Err(format!("{kpath}.apiVersion: Invalid value: \"{other}\": unsupported apiVersion apiVersion for KMS provider, only v1 and v2 are supported"));
                        }
                    }
                    if k.name.is_empty() {
                        return Err(format!("{kpath}.name: Required value: name is a mandatory field for a provider"));
                    }
                    if k.name.contains(':') {
                        return Err(format!("{kpath}.name: Invalid value: \"{0}\": invalid KMS provider name {0}, must not contain ':'", k.name));
                    }
                    if !kms_names.insert(k.name.clone()) {
                        return Err(format!("{kpath}.name: Invalid value: \"{0}\": duplicate KMS provider name {0}, names must be unique", k.name));
                    }
                    if k.endpoint.is_empty() {
                        return Err(format!("{kpath}.endpoint: Invalid value: \"\": endpoint is a mandatory field for a kms"));
                    }
                    if !k.endpoint.starts_with("unix://") {
                        return Err(format!(
                            "{kpath}.endpoint: Invalid value: \"{}\": unsupported scheme \"{}\" for KMS provider, only unix is supported",
                            k.endpoint,
                            k.endpoint.split("://").next().unwrap_or_default()
                        ));
                    }
                    if k.cachesize.is_some() {
                        return Err(format!("{kpath}.cachesize: Invalid value: {}: cachesize is not supported in v2", k.cachesize.unwrap_or_default()));
                    }
                    entries.push(PrefixEntry {
                        prefix: format!("k8s:enc:kms:v2:{}:", k.name).into_bytes(),
                        transformer: Arc::from(kms(k).map_err(|e| format!("{kpath}: {e}"))?),
                        label: format!("kms:{}", k.name),
                    });
                    kms_all.push(k.clone());
                    continue;
                }
                let (name, keys): (&str, &KeysConfig) = match (&p.aescbc, &p.aesgcm, &p.secretbox) {
                    (Some(k), _, _) => ("aescbc", k),
                    (_, Some(k), _) => ("aesgcm", k),
                    (_, _, Some(k)) => ("secretbox", k),
                    _ => unreachable!("exactly one provider is set"),
                };
                let kpath = format!("{ppath}.{name}.keys");
                if keys.keys.is_empty() {
                    return Err(format!("{kpath}: Required value: at least one keys is required"));
                }
                let mut names = BTreeSet::new();
                for (ki, key) in keys.keys.iter().enumerate() {
                    let kp = format!("{kpath}[{ki}]");
                    if key.name.is_empty() {
                        return Err(format!("{kp}.name: Required value: name is a mandatory field for a key"));
                    }
                    // Kubernetes does not check these two; a duplicate name would make the
                    // second key unreachable for writes and ambiguous for reads, so lockbox does.
                    if key.name.contains(':') {
                        return Err(format!("{kp}.name: Invalid value: \"{}\": key name must not contain ':'", key.name));
                    }
                    if !names.insert(key.name.clone()) {
                        return Err(format!("{kp}.name: Invalid value: \"{}\": duplicate key name, key names must be unique", key.name));
                    }
                    if key.secret.is_empty() {
                        return Err(format!("{kp}.secret: Required value: secret is a mandatory field for a key"));
                    }
                    let raw = decode_key(&kp, &key.secret)?;
                    let transformer: Arc<dyn Transformer> = match name {
                        "aescbc" | "aesgcm" if ![16, 24, 32].contains(&raw.len()) => {
                            return Err(format!(
                                "{kp}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of [16 24 32]",
                                raw.len()
                            ));
                        }
                        "secretbox" if raw.len() != 32 => {
                            return Err(format!(
                                "{kp}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of [32]",
                                raw.len()
                            ));
                        }
                        "aescbc" => Arc::new(AesCbc::new(&raw)?),
                        "aesgcm" => Arc::new(AesGcm::new(&raw)?),
                        _ => Arc::new(Secretbox::new(&raw)?),
                    };
                    entries.push(PrefixEntry {
                        prefix: format!("k8s:enc:{name}:v1:{}:", key.name).into_bytes(),
                        transformer,
                        label: format!("{name}:{}", key.name),
                    });
                }
            }
            for r in &rc.resources {
                let (resource, group) = parse_group_resource(r);
                by_resource.entry((group.to_string(), resource.to_string())).or_default().extend(entries.iter().cloned());
            }
            rules.push(Rule { resources: rc.resources.clone(), transformers: Arc::new(PrefixTransformers { entries }) });
        }
        // A resource named by several rules reads and writes through all their providers, in
        // order (kube-apiserver appends the chains).
        let by_resource = by_resource.into_iter().map(|(gr, entries)| (gr, Arc::new(PrefixTransformers { entries }))).collect();
        Ok(EncryptionConfig { rules, kms: kms_all, by_resource })
    }

    /// The chain for `resource` in `group` (core: ""), as kube-apiserver looks it up: the
    /// resource by name, else `*.<group>`, else `*.*`.
    pub fn for_resource(&self, group: &str, resource: &str) -> Option<Arc<PrefixTransformers>> {
        [(group, resource), (group, "*"), ("*", "*")].into_iter().find_map(|(g, r)| self.by_resource.get(&(g.to_string(), r.to_string())).cloned())
    }
}

/// schema.ParseGroupResource: `secrets` and `secrets.` are core secrets, `*.` every core
/// resource, `*.apps` every apps resource, `*.*` everything. Returns (resource, group).
fn parse_group_resource(s: &str) -> (&str, &str) {
    s.split_once('.').unwrap_or((s, ""))
}

/// How kube-apiserver prints a group-resource in its masking error.
fn gr_string(resource: &str, group: &str) -> String {
    if group.is_empty() {
        if resource == "*" {
            "*.".into()
        } else {
            resource.into()
        }
    } else {
        format!("{resource}.{group}")
    }
}

/// validateResourceOverlap and validateResourceNames, with kube-apiserver's messages.
fn validate_resource_names(rpath: &str, resources: &[String]) -> Result<(), String> {
    let list = format!("{rpath}.resources: Invalid value: {resources:?}");
    let parsed: Vec<(&str, &str)> = resources.iter().map(|r| parse_group_resource(r)).collect();
    for (i, r1) in parsed.iter().enumerate() {
        for (j, r2) in parsed.iter().enumerate() {
            if i == j {
                continue;
            }
            if r1 == r2 {
                return Err(format!("{list}: the same resource cannot be specified multiple times"));
            }
            if *r1 == ("*", "*") || (r1.1 == r2.1 && (r1.0 == "*" || r2.0 == "*")) {
                return Err(format!(
                    "{list}: using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked"
                ));
            }
        }
    }
    for (i, r) in resources.iter().enumerate() {
        let (resource, group) = parsed[i];
        let problem = if r.chars().any(|c| c.is_uppercase()) {
            "resource name should not contain capital letters"
        } else if r == "*" {
            "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources"
        } else if ["apiserveripinfo", "serviceipallocations", "servicenodeportallocations"].contains(&r.as_str()) {
            "resources which do not have REST API/s cannot be encrypted"
        } else if group == "events.k8s.io" {
            "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file"
        } else if group == "extensions" {
            "'extensions' group has been removed and cannot be used for encryption"
        } else if group == "*" && resource != "*" {
            "encrypting the same resource across groups is not supported"
        } else {
            continue;
        };
        return Err(format!("{rpath}.resources[{i}]: Invalid value: \"{r}\": {problem}"));
    }
    Ok(())
}

/// What the server stores with: per resource, by the storage key `/registry/<resource>/…`.
pub struct ResourceTransformers {
    pub config: EncryptionConfig,
    /// Maps a storage resource name to its API group.
    pub group_of: Box<dyn Fn(&str) -> String + Send + Sync>,
}

/// The resource segment of a storage key.
pub fn resource_of(key: &str) -> &str {
    key.strip_prefix("/registry/").and_then(|k| k.split('/').next()).unwrap_or_default()
}

impl ResourceTransformers {
    pub fn chain(&self, key: &str) -> Option<Arc<PrefixTransformers>> {
        let resource = resource_of(key);
        self.config.for_resource(&(self.group_of)(resource), resource)
    }
}

impl Transformer for ResourceTransformers {
    fn transform_to_storage(&self, plaintext: &[u8], context: &str) -> Result<Bytes, Error> {
        match self.chain(context) {
            Some(c) => c.transform_to_storage(plaintext, context),
            None => Identity.transform_to_storage(plaintext, context),
        }
    }

    fn transform_from_storage(&self, stored: &[u8], context: &str) -> Result<(Bytes, ReadInfo), Error> {
        match self.chain(context) {
            Some(c) => c.transform_from_storage(stored, context),
            None => Identity.transform_from_storage(stored, context),
        }
    }
}

/// The file `lockbox up` writes on first start: secretbox with a fresh 32-byte key for Secrets,
/// and identity after it so that data written before encryption still reads.
pub fn default_config_text() -> String {
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    format!(
        "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: {}
      - identity: {{}}
",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_kms(_: &KmsConfig) -> Result<Box<dyn Transformer>, String> {
        Err("no kms in this test".into())
    }

    fn parse(text: &str) -> Result<EncryptionConfig, String> {
        EncryptionConfig::parse(text, &no_kms)
    }

    const HEAD: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n";

    #[test]
    fn default_config_encrypts_secrets_only() {
        let c = parse(&default_config_text()).unwrap();
        let chain = c.for_resource("", "secrets").unwrap();
        assert_eq!(chain.write_label(), "secretbox:key1");
        assert!(c.for_resource("", "configmaps").is_none());
        let stored = chain.transform_to_storage(b"hello", "/registry/secrets/a/b").unwrap();
        assert!(stored.starts_with(b"k8s:enc:secretbox:v1:key1:"));
        // Plaintext written before encryption is still readable, and stale.
        let (plain, info) = chain.transform_from_storage(b"{\"old\":1}", "/registry/secrets/a/b").unwrap();
        assert_eq!(&plain[..], b"{\"old\":1}");
        assert!(info.stale);
    }

    #[test]
    fn wildcards_and_order() {
        let key = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let text = format!("{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - identity: {{}}\n- resources: ['*.apps', '*.']\n  providers:\n  - aesgcm:\n      keys: [{{name: a, secret: {key}}}]\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.for_resource("", "secrets").unwrap().write_label(), "identity");
        assert_eq!(c.for_resource("", "configmaps").unwrap().write_label(), "aesgcm:a");
        assert_eq!(c.for_resource("apps", "deployments").unwrap().write_label(), "aesgcm:a");
        assert!(c.for_resource("rbac.authorization.k8s.io", "roles").is_none());
    }

    /// `secrets.` is core secrets; a resource in two rules reads through both chains, the
    /// first rule's first provider writing.
    #[test]
    fn resource_spellings_and_joined_rules() {
        let k1 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let k2 = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
        let c =
            parse(&format!("{HEAD}resources:\n- resources: ['secrets.']\n  providers:\n  - secretbox:\n      keys: [{{name: a, secret: {k1}}}]\n")).unwrap();
        assert_eq!(c.for_resource("", "secrets").unwrap().write_label(), "secretbox:a");
        let text = format!(
            "{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys: [{{name: a, secret: {k1}}}]\n- resources: [secrets, configmaps]\n  providers:\n  - secretbox:\n      keys: [{{name: b, secret: {k2}}}]\n"
        );
        let joined = parse(&text).unwrap();
        let chain = joined.for_resource("", "secrets").unwrap();
        assert_eq!(chain.write_label(), "secretbox:a");
        let by_b = joined.for_resource("", "configmaps").unwrap().transform_to_storage(b"x", "/registry/secrets/n/s").unwrap();
        assert_eq!(&chain.transform_from_storage(&by_b, "/registry/secrets/n/s").unwrap().0[..], b"x", "the second rule's key reads secrets too");
    }

    #[test]
    fn malformed_configs_name_the_field() {
        let cases = [
            (format!("{HEAD}resources: []\n"), "resources: Required value: at least one resources is required"),
            (format!("{HEAD}resources:\n- resources: [secrets]\n"), "resources[0].providers: Required value"),
            (
                format!("{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys: []\n"),
                "resources[0].providers[0].aescbc.keys: Required value",
            ),
            (
                format!("{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys: [{{name: k, secret: '!!'}}]\n"),
                "resources[0].providers[0].aescbc.keys[0].secret: Invalid value: \"REDACTED\": secrets must be base64 encoded",
            ),
            (
                format!("{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys: [{{name: k, secret: YWJj}}]\n"),
                "secret is not of the expected length, got 3, expected one of [32]",
            ),
            (
                format!("{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys: [{{name: k, secret: YWJj}}]\n"),
                "got 3, expected one of [16 24 32]",
            ),
            (
                format!("{HEAD}resources:\n- resources: ['*.']\n  providers:\n  - identity: {{}}\n- resources: [secrets]\n  providers:\n  - identity: {{}}\n"),
                "resource \"secrets\" is masked by earlier rule \"*.\"",
            ),
            (
                format!("{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - kms:\n      apiVersion: v2\n      name: x\n"),
                "kms.endpoint: Invalid value: \"\": endpoint is a mandatory field for a kms",
            ),
            (
                format!("{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - identity: {{}}\n    aescbc: {{keys: []}}\n"),
                "more than one provider specified in a single element",
            ),
            (format!("{HEAD}resources:\n- resources: [secrets]\n  providers:\n  - identiy: {{}}\n"), "unknown field `identiy`"),
            (
                format!("{HEAD}resources:\n- resources: ['secrets.*']\n  providers:\n  - identity: {{}}\n"),
                "resources[0].resources[0]: Invalid value: \"secrets.*\": encrypting the same resource across groups is not supported",
            ),
            (
                format!("{HEAD}resources:\n- resources: [secrets, '*.']\n  providers:\n  - identity: {{}}\n"),
                "using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed",
            ),
            (
                format!("{HEAD}resources:\n- resources: [secrets, 'secrets.']\n  providers:\n  - identity: {{}}\n"),
                "the same resource cannot be specified multiple times",
            ),
            (
                format!("{HEAD}resources:\n- resources: ['*.']\n  providers:\n  - identity: {{}}\n- resources: ['*.']\n  providers:\n  - identity: {{}}\n"),
                "resource \"*.\" is masked by earlier rule \"*.\"",
            ),
            (format!("{HEAD}resources:\n- resources: [events.events.k8s.io]\n  providers:\n  - identity: {{}}\n"), "Use 'events' instead in the config file"),
            ("apiVersion: v1\nkind: Config\n".to_string(), "expected apiVersion apiserver.config.k8s.io/v1"),
        ];
        for (text, want) in cases {
            let err = parse(&text).err().unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(err.contains(want), "{err}\nshould contain: {want}");
        }
    }
}
