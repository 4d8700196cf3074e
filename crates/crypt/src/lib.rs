//! The value-transformer seam between the storage codec and the store.
//!
//! kube-apiserver passes every stored value through a `value.Transformer` chosen per resource:
//! `transform_to_storage` on write, `transform_from_storage` on read, with the storage key as
//! authenticated data. lockbox keeps the same seam so that encryption at rest is one layer that
//! nothing else has to know about: only this crate ever sees a Secret's plaintext on its way to
//! storage. For now the only transformer is identity; the encryption providers plug in here.

pub mod config;
pub mod kms;
pub mod metrics;
pub mod prefix;
pub mod providers;
pub mod reload;

use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stored bytes could not be turned back into plaintext. The message names the failure,
    /// never the data.
    #[error("{0}")]
    Undecryptable(String),
}

/// What `transform_from_storage` found out about the value besides its plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadInfo {
    /// True when the value was not written by the current write provider and key, so it should
    /// be rewritten (by `lockbox storage migrate`).
    pub stale: bool,
}

/// Encrypts on the way to storage and decrypts on the way back. `context` is the storage key,
/// bound into authenticated encryption so a value cannot be moved to another key.
pub trait Transformer: Send + Sync + 'static {
    fn transform_to_storage(&self, plaintext: &[u8], context: &str) -> Result<Bytes, Error>;
    fn transform_from_storage(&self, stored: &[u8], context: &str) -> Result<(Bytes, ReadInfo), Error>;
}

/// Stores values as they are.
pub struct Identity;

impl Transformer for Identity {
    fn transform_to_storage(&self, plaintext: &[u8], _context: &str) -> Result<Bytes, Error> {
        Ok(Bytes::copy_from_slice(plaintext))
    }

    fn transform_from_storage(&self, stored: &[u8], _context: &str) -> Result<(Bytes, ReadInfo), Error> {
        // A value written by an encrypting provider starts with "k8s:enc:"; identity cannot read it.
        if stored.starts_with(b"k8s:enc:") {
            return Err(Error::Undecryptable("identity transformer tried to read encrypted data".into()));
        }
        Ok((Bytes::copy_from_slice(stored), ReadInfo::default()))
    }
}
