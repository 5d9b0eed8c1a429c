//! Secrets at rest: XChaCha20-Poly1305 with keys from the environment.
//!
//! `ACCESSHUB_ENCRYPTION_KEY` holds one or more keys, `id:base64key` separated by commas; the
//! first encrypts, all decrypt, so a key can be rotated without downtime. Ciphertexts are
//! `v1:<key id>:<base64 nonce||ciphertext>`.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, OsRng},
};

/// Encryption or decryption failed. Messages never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key variable is missing or malformed.
    #[error("ACCESSHUB_ENCRYPTION_KEY: {0}")]
    Key(String),
    /// A stored ciphertext names a key we do not have.
    #[error("secret was encrypted with unknown key id {0:?}")]
    UnknownKey(String),
    /// Tampered or corrupt ciphertext.
    #[error("secret could not be decrypted (corrupt or wrong key)")]
    Decrypt,
}

/// Holds the keys; cloneable and never printed.
#[derive(Clone)]
pub struct SecretBox {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field(
                "key_ids",
                &self.keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SecretBox {
    /// Parses `id:base64(32 bytes)[,id:base64...]`; a bare base64 key gets id `k1`.
    pub fn from_spec(spec: &str) -> Result<Self, SecretError> {
        let mut keys = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, b64) = match part.split_once(':') {
                Some((id, b)) => (id.to_owned(), b),
                None => ("k1".to_owned(), part),
            };
            let raw = STANDARD
                .decode(b64)
                .map_err(|_| SecretError::Key(format!("key {id:?} is not valid base64")))?;
            if raw.len() != 32 {
                return Err(SecretError::Key(format!(
                    "key {id:?} must be 32 bytes, got {}",
                    raw.len()
                )));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&raw)
                .map_err(|_| SecretError::Key(format!("key {id:?} rejected")))?;
            keys.push((id, cipher));
        }
        if keys.is_empty() {
            return Err(SecretError::Key("no key configured".into()));
        }
        Ok(SecretBox { keys })
    }

    /// Reads `ACCESSHUB_ENCRYPTION_KEY`.
    pub fn from_env() -> Result<Self, SecretError> {
        let spec = std::env::var("ACCESSHUB_ENCRYPTION_KEY")
            .map_err(|_| SecretError::Key("not set".into()))?;
        Self::from_spec(&spec)
    }

    /// A random key spec, for tests and `make dev`.
    pub fn generate_spec() -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        format!("k1:{}", STANDARD.encode(key))
    }

    /// Encrypts with the primary key.
    pub fn seal(&self, plaintext: &str) -> Result<String, SecretError> {
        let (id, cipher) = self.keys.first().ok_or(SecretError::Decrypt)?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .map_err(|_| SecretError::Decrypt)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("v1:{id}:{}", STANDARD.encode(blob)))
    }

    /// Decrypts with whichever configured key sealed it.
    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SecretError::Decrypt);
        };
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
        let blob = STANDARD.decode(b64).map_err(|_| SecretError::Decrypt)?;
        if blob.len() < 24 {
            return Err(SecretError::Decrypt);
        }
        let (nonce, ct) = blob.split_at(24);
        let pt = cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(pt).map_err(|_| SecretError::Decrypt)
    }

    /// Whether a ciphertext was sealed with an older key (re-encrypt on rotation).
    pub fn needs_rotation(&self, sealed: &str) -> bool {
        let primary = self.keys.first().map(|(k, _)| k.as_str()).unwrap_or("");
        sealed.split(':').nth(1) != Some(primary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rotate() {
        let old = SecretBox::generate_spec().replace("k1:", "old:");
        let new = SecretBox::generate_spec().replace("k1:", "new:");
        let b_old = SecretBox::from_spec(&old).unwrap();
        let sealed = b_old.seal("s3cr3t & ü").unwrap();
        assert!(!sealed.contains("s3cr3t"));
        let rotated = SecretBox::from_spec(&format!("{new},{old}")).unwrap();
        assert_eq!(rotated.open(&sealed).unwrap(), "s3cr3t & ü");
        assert!(rotated.needs_rotation(&sealed));
        let resealed = rotated.seal("x").unwrap();
        assert!(!rotated.needs_rotation(&resealed));
        let only_new = SecretBox::from_spec(&new).unwrap();
        assert!(matches!(
            only_new.open(&sealed),
            Err(SecretError::UnknownKey(_))
        ));
        // Change the last character (to another one: a sealed value ending in 'A' made the
        // old pop-and-push-'A' a no-op, one run in 64).
        let mut tampered = sealed.clone();
        let last = tampered.pop();
        tampered.push(if last == Some('A') { 'B' } else { 'A' });
        assert!(b_old.open(&tampered).is_err());
        assert!(SecretBox::from_spec("k1:short").is_err());
    }
}
