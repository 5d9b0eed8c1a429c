//! Secrets at rest: XChaCha20-Poly1305 with keys from the environment, several at once during
//! a rotation.
//!
//! Keys: `ACCESSHUB_ENCRYPTION_KEYS` (or the older `ACCESSHUB_ENCRYPTION_KEY`, same syntax)
//! holds `id:base64key` entries separated by commas; a bare base64 key gets id `k1`. The
//! active key (new writes) is `ACCESSHUB_ENCRYPTION_KEY_ID`, else the first entry; every key
//! decrypts. Duplicate ids stop start-up: which of two keys named alike opens a row would be
//! a guess.
//!
//! Ciphertexts carry their key id: `v2:<key id>:<base64 nonce||ciphertext>`, sealed with
//! associated data naming the row they belong to ([`connection_aad`], [`source_aad`]), so a
//! ciphertext copied into another row or tenant does not open (security review L5). The older
//! `v1:` format (no associated data) still opens until `accessctl secrets reseal` rewrites it.

use std::sync::{LazyLock, OnceLock};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use prometheus_client::metrics::{counter::Counter, family::Family};

/// Variable with the keys (preferred name).
pub const KEYS_VAR: &str = "ACCESSHUB_ENCRYPTION_KEYS";
/// Variable with the keys (the original name, same syntax; kept working).
pub const KEY_VAR: &str = "ACCESSHUB_ENCRYPTION_KEY";
/// Variable naming the active key id (optional; default: the first key).
pub const KEY_ID_VAR: &str = "ACCESSHUB_ENCRYPTION_KEY_ID";

/// Encryption or decryption failed. Messages never contain key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key variables are missing or malformed (a start-up error).
    #[error("encryption keys: {0}")]
    Key(String),
    /// A stored ciphertext names a key we do not have (a configuration error: the key was
    /// removed before every row was resealed).
    #[error(
        "secret was encrypted with key id {0:?}, which is not configured (add it back to {KEYS_VAR})"
    )]
    UnknownKey(String),
    /// Tampered or corrupt ciphertext, the wrong key under a known id, or a ciphertext that
    /// belongs to another row.
    #[error("secret could not be decrypted (corrupt, wrong key, or copied from another row)")]
    Decrypt,
}

/// Format of a stored ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SealFormat {
    /// `v1:`: no associated data (before rows were bound); resealing upgrades it.
    V1,
    /// `v2:`: bound to its row with associated data.
    V2,
}

impl SealFormat {
    /// `v1` / `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            SealFormat::V1 => "v1",
            SealFormat::V2 => "v2",
        }
    }
}

/// What a ciphertext says about itself without decrypting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedInfo {
    /// Its format.
    pub format: SealFormat,
    /// The id of the key that sealed it.
    pub key_id: String,
}

/// Associated data of a connection's `settings_enc`.
pub fn connection_aad(tenant: &str, vendor: &str, name: &str) -> Vec<u8> {
    aad(&["connections", tenant, vendor, name])
}

/// Associated data of a tenant source's `secret_enc` and `previous_enc` (the same for both:
/// a rotation moves the current ciphertext into `previous_enc` as it is).
pub fn source_aad(tenant: &str, source: &str) -> Vec<u8> {
    aad(&["tenant_sources", tenant, source])
}

/// Associated data of an upstream's API credentials (`upstream_credentials.credentials_enc`).
pub fn upstream_aad(tenant: &str, source: &str) -> Vec<u8> {
    aad(&["upstream_credentials", tenant, source])
}

/// Length-prefixed parts, so (`a:b`, `c`) and (`a`, `b:c`) differ.
fn aad(parts: &[&str]) -> Vec<u8> {
    let mut out = b"accesshub-aad-1".to_vec();
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// Name of the decrypt-failure counter (`_total` is appended by the exposition format).
pub const DECRYPT_FAILURES: &str = "accesshub_secret_decrypt_failures";
/// Its help text.
pub const DECRYPT_FAILURES_HELP: &str =
    "Stored secrets that do not open with the configured encryption keys";

/// The counter family's type: `accesshub_secret_decrypt_failures_total{component}`.
pub type DecryptFailures = Family<Vec<(String, String)>, Counter>;

static DECRYPT_FAILURES_FAMILY: LazyLock<DecryptFailures> = LazyLock::new(Family::default);
static COMPONENT: OnceLock<String> = OnceLock::new();

/// The process-wide decrypt-failure family, labelled `component=<component>` (the service; set
/// by the first call). Register it on the service's registry under [`DECRYPT_FAILURES`];
/// every [`SecretBox::open_reported`] in the process counts into it.
pub fn decrypt_failures(component: &str) -> DecryptFailures {
    let _ = COMPONENT.set(component.to_owned());
    // Present (at 0) from the start, so an alert on its increase has a series to watch.
    let _ = decrypt_failure_counter();
    DECRYPT_FAILURES_FAMILY.clone()
}

fn decrypt_failure_counter() -> Counter {
    let component = COMPONENT.get().map_or("unknown", String::as_str);
    DECRYPT_FAILURES_FAMILY
        .get_or_create(&vec![("component".to_owned(), component.to_owned())])
        .clone()
}

/// Holds the keys; cloneable and never printed.
#[derive(Clone)]
pub struct SecretBox {
    keys: Vec<(String, XChaCha20Poly1305)>,
    /// Index of the key that seals.
    active: usize,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_ids", &self.key_ids())
            .field("active", &self.active_key_id())
            .finish()
    }
}

/// Key ids go into every ciphertext and into operators' commands: keep them plain.
fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SecretBox {
    /// Parses `id:base64(32 bytes)[,id:base64...]`; a bare base64 key gets id `k1`. The first
    /// key is active. Duplicate or malformed ids are refused.
    pub fn from_spec(spec: &str) -> Result<Self, SecretError> {
        let mut keys: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, b64) = match part.split_once(':') {
                Some((id, b)) => (id.trim().to_owned(), b.trim()),
                None => ("k1".to_owned(), part),
            };
            if !valid_key_id(&id) {
                return Err(SecretError::Key(format!(
                    "key id {id:?} must be 1-64 characters of A-Z a-z 0-9 - _ ."
                )));
            }
            if keys.iter().any(|(k, _)| *k == id) {
                return Err(SecretError::Key(format!(
                    "key id {id:?} appears twice (a bare key is id \"k1\")"
                )));
            }
            // The cipher zeroizes its copy on drop; wipe the decoded bytes too (review L5).
            let raw = zeroize::Zeroizing::new(
                STANDARD
                    .decode(b64)
                    .map_err(|_| SecretError::Key(format!("key {id:?} is not valid base64")))?,
            );
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
        Ok(SecretBox { keys, active: 0 })
    }

    /// Makes `id` the key that seals; it must be one of the configured keys.
    pub fn with_active(mut self, id: &str) -> Result<Self, SecretError> {
        self.active = self.keys.iter().position(|(k, _)| k == id).ok_or_else(|| {
            SecretError::Key(format!(
                "{KEY_ID_VAR}={id:?} names no configured key (configured: {})",
                self.key_ids().join(", ")
            ))
        })?;
        Ok(self)
    }

    /// Reads `ACCESSHUB_ENCRYPTION_KEYS` or `ACCESSHUB_ENCRYPTION_KEY` (not both) and
    /// `ACCESSHUB_ENCRYPTION_KEY_ID`.
    pub fn from_env() -> Result<Self, SecretError> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::from_vars(get(KEYS_VAR), get(KEY_VAR), get(KEY_ID_VAR))
    }

    /// [`SecretBox::from_env`] over given values (tests, tools).
    pub fn from_vars(
        keys: Option<String>,
        key: Option<String>,
        active: Option<String>,
    ) -> Result<Self, SecretError> {
        let spec = match (keys, key) {
            (Some(_), Some(_)) => {
                return Err(SecretError::Key(format!(
                    "both {KEYS_VAR} and {KEY_VAR} are set; keep only {KEYS_VAR}"
                )));
            }
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => {
                return Err(SecretError::Key(format!(
                    "{KEYS_VAR} (or {KEY_VAR}) is not set or empty: the key that encrypts \
                     vendor and webhook secrets at rest is required"
                )));
            }
        };
        let b = Self::from_spec(&spec)?;
        match active {
            Some(id) => b.with_active(id.trim()),
            None => Ok(b),
        }
    }

    /// A random key spec, for tests and `make dev`.
    pub fn generate_spec() -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        format!("k1:{}", STANDARD.encode(key))
    }

    /// Id of the key that seals.
    pub fn active_key_id(&self) -> &str {
        self.keys.get(self.active).map_or("", |(k, _)| k.as_str())
    }

    /// Every configured key id, in configuration order.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Encrypts with the active key, bound to `aad` (see [`connection_aad`], [`source_aad`]).
    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> Result<String, SecretError> {
        let (id, cipher) = self.keys.get(self.active).ok_or(SecretError::Decrypt)?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| SecretError::Decrypt)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("v2:{id}:{}", STANDARD.encode(blob)))
    }

    /// Format and key id of a ciphertext, without decrypting it (`None`: not a ciphertext).
    pub fn inspect(sealed: &str) -> Option<SealedInfo> {
        let mut parts = sealed.splitn(3, ':');
        let format = match parts.next()? {
            "v1" => SealFormat::V1,
            "v2" => SealFormat::V2,
            _ => return None,
        };
        let key_id = parts.next()?.to_owned();
        parts.next()?;
        Some(SealedInfo { format, key_id })
    }

    /// Decrypts with whichever configured key sealed it. A `v2` ciphertext must have been
    /// sealed with the same `aad`; a `v1` one (older, unbound) opens regardless.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<String, SecretError> {
        let info = Self::inspect(sealed).ok_or(SecretError::Decrypt)?;
        let b64 = sealed.splitn(3, ':').nth(2).ok_or(SecretError::Decrypt)?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| *k == info.key_id)
            .ok_or_else(|| SecretError::UnknownKey(info.key_id.clone()))?;
        let blob = STANDARD.decode(b64).map_err(|_| SecretError::Decrypt)?;
        if blob.len() < 24 {
            return Err(SecretError::Decrypt);
        }
        let (nonce, ct) = blob.split_at(24);
        let aad = match info.format {
            SealFormat::V1 => &[][..],
            SealFormat::V2 => aad,
        };
        let pt = cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(pt).map_err(|_| SecretError::Decrypt)
    }

    /// [`open`](Self::open) for a service that needs the secret to work: a failure is
    /// counted in [`decrypt_failures`] and logged for the operator with `what` (the row: tenant,
    /// vendor, connection or source, column), the key id the row names and the configured ids
    /// — never the ciphertext or anything decrypted. A failed unseal is a key-rotation mistake
    /// (a key removed before every row was resealed), not a vendor or user error, so whoever
    /// runs the service must hear of it whichever component hit it first.
    pub fn open_reported(
        &self,
        sealed: &str,
        aad: &[u8],
        what: &str,
    ) -> Result<String, SecretError> {
        self.open(sealed, aad).inspect_err(|e| {
            let key_id = Self::inspect(sealed).map(|i| i.key_id);
            decrypt_failure_counter().inc();
            tracing::error!(
                what,
                key_id = key_id.as_deref().unwrap_or("?"),
                configured = ?self.key_ids(),
                error = %e,
                "stored secret cannot be decrypted with the configured keys; check \
                 {KEYS_VAR} and run `accessctl secrets reseal --dry-run`"
            );
        })
    }

    /// Whether a ciphertext should be rewritten: sealed with another key than the active one,
    /// or in the unbound `v1` format.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        Self::inspect(sealed)
            .is_none_or(|i| i.format != SealFormat::V2 || i.key_id != self.active_key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `v1` format (no associated data), as stored before rows were bound: sealed here by
    /// hand so the compatibility path stays tested.
    fn seal_v1(spec: &str, plaintext: &str) -> String {
        let (id, b64) = spec.split_once(':').unwrap();
        let cipher = XChaCha20Poly1305::new_from_slice(&STANDARD.decode(b64).unwrap()).unwrap();
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut blob = nonce.to_vec();
        blob.extend(cipher.encrypt(&nonce, plaintext.as_bytes()).unwrap());
        format!("v1:{id}:{}", STANDARD.encode(blob))
    }

    #[test]
    fn seal_open_and_rotate() {
        let aad = source_aad("acme", "bex");
        let old = SecretBox::generate_spec().replace("k1:", "old:");
        let new = SecretBox::generate_spec().replace("k1:", "new:");
        let b_old = SecretBox::from_spec(&old).unwrap();
        let sealed = b_old.seal("s3cr3t & ü", &aad).unwrap();
        assert!(!sealed.contains("s3cr3t"));
        assert!(sealed.starts_with("v2:old:"));
        let rotated = SecretBox::from_spec(&format!("{new},{old}")).unwrap();
        assert_eq!(rotated.open(&sealed, &aad).unwrap(), "s3cr3t & ü");
        assert!(rotated.needs_reseal(&sealed));
        let resealed = rotated.seal("x", &aad).unwrap();
        assert!(!rotated.needs_reseal(&resealed));
        let only_new = SecretBox::from_spec(&new).unwrap();
        assert!(matches!(
            only_new.open(&sealed, &aad),
            Err(SecretError::UnknownKey(_))
        ));
        // Change the last character (to another one: a sealed value ending in 'A' made the
        // old pop-and-push-'A' a no-op, one run in 64).
        let mut tampered = sealed.clone();
        let last = tampered.pop();
        tampered.push(if last == Some('A') { 'B' } else { 'A' });
        assert!(b_old.open(&tampered, &aad).is_err());
        assert!(SecretBox::from_spec("k1:short").is_err());
    }

    /// L5: a ciphertext copied into another row (tenant, source, connection) must not open.
    #[test]
    fn ciphertexts_are_bound_to_their_row() {
        let b = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
        let acme = b
            .seal("acme-secret", &connection_aad("acme", "tapkey", "main"))
            .unwrap();
        assert_eq!(
            b.open(&acme, &connection_aad("acme", "tapkey", "main"))
                .unwrap(),
            "acme-secret"
        );
        for other in [
            connection_aad("evil", "tapkey", "main"),
            connection_aad("acme", "tapkey", "other"),
            connection_aad("acme", "cloudpass", "main"),
            source_aad("acme", "tapkey"),
            // Length prefixes: moving a separator between parts is another row.
            connection_aad("acme", "tapke", "ymain"),
        ] {
            assert!(matches!(b.open(&acme, &other), Err(SecretError::Decrypt)));
        }
    }

    /// Rows written before L5 (`v1`, unbound) stay readable until resealed, and count as
    /// needing a reseal even under the active key.
    #[test]
    fn v1_ciphertexts_open_and_need_a_reseal() {
        let spec = SecretBox::generate_spec();
        let b = SecretBox::from_spec(&spec).unwrap();
        let v1 = seal_v1(&spec, "legacy");
        assert_eq!(b.open(&v1, &source_aad("a", "b")).unwrap(), "legacy");
        assert!(b.needs_reseal(&v1));
        assert_eq!(
            SecretBox::inspect(&v1),
            Some(SealedInfo {
                format: SealFormat::V1,
                key_id: "k1".into()
            })
        );
    }

    #[test]
    fn duplicate_or_malformed_key_ids_are_refused() {
        let a = SecretBox::generate_spec();
        let b = SecretBox::generate_spec();
        let err = SecretBox::from_spec(&format!("{a},{b}")).unwrap_err();
        assert!(err.to_string().contains("\"k1\" appears twice"), "{err}");
        // A bare key is k1 too.
        let bare = a.trim_start_matches("k1:").to_owned();
        assert!(SecretBox::from_spec(&format!("{bare},{b}")).is_err());
        for bad in ["", "a b", "x/y"] {
            let spec = format!("{bad}:{bare}");
            assert!(SecretBox::from_spec(&spec).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn active_key_from_the_id_variable() {
        let one = SecretBox::generate_spec().replace("k1:", "one:");
        let two = SecretBox::generate_spec().replace("k1:", "two:");
        let both = format!("{one},{two}");
        let b = SecretBox::from_vars(Some(both.clone()), None, Some("two".into())).unwrap();
        assert_eq!(b.active_key_id(), "two");
        assert!(b.seal("x", b"").unwrap().starts_with("v2:two:"));
        // The old variable alone keeps working; the first key is active.
        let b = SecretBox::from_vars(None, Some(both.clone()), None).unwrap();
        assert_eq!(b.active_key_id(), "one");
        let err = SecretBox::from_vars(Some(both.clone()), None, Some("three".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ACCESSHUB_ENCRYPTION_KEY_ID"), "{err}");
        assert!(!err.contains(&one[4..]), "key material in {err}");
        assert!(SecretBox::from_vars(Some(both.clone()), Some(both), None).is_err());
        assert!(SecretBox::from_vars(None, None, None).is_err());
    }
}
