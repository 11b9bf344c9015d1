//! Keys: the master key (Argon2id passphrase or key file), per-file data
//! keys wrapped by it, and chunk encryption with AES-256-GCM.
//!
//! The rules (frozen with format version 1, see `docs/store-format.md`):
//! - chunk nonce: 4 zero bytes, then the chunk index as a big-endian u64.
//!   Unique because every file has its own random data key;
//! - chunk associated data: `"CSSH"`, the format version, the file id and
//!   the chunk index (little-endian u64), so a chunk cannot be moved to
//!   another file or position unnoticed;
//! - wrapped data key: a random 12-byte nonce, then the AES-256-GCM
//!   ciphertext of the key under the master key, with the file id as
//!   associated data (60 bytes).

use std::path::Path;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::format::{FORMAT_VERSION, FileId};

/// Bytes of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes of a wrapped data key.
pub const WRAPPED_KEY_LEN: usize = 12 + 32 + TAG_LEN;
/// The context of the key-check value. Do not change.
const KEY_CHECK_CONTEXT: &str = "cloudshell-store 2026-11 key check v1";

/// Key errors, phrased for the person holding the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase or key file is not the store's.
    #[error("wrong passphrase or key file: it does not open this store")]
    WrongKey,
    /// The key file is readable by others.
    #[error("key file {0} is readable by other users; run `chmod 600 {0}`")]
    KeyFileExposed(String),
    /// The key file is malformed.
    #[error("key file {0} does not hold a 32-byte key in hex")]
    KeyFileMalformed(String),
    /// Reading or writing the key file failed.
    #[error("key file {path}")]
    KeyFileIo {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Argon2 refused its parameters.
    #[error("bad key-derivation parameters")]
    Kdf(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A wrapped key or chunk did not authenticate.
    #[error("authentication failed: the data is corrupt or belongs elsewhere")]
    Authentication,
}

/// Argon2id parameters, stored with the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// 64 MiB and as many passes as take about `target` on this machine.
    /// One pass and three passes are timed, so the fixed cost (allocating
    /// and touching the memory) is not mistaken for the cost of a pass.
    pub fn calibrate(target: Duration) -> Result<Self, KeyError> {
        let with = |iterations| Self {
            memory_kib: 64 * 1024,
            iterations,
            parallelism: 1,
        };
        let time = |p: Self| -> Result<Duration, KeyError> {
            let started = Instant::now();
            derive(b"calibration", &[0u8; 16], p)?;
            Ok(started.elapsed())
        };
        let one = time(with(1))?;
        let three = time(with(3))?;
        let per_pass = (three.saturating_sub(one) / 2).max(Duration::from_millis(1));
        let fixed = one.saturating_sub(per_pass);
        let passes = (target.saturating_sub(fixed).as_secs_f64() / per_pass.as_secs_f64())
            .round()
            .clamp(1.0, 50.0);
        Ok(with(passes as u32))
    }
}

/// The store's master key. Never stored; only its check value is.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

fn derive(passphrase: &[u8], salt: &[u8], p: KdfParams) -> Result<[u8; 32], KeyError> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| KeyError::Kdf(e.into()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|e| KeyError::Kdf(e.into()))?;
    Ok(out)
}

impl MasterKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Derives the key from a passphrase.
    pub fn from_passphrase(
        passphrase: &str,
        salt: &[u8; 16],
        params: KdfParams,
    ) -> Result<Self, KeyError> {
        derive(passphrase.as_bytes(), salt, params).map(Self)
    }

    /// Reads a key file (64 hex digits), refusing one that others can read.
    pub fn from_key_file(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt as _;
        let shown = path.display().to_string();
        let io = |source| KeyError::KeyFileIo {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyError::KeyFileExposed(shown));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key)
            .map_err(|_| KeyError::KeyFileMalformed(shown.clone()))?;
        Ok(Self(key))
    }

    /// Writes a new random key to `path` (mode 0600, never over an existing file).
    pub fn generate_key_file(path: &Path) -> Result<Self, KeyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let key = Self::random();
        let io = |source| KeyError::KeyFileIo {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        writeln!(f, "{}", hex::encode(key.0)).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(key)
    }

    /// A value that tells the right key from a wrong one without revealing it.
    pub fn check_value(&self) -> [u8; 32] {
        blake3::derive_key(KEY_CHECK_CONTEXT, &self.0)
    }

    /// A key for another purpose, derived from this one.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        let mut input = self.0.to_vec();
        input.extend_from_slice(context.as_bytes());
        blake3::derive_key("cloudshell-store 2026-11 subkey v1", &input)
    }

    fn aead(&self) -> LessSafeKey {
        aead_key(&self.0)
    }

    /// Wraps a file's data key.
    pub fn wrap(&self, file_id: FileId, key: &DataKey) -> [u8; WRAPPED_KEY_LEN] {
        let nonce: [u8; 12] = rand::random();
        let mut buf = key.0.to_vec();
        // Invariant: sealing into a Vec only fails when the input exceeds
        // GCM's limit, and a 32-byte key does not.
        let _ = self.aead().seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(wrap_aad(file_id)),
            &mut buf,
        );
        let mut out = [0u8; WRAPPED_KEY_LEN];
        out[..12].copy_from_slice(&nonce);
        out[12..].copy_from_slice(&buf);
        out
    }

    /// Unwraps a file's data key.
    pub fn unwrap(&self, file_id: FileId, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(KeyError::Authentication);
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&wrapped[..12]);
        let mut buf = wrapped[12..].to_vec();
        let plain = self
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(file_id)),
                &mut buf,
            )
            .map_err(|_| KeyError::Authentication)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(plain);
        Ok(DataKey(key))
    }
}

fn wrap_aad(file_id: FileId) -> [u8; 25] {
    let mut aad = [0u8; 25];
    aad[..9].copy_from_slice(b"cshs-wrap");
    aad[9..].copy_from_slice(&file_id.0);
    aad
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    // Invariant: AES-256-GCM takes exactly 32-byte keys, which this is.
    #[allow(clippy::expect_used)]
    let unbound = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is an AES-256 key");
    LessSafeKey::new(unbound)
}

/// A file's own random key.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The sealing context for one file.
    pub fn cipher(&self, file_id: FileId) -> ChunkCipher {
        ChunkCipher {
            key: aead_key(&self.0),
            file_id,
        }
    }
}

/// Encrypts and decrypts one file's chunks.
pub struct ChunkCipher {
    key: LessSafeKey,
    file_id: FileId,
}

impl std::fmt::Debug for ChunkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCipher")
            .field("file_id", &self.file_id)
            .finish_non_exhaustive()
    }
}

impl ChunkCipher {
    fn nonce(chunk: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&chunk.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    fn aad(&self, chunk: u64) -> [u8; 29] {
        let mut aad = [0u8; 29];
        aad[..4].copy_from_slice(b"CSSH");
        aad[4] = FORMAT_VERSION;
        aad[5..21].copy_from_slice(&self.file_id.0);
        aad[21..].copy_from_slice(&chunk.to_le_bytes());
        aad
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal(&self, chunk: u64, buf: &mut Vec<u8>) {
        // Invariant: chunks are far below GCM's 64 GiB limit.
        let _ =
            self.key
                .seal_in_place_append_tag(Self::nonce(chunk), Aad::from(self.aad(chunk)), buf);
    }

    /// Decrypts `buf` (ciphertext and tag) in place, dropping the tag.
    pub fn open(&self, chunk: u64, buf: &mut Vec<u8>) -> Result<(), KeyError> {
        let len = self
            .key
            .open_in_place(Self::nonce(chunk), Aad::from(self.aad(chunk)), buf)
            .map_err(|_| KeyError::Authentication)?
            .len();
        buf.truncate(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn chunks_round_trip_and_are_bound_to_file_and_position() {
        let key = DataKey::random();
        let a = key.cipher(FileId([1; 16]));
        let mut buf = b"secret chunk".to_vec();
        a.seal(3, &mut buf);
        assert_eq!(buf.len(), 12 + TAG_LEN);
        let mut moved = buf.clone();
        assert!(a.open(4, &mut moved).is_err(), "another position");
        let mut other = buf.clone();
        assert!(
            key.cipher(FileId([2; 16])).open(3, &mut other).is_err(),
            "another file"
        );
        let mut flipped = buf.clone();
        flipped[0] ^= 1;
        assert!(a.open(3, &mut flipped).is_err(), "a flipped bit");
        a.open(3, &mut buf).unwrap();
        assert_eq!(buf, b"secret chunk");
    }

    #[test]
    fn data_keys_wrap_under_the_master_key_only() {
        let salt = [9u8; 16];
        let master = MasterKey::from_passphrase("correct horse", &salt, fast()).unwrap();
        let again = MasterKey::from_passphrase("correct horse", &salt, fast()).unwrap();
        assert_eq!(master.check_value(), again.check_value());
        let wrong = MasterKey::from_passphrase("wrong horse", &salt, fast()).unwrap();
        assert_ne!(master.check_value(), wrong.check_value());
        let id = FileId([5; 16]);
        let key = DataKey::random();
        let wrapped = master.wrap(id, &key);
        assert!(wrong.unwrap(id, &wrapped).is_err());
        assert!(master.unwrap(FileId([6; 16]), &wrapped).is_err());
        let back = again.unwrap(id, &wrapped).unwrap();
        assert_eq!(back.0, key.0);
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        let key = MasterKey::generate_key_file(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            MasterKey::from_key_file(&path).unwrap().check_value(),
            key.check_value()
        );
        assert!(
            MasterKey::generate_key_file(&path).is_err(),
            "never overwrites"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::from_key_file(&path),
            Err(KeyError::KeyFileExposed(_))
        ));
        std::fs::write(dir.path().join("bad.key"), "xyz").unwrap();
        std::fs::set_permissions(
            dir.path().join("bad.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(matches!(
            MasterKey::from_key_file(&dir.path().join("bad.key")),
            Err(KeyError::KeyFileMalformed(_))
        ));
    }
}

#[cfg(test)]
mod calibration {
    /// Prints what calibration picks here and how long a derivation then
    /// takes (a figure for the notes, not a timed assertion).
    #[test]
    #[ignore = "measures this machine; run by name"]
    fn calibration_reports_its_parameters() {
        let params = super::KdfParams::calibrate(std::time::Duration::from_millis(500)).unwrap();
        let started = std::time::Instant::now();
        super::MasterKey::from_passphrase("x", &[0; 16], params).unwrap();
        println!("{params:?} derive in {:?}", started.elapsed());
    }
}
