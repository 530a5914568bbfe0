//! The encrypted local store (feature `encryption`, `TelemetryBuilder::encrypt_local_store`):
//! queue segments and ledger records sealed at rest with XChaCha20-Poly1305, and the counters
//! of what the local store refused to keep or read (shown by `telemetry status`).
//!
//! Why and what it protects: `docs/adr/014-encrypted-local-store.md` (threat model there).
//!
//! A sealed record is `[version 1][key id: 8 bytes][nonce: 24 bytes][ciphertext + 16-byte
//! tag]`. The nonce is random per record (192 bits: no counter to keep across processes, no
//! realistic collision). The associated data binds the format version, the key id, the tool's
//! name and the record's place (`queue/<segment id>-<events>e` or `ledger/<day>`), so a record
//! moved to another segment, day or tool fails to open. The key id (the first 8 bytes of
//! SHA-256 of the key) tells a record sealed under another key (the key file was lost:
//! counted as `undecryptable`) from one that was altered (counted as `tampered`).
//!
//! The key is 32 random bytes, hex, in `<config dir>/optel/keys/<tool>.key` (0600, directory
//! 0700): in the config directory, not beside the data, so a copy of the data directory alone
//! (a backup, a synced folder) holds nothing readable.

// Without the feature the sealer is never built: what only it uses is unused.
#![cfg_attr(not(feature = "encryption"), allow(dead_code))]

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// The extension of sealed queue segments and ledger files.
pub(crate) const SEALED_EXT: &str = "sealed";
/// The counters file, in the data directory.
const COUNTERS_FILE: &str = "store_counters";

/// What the local store refused to keep or read, since the data directory was created
/// (`telemetry status`; a file `store_counters` in the data directory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreCounters {
    /// Sealed records that failed authentication under the current key (altered on disk):
    /// rejected and deleted.
    pub tampered: u64,
    /// Sealed records that cannot be opened with the current key (the key file was lost or
    /// replaced, or encryption was turned off): dropped.
    pub undecryptable: u64,
    /// Runs whose ledger record was not written because the ledger reached its size bound
    /// ([`TelemetryBuilder::ledger_max_bytes`](crate::TelemetryBuilder::ledger_max_bytes)).
    pub ledger_full: u64,
    /// Runs whose events were neither queued nor written to the ledger because free disk space
    /// was below the threshold
    /// ([`TelemetryBuilder::min_free_disk_bytes`](crate::TelemetryBuilder::min_free_disk_bytes)).
    pub low_disk: u64,
}

/// Which counter to add to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Tampered,
    Undecryptable,
    LedgerFull,
    LowDisk,
}

impl StoreCounters {
    /// Reads the counters of `data_dir`; zeros when there are none. Creates nothing.
    pub(crate) fn read(data_dir: &Path) -> Self {
        let [tampered, undecryptable, ledger_full, low_disk] =
            fsutil::read_counters(&data_dir.join(COUNTERS_FILE));
        Self {
            tampered,
            undecryptable,
            ledger_full,
            low_disk,
        }
    }

    /// Adds `n` to one counter of `data_dir` (best effort: a counter that cannot be written is
    /// not worth failing the host's exit for).
    pub(crate) fn add(data_dir: &Path, which: Count, n: u64) {
        if n == 0 {
            return;
        }
        let _ = fsutil::update_counters::<4>(&data_dir.join(COUNTERS_FILE), |c| {
            let i = which as usize;
            c[i] = c[i].saturating_add(n);
        });
    }
}

/// Why a sealed record was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Sealed under the current key, but altered (or moved to another place).
    Tampered,
    /// Sealed under another key, or in a format or build that cannot open it.
    Undecryptable,
}

impl Rejected {
    pub(crate) fn count(self) -> Count {
        match self {
            Self::Tampered => Count::Tampered,
            Self::Undecryptable => Count::Undecryptable,
        }
    }
}

/// The key file of `tool` under the config directory: `<config dir>/optel/keys/<tool>.key`.
pub(crate) fn key_path(optel_config_dir: &Path, tool: &str) -> PathBuf {
    optel_config_dir.join("keys").join(format!("{tool}.key"))
}

/// Seals and opens records with the store key. Never printed (its `Debug` shows the key id
/// only).
#[derive(Clone)]
pub(crate) struct Sealer {
    #[cfg(feature = "encryption")]
    cipher: chacha20poly1305::XChaCha20Poly1305,
    key_id: [u8; KEY_ID_LEN],
    tool: String,
    /// The data directory, where rejections are counted.
    data_dir: PathBuf,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

const FORMAT_V1: u8 = 1;
const KEY_ID_LEN: usize = 8;
#[cfg(feature = "encryption")]
const NONCE_LEN: usize = 24;
#[cfg(feature = "encryption")]
const HEADER_LEN: usize = 1 + KEY_ID_LEN;

impl Sealer {
    /// A sealer with `key` for `tool`, counting rejections in `data_dir`.
    #[cfg(feature = "encryption")]
    pub(crate) fn new(key: &[u8; 32], tool: &str, data_dir: &Path) -> Self {
        use chacha20poly1305::KeyInit;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key);
        let mut key_id = [0; KEY_ID_LEN];
        key_id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self {
            cipher: chacha20poly1305::XChaCha20Poly1305::new(key.into()),
            key_id,
            tool: tool.to_owned(),
            data_dir: data_dir.to_owned(),
        }
    }

    #[cfg(feature = "encryption")]
    fn aad(&self, place: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"optel-store\x00");
        aad.push(FORMAT_V1);
        aad.extend_from_slice(&self.key_id);
        aad.extend_from_slice(self.tool.as_bytes());
        aad.push(0);
        aad.extend_from_slice(place.as_bytes());
        aad
    }

    /// Seals `plaintext` for `place` (`queue/<id>-<n>e`, `ledger/<day>`).
    ///
    /// # Errors
    /// No random bytes for the nonce, or the cipher refused (a record over 256 GiB).
    pub(crate) fn seal(&self, place: &str, plaintext: &[u8]) -> io::Result<Vec<u8>> {
        #[cfg(feature = "encryption")]
        {
            use chacha20poly1305::aead::{Aead, Payload};
            let nonce: [u8; NONCE_LEN] = crate::random::random_bytes()?;
            let aad = self.aad(place);
            let sealed = self
                .cipher
                .encrypt(
                    (&nonce).into(),
                    Payload {
                        msg: plaintext,
                        aad: &aad,
                    },
                )
                .map_err(|_| io::Error::other("cannot seal a record"))?;
            let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
            out.push(FORMAT_V1);
            out.extend_from_slice(&self.key_id);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&sealed);
            Ok(out)
        }
        #[cfg(not(feature = "encryption"))]
        {
            let _ = (place, plaintext);
            Err(io::Error::other(
                "optel was built without its `encryption` feature",
            ))
        }
    }

    /// Opens a record sealed for `place`.
    ///
    /// # Errors
    /// [`Rejected::Undecryptable`] for another key or format, [`Rejected::Tampered`] when the
    /// record fails authentication under this key.
    pub(crate) fn open(&self, place: &str, sealed: &[u8]) -> Result<Vec<u8>, Rejected> {
        #[cfg(feature = "encryption")]
        {
            use chacha20poly1305::aead::{Aead, Payload};
            if sealed.len() < HEADER_LEN + NONCE_LEN || sealed[0] != FORMAT_V1 {
                // A record cut short or of an unknown version: nothing to authenticate, so
                // it cannot be told apart from damage. Counted as tampering.
                return Err(Rejected::Tampered);
            }
            if sealed[1..HEADER_LEN] != self.key_id {
                return Err(Rejected::Undecryptable);
            }
            let (nonce, body) = sealed[HEADER_LEN..].split_at(NONCE_LEN);
            let aad = self.aad(place);
            self.cipher
                .decrypt(
                    nonce.into(),
                    Payload {
                        msg: body,
                        aad: &aad,
                    },
                )
                .map_err(|_| Rejected::Tampered)
        }
        #[cfg(not(feature = "encryption"))]
        {
            let _ = (place, sealed);
            Err(Rejected::Undecryptable)
        }
    }

    /// Opens a record, counting a rejection in the data directory.
    pub(crate) fn open_counted(&self, place: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        match self.open(place, sealed) {
            Ok(plain) => Some(plain),
            Err(rejected) => {
                StoreCounters::add(&self.data_dir, rejected.count(), 1);
                None
            }
        }
    }
}

/// Reads the store key of `tool`, creating it (32 random bytes, hex, 0600, directory 0700) on
/// first use when `create` is set. Returns the key and whether it was created now. A damaged
/// key file is replaced (what it sealed is then dropped, counted as undecryptable).
///
/// # Errors
/// The key directory is refused (a link, another user's) or cannot be written.
pub(crate) fn load_or_create_key(
    keys_dir: &fsutil::DirPlan,
    tool: &str,
    create: bool,
) -> io::Result<Option<([u8; 32], bool)>> {
    let path = keys_dir.dir.join(format!("{tool}.key"));
    if !create {
        return Ok(crate::identity::read_secret_file(&path)?.map(|k| (k, false)));
    }
    keys_dir.ensure()?;
    crate::identity::load_or_create_secret_file(&path).map(Some)
}

#[cfg(test)]
#[cfg(feature = "encryption")]
mod tests;
