//! Identity: the per-install secret, the rotating pseudonym derived from it, session and event
//! ids.
//!
//! The secret is 32 random bytes kept in `<data dir>/install_secret` (mode 0600); it never
//! leaves the machine. The pseudonym sent is `HMAC-SHA-256(secret, "optel pseudonym v1|<tool>|<epoch>")`,
//! truncated to 128 bits and hex-encoded: counts of active installs work, while two epochs (or
//! two tools) cannot be linked without the secret. Nothing about the machine or the user (host
//! name, user name, MAC address, machine id) goes into it.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::fsutil;

const SECRET_FILE: &str = "install_secret";

/// `len` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    Ok(buf)
}

/// Formats 16 bytes as a UUID version 4 (RFC 9562 §5.4), setting the version and variant bits.
pub(crate) fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Reads the install secret, creating it on first use. Two processes racing to create it end
/// up with the same secret: the file is written whole under a temporary name and hard-linked
/// into place, which fails if the other process won.
pub(crate) fn load_or_create_secret(dir: &Path) -> io::Result<[u8; 32]> {
    let path = dir.join(SECRET_FILE);
    if let Some(secret) = read_secret(&path)? {
        return Ok(secret);
    }
    let secret: [u8; 32] = random_bytes()?;
    let tmp = dir.join(format!(
        ".{SECRET_FILE}.{}",
        hex::encode(random_bytes::<8>()?)
    ));
    {
        let mut f = fsutil::create_private(&tmp)?;
        f.write_all(hex::encode(secret).as_bytes())?;
        f.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_secret(&path)?
            .ok_or_else(|| io::Error::other("install secret vanished while being created")),
        Err(e) => Err(e),
    }
}

fn read_secret(path: &Path) -> io::Result<Option<[u8; 32]>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let mut secret = [0u8; 32];
            match hex::decode_to_slice(text.trim(), &mut secret) {
                Ok(()) => Ok(Some(secret)),
                // A damaged secret is replaced: the install then counts as a new one, which is
                // the privacy-safe failure.
                Err(_) => {
                    fs::remove_file(path)?;
                    Ok(None)
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The pseudonym epoch containing `now`: the UTC month, `"2026-11"`.
pub(crate) fn monthly_epoch(now: SystemTime) -> String {
    let mut s = humantime::format_rfc3339_seconds(now).to_string();
    s.truncate(7);
    s
}

/// The pseudonym of an install for one tool and epoch: 32 lowercase hex digits.
pub(crate) fn pseudonym(secret: &[u8; 32], tool: &str, epoch: &str) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail for a 32-byte key.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::from("unavailable"),
    };
    mac.update(b"optel pseudonym v1|");
    mac.update(tool.as_bytes());
    mac.update(b"|");
    mac.update(epoch.as_bytes());
    let digest = mac.finalize().into_bytes();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert!(optel_wire::is_uuid(&id));
    }

    #[test]
    fn pseudonym_is_keyed_and_rotates() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let p = pseudonym(&a, "acme", "2026-11");
        assert_eq!(p.len(), 32);
        assert_eq!(p, pseudonym(&a, "acme", "2026-11"));
        assert_ne!(p, pseudonym(&a, "acme", "2026-12"));
        assert_ne!(p, pseudonym(&b, "acme", "2026-11"));
        assert_ne!(p, pseudonym(&a, "other", "2026-11"));
    }

    #[test]
    fn epoch_is_month() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_305_600);
        assert_eq!(monthly_epoch(t), "2026-11");
    }

    #[test]
    fn secret_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let s1 = load_or_create_secret(dir.path()).unwrap();
        let s2 = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(s1, s2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
