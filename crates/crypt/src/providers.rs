//! The local encryption providers, byte-compatible with kube-apiserver's
//! (k8s.io/apiserver/pkg/storage/value/encrypt): after the `k8s:enc:<provider>:v1:<key>:`
//! prefix (added by [`crate::prefix`]), the stored bytes are
//!
//! - aescbc: a random 16-byte IV, then AES-CBC of the PKCS#7-padded plaintext;
//! - aesgcm: a random 12-byte nonce, then the AES-GCM sealed box (ciphertext and 16-byte tag),
//!   with the storage key as authenticated data;
//! - secretbox: a random 24-byte nonce, then the XSalsa20-Poly1305 sealed box.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use bytes::Bytes;
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rand::RngCore;

use crate::{Error, ReadInfo, Transformer};

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// AES in CBC mode with PKCS#7 padding (aescbc). Kubernetes no longer recommends it (it is not
/// authenticated); it is here so that data written by kube-apiserver with it can be read.
pub struct AesCbc {
    key: Vec<u8>,
}

impl AesCbc {
    pub fn new(key: &[u8]) -> Result<Self, String> {
        match key.len() {
            16 | 24 | 32 => Ok(AesCbc { key: key.to_vec() }),
            n => Err(format!("key size {n} is not supported, must be 16, 24 or 32 bytes")),
        }
    }
}

macro_rules! with_cbc {
    ($key:expr, $alg:ident, $body:expr) => {
        match $key.len() {
            16 => {
                type $alg = aes::Aes128;
                $body
            }
            24 => {
                type $alg = aes::Aes192;
                $body
            }
            _ => {
                type $alg = aes::Aes256;
                $body
            }
        }
    };
}

impl Transformer for AesCbc {
    fn transform_to_storage(&self, plaintext: &[u8], _context: &str) -> Result<Bytes, Error> {
        let iv: [u8; 16] = random();
        let ct = with_cbc!(
            self.key,
            A,
            cbc::Encryptor::<A>::new_from_slices(&self.key, &iv).map_err(|e| Error::Undecryptable(e.to_string()))?.encrypt_padded_vec_mut::<Pkcs7>(plaintext)
        );
        let mut out = Vec::with_capacity(16 + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(Bytes::from(out))
    }

    fn transform_from_storage(&self, stored: &[u8], _context: &str) -> Result<(Bytes, ReadInfo), Error> {
        if stored.len() < 16 {
            return Err(Error::Undecryptable("the stored data was shorter than the required size".into()));
        }
        let (iv, ct) = stored.split_at(16);
        if ct.is_empty() || ct.len() % 16 != 0 {
            return Err(Error::Undecryptable("the stored data is not a multiple of the block size".into()));
        }
        let pt = with_cbc!(
            self.key,
            A,
            cbc::Decryptor::<A>::new_from_slices(&self.key, iv).map_err(|e| Error::Undecryptable(e.to_string()))?.decrypt_padded_vec_mut::<Pkcs7>(ct)
        )
        .map_err(|_| Error::Undecryptable("invalid PKCS#7 padding in the stored data".into()))?;
        Ok((Bytes::from(pt), ReadInfo::default()))
    }
}

/// AES-GCM with a random 12-byte nonce and the storage key as authenticated data (aesgcm).
pub struct AesGcm {
    key: Vec<u8>,
}

impl AesGcm {
    pub fn new(key: &[u8]) -> Result<Self, String> {
        match key.len() {
            16 | 24 | 32 => Ok(AesGcm { key: key.to_vec() }),
            n => Err(format!("key size {n} is not supported, must be 16, 24 or 32 bytes")),
        }
    }
}

/// AES-GCM seal/open with a 12-byte nonce, for aesgcm and the KMS v2 envelope.
pub fn gcm_seal(key: &[u8], nonce: &[u8; 12], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
    let payload = Payload { msg: plaintext, aad };
    let n = aes_gcm::Nonce::from_slice(nonce);
    let r = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key).map_err(|e| Error::Undecryptable(e.to_string()))?.encrypt(n, payload),
        24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(key)
            .map_err(|e| Error::Undecryptable(e.to_string()))?
            .encrypt(n, payload),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key).map_err(|e| Error::Undecryptable(e.to_string()))?.encrypt(n, payload),
    };
    r.map_err(|_| Error::Undecryptable("encryption failed".into()))
}

pub fn gcm_open(key: &[u8], nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
    let payload = Payload { msg: sealed, aad };
    let n = aes_gcm::Nonce::from_slice(nonce);
    let r = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key).map_err(|e| Error::Undecryptable(e.to_string()))?.decrypt(n, payload),
        24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(key)
            .map_err(|e| Error::Undecryptable(e.to_string()))?
            .decrypt(n, payload),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key).map_err(|e| Error::Undecryptable(e.to_string()))?.decrypt(n, payload),
    };
    r.map_err(|_| Error::Undecryptable("cipher: message authentication failed".into()))
}

impl Transformer for AesGcm {
    fn transform_to_storage(&self, plaintext: &[u8], context: &str) -> Result<Bytes, Error> {
        let nonce: [u8; 12] = random();
        let sealed = gcm_seal(&self.key, &nonce, plaintext, context.as_bytes())?;
        let mut out = Vec::with_capacity(12 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Bytes::from(out))
    }

    fn transform_from_storage(&self, stored: &[u8], context: &str) -> Result<(Bytes, ReadInfo), Error> {
        if stored.len() < 12 + 16 {
            return Err(Error::Undecryptable("the stored data was shorter than the required size".into()));
        }
        let (nonce, sealed) = stored.split_at(12);
        Ok((Bytes::from(gcm_open(&self.key, nonce, sealed, context.as_bytes())?), ReadInfo::default()))
    }
}

/// XSalsa20-Poly1305 (NaCl secretbox) with a random 24-byte nonce; lockbox's default.
pub struct Secretbox {
    cipher: crypto_secretbox::XSalsa20Poly1305,
}

impl Secretbox {
    pub fn new(key: &[u8]) -> Result<Self, String> {
        if key.len() != 32 {
            return Err(format!("key size {} is not supported, must be 32 bytes", key.len()));
        }
        use crypto_secretbox::KeyInit as _;
        Ok(Secretbox { cipher: crypto_secretbox::XSalsa20Poly1305::new_from_slice(key).map_err(|e| e.to_string())? })
    }
}

impl Transformer for Secretbox {
    fn transform_to_storage(&self, plaintext: &[u8], _context: &str) -> Result<Bytes, Error> {
        use crypto_secretbox::aead::Aead as _;
        let nonce: [u8; 24] = random();
        let sealed =
            self.cipher.encrypt(crypto_secretbox::Nonce::from_slice(&nonce), plaintext).map_err(|_| Error::Undecryptable("encryption failed".into()))?;
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Bytes::from(out))
    }

    fn transform_from_storage(&self, stored: &[u8], _context: &str) -> Result<(Bytes, ReadInfo), Error> {
        use crypto_secretbox::aead::Aead as _;
        if stored.len() < 24 + 16 {
            return Err(Error::Undecryptable("the stored data was shorter than the required size".into()));
        }
        let (nonce, sealed) = stored.split_at(24);
        let pt = self
            .cipher
            .decrypt(crypto_secretbox::Nonce::from_slice(nonce), sealed)
            .map_err(|_| Error::Undecryptable("output array was not large enough for encryption".into()))?;
        Ok((Bytes::from(pt), ReadInfo::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(t: &dyn Transformer) {
        for msg in [&b""[..], b"x", b"exactly sixteen!", &[7u8; 1000]] {
            let stored = t.transform_to_storage(msg, "/registry/secrets/ns/a").unwrap();
            assert_ne!(&stored[..], msg);
            let (back, _) = t.transform_from_storage(&stored, "/registry/secrets/ns/a").unwrap();
            assert_eq!(&back[..], msg);
        }
    }

    #[test]
    fn providers_round_trip_and_reject_tampering() {
        for k in [16, 24, 32] {
            roundtrip(&AesCbc::new(&vec![1; k]).unwrap());
            roundtrip(&AesGcm::new(&vec![2; k]).unwrap());
        }
        roundtrip(&Secretbox::new(&[3; 32]).unwrap());
        assert!(AesCbc::new(&[0; 15]).is_err());
        assert!(Secretbox::new(&[0; 16]).is_err());

        let gcm = AesGcm::new(&[2; 32]).unwrap();
        let stored = gcm.transform_to_storage(b"secret", "/registry/secrets/ns/a").unwrap();
        // The storage key is authenticated: moved data does not open.
        assert!(gcm.transform_from_storage(&stored, "/registry/secrets/ns/b").is_err());
        let mut flipped = stored.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(gcm.transform_from_storage(&flipped, "/registry/secrets/ns/a").is_err());
        assert!(gcm.transform_from_storage(&stored[..20], "/registry/secrets/ns/a").is_err());

        let sb = Secretbox::new(&[3; 32]).unwrap();
        let mut s = sb.transform_to_storage(b"secret", "k").unwrap().to_vec();
        s[30] ^= 1;
        assert!(sb.transform_from_storage(&s, "k").is_err());
        let cbc = AesCbc::new(&[1; 32]).unwrap();
        assert!(cbc.transform_from_storage(&[0; 20], "k").is_err());
    }
}
