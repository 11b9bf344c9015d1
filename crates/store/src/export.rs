//! The whole index as one sealed blob, and a store rebuilt from it.
//!
//! ```text
//! "CSIX" | version 2 | flags (bit 0: sealed) | keyring length u32 LE | keyring record
//!        | sealed: nonce (12) + AES-256-GCM(contents record, aad = "CSIX" | version)
//!        | not sealed: contents record
//! ```
//!
//! The keyring (salt, Argon2 parameters, check value) stays outside the seal
//! so the key can be derived and checked before anything is opened; the
//! sealing key is the master key's subkey `"index export"`. Version 1 had
//! no extras in its contents record, versions 1 and 2 file records without
//! attributes and parts; both are still read.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::crypto::{KeyError, MasterKey};
use crate::index::{self, Index, IndexContents, IndexError, Keyring};
use crate::store::{KeySource, Node, Store, StoreError, StoreSettings, unlock};

const MAGIC: [u8; 4] = *b"CSIX";
const VERSION: u8 = 3;
/// Exports without extras.
const VERSION_1: u8 = 1;
/// Exports whose file records have no attributes or parts.
const VERSION_2: u8 = 2;

/// What version 1 sealed.
#[derive(serde::Deserialize)]
struct ContentsV1 {
    files: Vec<crate::index::FileRecordV1>,
    manifests: Vec<crate::index::Manifest>,
}

/// What version 2 sealed.
#[derive(serde::Deserialize)]
struct ContentsV2 {
    files: Vec<crate::index::FileRecordV1>,
    manifests: Vec<crate::index::Manifest>,
    extras: std::collections::BTreeMap<String, Vec<u8>>,
}
const SEALED: u8 = 1;

fn sealing_key(master: &MasterKey) -> Result<LessSafeKey, KeyError> {
    let key = master.derive("index export");
    let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| KeyError::Authentication)?;
    Ok(LessSafeKey::new(unbound))
}

fn aad(version: u8) -> [u8; 5] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], version]
}

impl Store {
    /// The index (files, manifests, keyring) as one blob, sealed under the
    /// master key when the store is encrypted.
    pub fn export_index(&self) -> Result<Vec<u8>, StoreError> {
        Ok(self.export_index_at()?.0)
    }

    /// [`Store::export_index`], and the key epoch it was sealed in (see
    /// [`Store::change_key`]).
    pub(crate) fn export_index_at(&self) -> Result<(Vec<u8>, u64), StoreError> {
        // Keyring, contents and seal under one key: a key change waits.
        self.with_master_epoch(|master, epoch| {
            let keyring = self
                .index()
                .keyring()?
                .ok_or(StoreError::KeyMismatch("the store has no keyring yet"))?;
            let keyring = index::encode(&keyring);
            let mut body = index::encode(&self.index().contents()?);
            let mut out = Vec::with_capacity(body.len() + keyring.len() + 64);
            out.extend_from_slice(&MAGIC);
            out.push(VERSION);
            out.push(if master.is_some() { SEALED } else { 0 });
            out.extend_from_slice(&(keyring.len() as u32).to_le_bytes());
            out.extend_from_slice(&keyring);
            if let Some(master) = master {
                let nonce: [u8; 12] = rand::random();
                sealing_key(master)?
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad(VERSION)),
                        &mut body,
                    )
                    .map_err(|_| KeyError::Authentication)?;
                out.extend_from_slice(&nonce);
            }
            out.extend_from_slice(&body);
            Ok((out, epoch))
        })
    }

    /// Rebuilds a store's index at `index_path` (which must hold no files)
    /// from an export and the key alone, and opens the store.
    pub fn recover(
        index_path: &std::path::Path,
        export: &[u8],
        key: &KeySource,
        nodes: Vec<Node>,
        settings: StoreSettings,
    ) -> Result<Self, StoreError> {
        let bad =
            |why: &str| StoreError::Index(IndexError::Corrupt(format!("index export: {why}")));
        if export.len() < 10 || export[..4] != MAGIC {
            return Err(bad("not an index export"));
        }
        let version = export[4];
        if ![VERSION, VERSION_2, VERSION_1].contains(&version) {
            return Err(bad("unsupported version (written by a newer cloudshell?)"));
        }
        let flags = export[5];
        let keyring_len = u32::from_le_bytes([export[6], export[7], export[8], export[9]]) as usize;
        let keyring_end = 10usize
            .checked_add(keyring_len)
            .filter(|end| *end <= export.len())
            .ok_or_else(|| bad("truncated keyring"))?;
        let keyring: Keyring = index::decode(&export[10..keyring_end])?;
        let master = unlock(&keyring, key)?;
        let rest = &export[keyring_end..];
        let body = match (&master, flags & SEALED != 0) {
            (Some(master), true) => {
                let (nonce, sealed) = rest.split_at_checked(12).ok_or_else(|| bad("truncated"))?;
                let mut n = [0u8; 12];
                n.copy_from_slice(nonce);
                let mut buf = sealed.to_vec();
                let plain = sealing_key(master)?
                    .open_in_place(
                        Nonce::assume_unique_for_key(n),
                        Aad::from(aad(version)),
                        &mut buf,
                    )
                    .map_err(|_| KeyError::Authentication)?;
                plain.to_vec()
            }
            (None, false) => rest.to_vec(),
            _ => return Err(bad("sealing does not match the keyring")),
        };
        let contents: IndexContents = match version {
            VERSION_1 => {
                let v1: ContentsV1 = index::decode(&body)?;
                IndexContents {
                    files: v1.files.into_iter().map(Into::into).collect(),
                    manifests: v1.manifests,
                    extras: Default::default(),
                }
            }
            VERSION_2 => {
                let v2: ContentsV2 = index::decode(&body)?;
                IndexContents {
                    files: v2.files.into_iter().map(Into::into).collect(),
                    manifests: v2.manifests,
                    extras: v2.extras,
                }
            }
            _ => index::decode(&body)?,
        };
        Index::open(index_path)?.import(&keyring, &contents)?;
        Store::open(index_path, key, nodes, settings)
    }
}
