//! An ordered chain of providers, each behind its storage prefix, as kube-apiserver's
//! `prefixTransformers`: the first writes, every one may read.
//!
//! On read, each transformer whose prefix the data carries is tried in order. A failure does not
//! end the search: two keys can share a prefix only if misconfigured, but an empty prefix
//! (identity) matches everything, and during a migration an identity placed first must not hide
//! the encrypted providers behind it. Data read by any transformer but the first is *stale*: it
//! should be rewritten with the current write key.

use bytes::Bytes;

use crate::{Error, ReadInfo, Transformer};

#[derive(Clone)]
pub struct PrefixEntry {
    pub prefix: Vec<u8>,
    /// Shared, so that a resource named by several rules gets one chain of all their providers.
    pub transformer: std::sync::Arc<dyn Transformer>,
    /// `provider:key` for status and metrics (e.g. `secretbox:key1`, `identity`).
    pub label: String,
}

pub struct PrefixTransformers {
    pub entries: Vec<PrefixEntry>,
}

/// Which provider and key wrote a stored value, judged by its prefix alone.
pub fn describe(stored: &[u8]) -> String {
    let Some(rest) = stored.strip_prefix(b"k8s:enc:") else {
        return "identity".into();
    };
    let text = String::from_utf8_lossy(&rest[..rest.len().min(300)]).into_owned();
    let parts: Vec<&str> = text.splitn(4, ':').collect();
    match parts.as_slice() {
        [provider, _version, key, _] => format!("{provider}:{key}"),
        _ => "unknown".into(),
    }
}

impl PrefixTransformers {
    pub fn write_label(&self) -> &str {
        self.entries.first().map(|e| e.label.as_str()).unwrap_or("identity")
    }
}

impl Transformer for PrefixTransformers {
    fn transform_to_storage(&self, plaintext: &[u8], context: &str) -> Result<Bytes, Error> {
        let first = self.entries.first().ok_or_else(|| Error::Undecryptable("no encryption provider is configured".into()))?;
        let started = std::time::Instant::now();
        let body = first.transformer.transform_to_storage(plaintext, context);
        crate::metrics::transformation("to_storage", &first.prefix, started.elapsed(), body.is_ok());
        let body = body?;
        let mut out = Vec::with_capacity(first.prefix.len() + body.len());
        out.extend_from_slice(&first.prefix);
        out.extend_from_slice(&body);
        Ok(Bytes::from(out))
    }

    fn transform_from_storage(&self, stored: &[u8], context: &str) -> Result<(Bytes, ReadInfo), Error> {
        let mut errors = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let Some(rest) = stored.strip_prefix(e.prefix.as_slice()) else {
                continue;
            };
            let started = std::time::Instant::now();
            let result = e.transformer.transform_from_storage(rest, context);
            crate::metrics::transformation("from_storage", &e.prefix, started.elapsed(), result.is_ok());
            match result {
                Ok((plain, info)) => return Ok((plain, ReadInfo { stale: info.stale || i != 0 })),
                Err(err) => errors.push(format!("{}: {err}", e.label)),
            }
        }
        if errors.is_empty() {
            return Err(Error::Undecryptable(format!("no matching prefix found (data was written by {})", describe(stored))));
        }
        Err(Error::Undecryptable(errors.join("; ")))
    }
}
