//! Identity: the per-install secret, the rotating pseudonym derived from it, session and event
//! ids, and [`MachineId`] for authors who need a stable per-machine id.
//!
//! The secret is 32 random bytes kept in `<data dir>/install_secret` (mode 0600); it never
//! leaves the machine. The pseudonym sent is `HMAC-SHA-256(secret, "optel pseudonym v1|<tool>|<epoch>")`,
//! truncated to 128 bits and hex-encoded: counts of active installs work, while two epochs (or
//! two tools) cannot be linked without the secret. Nothing about the machine or the user (host
//! name, user name, MAC address, machine id) goes into it. In CI every run of one vendor shares
//! the pseudonym `ci:<vendor>`, so ephemeral runners do not count as new installs.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::random::random_bytes;

const SECRET_FILE: &str = "install_secret";

/// Formats 16 bytes as a UUID version 4 (RFC 9562 §5.4), setting the version and variant bits.
pub(crate) fn uuid_v4(b: [u8; 16]) -> String {
    optel_wire::format_uuid_v4(b)
}

/// Reads the install secret, creating it on first use (see [`load_or_create_secret_file`]).
pub(crate) fn load_or_create_secret(dir: &Path) -> io::Result<[u8; 32]> {
    load_or_create_secret_file(&dir.join(SECRET_FILE)).map(|(secret, _)| secret)
}

/// Reads a 32-byte secret kept as hex in `path` (the install secret, the store key), creating
/// it on first use; returns it and whether it was created now. Two processes racing to create
/// it end up with the same secret: the file is written whole under a temporary name and
/// hard-linked into place, which fails if the other process won.
pub(crate) fn load_or_create_secret_file(path: &Path) -> io::Result<([u8; 32], bool)> {
    if let Some(secret) = read_secret_file(path)? {
        return Ok((secret, false));
    }
    let secret: [u8; 32] = random_bytes()?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("secret");
    let tmp = path.with_file_name(format!(".{name}.{}", hex::encode(random_bytes::<8>()?)));
    {
        let mut f = fsutil::create_private(&tmp)?;
        f.write_all(hex::encode(secret).as_bytes())?;
        f.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((secret, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_secret_file(path)?
            .map(|s| (s, false))
            .ok_or_else(|| io::Error::other("secret vanished while being created")),
        Err(e) => Err(e),
    }
}

/// The install secret of `dir` if there is one; never creates it.
#[cfg_attr(not(feature = "clap"), allow(dead_code))]
pub(crate) fn existing_secret(dir: &Path) -> io::Result<Option<[u8; 32]>> {
    read_secret_file(&dir.join(SECRET_FILE))
}

/// The labels of the epochs an install may have sent under, newest first: the current one and
/// those before it, up to `max` (`Never` has one). Used to ask the collector to forget them all.
#[cfg_attr(not(feature = "clap"), allow(dead_code))]
pub(crate) fn recent_epoch_labels(epoch: Epoch, now: SystemTime, max: usize) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    let mut t = now;
    // Step back a day at a time: every month and week is visited, labels deduplicated.
    while labels.len() < max {
        let label = epoch.label(t);
        if labels.last() != Some(&label) {
            labels.push(label);
        }
        if epoch == Epoch::Never {
            break;
        }
        match t.checked_sub(Duration::from_secs(86_400)) {
            Some(prev) if prev > UNIX_EPOCH => t = prev,
            _ => break,
        }
    }
    labels
}

/// Reads a 32-byte hex secret file; `Ok(None)` when missing. A damaged one is deleted.
pub(crate) fn read_secret_file(path: &Path) -> io::Result<Option<[u8; 32]>> {
    // 64 hex digits and a little room; a FIFO, a device or a link here is refused.
    match fsutil::read_private(path, 256) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
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

/// Deletes the install secret, so that the next run creates a new one and with it a new
/// pseudonym that cannot be linked to the old one. Returns whether a secret existed.
// Used by the `telemetry` subcommand (feature `clap`).
#[cfg_attr(not(feature = "clap"), allow(dead_code))]
pub(crate) fn rotate_secret(dir: &Path) -> io::Result<bool> {
    match fs::remove_file(dir.join(SECRET_FILE)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How often the pseudonym changes. Shorter epochs make installs harder to follow over time,
/// and make "active installs" counts over windows longer than the epoch overcount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Epoch {
    /// A new pseudonym every UTC calendar month (`2026-11`). The default: monthly active
    /// installs stay exact.
    #[default]
    Monthly,
    /// A new pseudonym every week starting on Monday, UTC (`week-2026-11-16`).
    Weekly,
    /// One pseudonym for the life of the install secret (until `telemetry reset`).
    Never,
}

impl Epoch {
    /// The epoch label containing `now`: `2026-11`, `week-2026-11-16` or `all`.
    pub fn label(self, now: SystemTime) -> String {
        match self {
            Self::Monthly => {
                let mut s = humantime::format_rfc3339_seconds(now).to_string();
                s.truncate(7);
                s
            }
            Self::Weekly => {
                let days = now
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() / 86_400);
                // 1970-01-01 was a Thursday: (days + 3) % 7 is 0 on Mondays.
                let monday = days - (days + 3) % 7;
                let t = UNIX_EPOCH + Duration::from_secs(monday * 86_400);
                let mut s = humantime::format_rfc3339_seconds(t).to_string();
                s.truncate(10);
                format!("week-{s}")
            }
            Self::Never => "all".to_owned(),
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Monthly => "monthly",
            Self::Weekly => "weekly",
            Self::Never => "never",
        })
    }
}

/// The pseudonym epoch containing `now`: the UTC month, `"2026-11"`.
#[cfg(test)]
pub(crate) fn monthly_epoch(now: SystemTime) -> String {
    Epoch::Monthly.label(now)
}

/// The pseudonym of every CI run of one vendor: `ci:<vendor>` (`ci:github-actions`).
pub(crate) fn ci_pseudonym(vendor_slug: &str) -> String {
    format!("ci:{vendor_slug}")
}

/// A stable per-machine identifier for authors who need one: the SHA-256 of an
/// author-chosen salt and the operating system's machine id, as 64 lowercase hex digits.
///
/// Salting means two tools (different salts) get unrelated ids for the same machine, and the
/// raw machine id is never exposed. optel itself never sends it: the pseudonym is what
/// identifies an install. Sending a `MachineId` is the author's decision and must be listed in
/// their own privacy notice.
///
/// # Examples
/// ```
/// let a = optel::MachineId::derive("acme-license-v1");
/// assert_eq!(a.as_str().len(), 64);
/// assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MachineId(String);

/// Where the OS machine id is read on Linux and other Unix systems (systemd, then D-Bus).
#[cfg(not(any(target_os = "macos", windows)))]
const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

impl MachineId {
    /// Derives the id from `salt` and the OS machine id: `/etc/machine-id` or
    /// `/var/lib/dbus/machine-id` on Linux, `gethostuuid` (the hardware UUID) on macOS, the
    /// registry's `MachineGuid` on Windows. Where none can be read (a container without
    /// `/etc/machine-id`, another platform), a random value stands in, so the id is then
    /// different on every call: check [`is_stable`](Self::is_stable), and keep your own random
    /// id in a file if you need one that lasts.
    pub fn derive(salt: &str) -> Self {
        Self::derive_from(salt, read_os_machine_id().as_deref())
    }

    fn derive_from(salt: &str, machine: Option<&str>) -> Self {
        let mut h = Sha256::new();
        h.update(b"optel machine id v1|");
        h.update(salt.as_bytes());
        h.update(b"|");
        match machine {
            Some(m) => {
                h.update(b"os|");
                h.update(m.as_bytes());
            }
            None => {
                h.update(b"random|");
                h.update(random_bytes::<32>().unwrap_or([0; 32]));
            }
        }
        Self(hex::encode(h.finalize()))
    }

    /// Whether an OS machine id was found, so that [`derive`](Self::derive) returns the same
    /// id on every call on this machine.
    pub fn is_stable() -> bool {
        read_os_machine_id().is_some()
    }

    /// The id: 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MachineId {
    // Not printed in full: it is an identifier.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MachineId({}…)", &self.0[..8.min(self.0.len())])
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(any(target_os = "macos", windows))]
fn read_os_machine_id() -> Option<String> {
    let id = machine_uid::get().ok()?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= 128).then(|| id.to_owned())
}

#[cfg(not(any(target_os = "macos", windows)))]
fn read_os_machine_id() -> Option<String> {
    MACHINE_ID_FILES.iter().find_map(|p| {
        let bytes = fsutil::read_system_file(Path::new(p), 4096).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let id = text.trim();
        (!id.is_empty() && id.len() <= 128).then(|| id.to_owned())
    })
}

/// A number in `[0, 1)` derived from the pseudonym and a label, the same on every run within
/// an epoch: sampling keeps or drops an install as a whole, so its counts stay consistent.
pub(crate) fn sample_point(pseudonym: &str, label: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(b"optel sample v1|");
    h.update(pseudonym.as_bytes());
    h.update(b"|");
    h.update(label.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // 53 bits: exactly representable in an f64.
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
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
    fn recent_epochs_cover_the_forget_window() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_305_600); // 2026-11-22
        let months = recent_epoch_labels(Epoch::Monthly, now, 14);
        assert_eq!(months.len(), 14);
        assert_eq!(months[0], "2026-11");
        assert_eq!(months[13], "2025-10");
        let weeks = recent_epoch_labels(Epoch::Weekly, now, 60);
        assert_eq!(weeks.len(), 60);
        assert_eq!(weeks[0], Epoch::Weekly.label(now));
        assert_eq!(recent_epoch_labels(Epoch::Never, now, 14), ["all"]);
    }

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
    fn weekly_epoch_is_monday() {
        // 2026-11-21 is a Saturday; its week starts on Monday 2026-11-16.
        let sat = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_219_200 + 3_600);
        assert_eq!(Epoch::Weekly.label(sat), "week-2026-11-16");
        let mon = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_219_200 - 5 * 86_400);
        assert_eq!(Epoch::Weekly.label(mon), "week-2026-11-16");
        let sun = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_219_200 - 5 * 86_400 - 1);
        assert_eq!(Epoch::Weekly.label(sun), "week-2026-11-09");
        assert_eq!(Epoch::Never.label(sat), Epoch::Never.label(mon));
    }

    #[test]
    fn machine_id_is_salted_and_stable() {
        let a = MachineId::derive_from("s1", Some("abc"));
        assert_eq!(a, MachineId::derive_from("s1", Some("abc")));
        assert_ne!(a, MachineId::derive_from("s2", Some("abc")));
        assert_ne!(a, MachineId::derive_from("s1", Some("abd")));
        assert_eq!(a.as_str().len(), 64);
        // Fallback: random, so two derivations differ.
        assert_ne!(
            MachineId::derive_from("s1", None),
            MachineId::derive_from("s1", None)
        );
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn machine_id_is_stable_where_the_platform_has_one() {
        // Regression: only Linux read an OS id; macOS and Windows got a new random id on
        // every call. Where an id is found (every supported desktop OS, most Linux hosts),
        // two derivations agree; where none is (some containers), they differ, as documented.
        let (a, b) = (MachineId::derive("s"), MachineId::derive("s"));
        assert_eq!(MachineId::is_stable(), a == b);
        if cfg!(any(target_os = "macos", windows)) {
            assert!(
                MachineId::is_stable(),
                "macOS and Windows always have a machine id"
            );
        }
    }

    #[test]
    fn sample_points_are_deterministic_and_spread() {
        let p = sample_point("abc", "command");
        assert_eq!(p, sample_point("abc", "command"));
        assert!((0.0..1.0).contains(&p));
        let below = (0..1000)
            .filter(|i| sample_point(&format!("p{i}"), "command") < 0.25)
            .count();
        assert!((150..350).contains(&below), "{below}");
    }

    #[test]
    fn rotating_removes_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let s1 = load_or_create_secret(dir.path()).unwrap();
        assert!(rotate_secret(dir.path()).unwrap());
        assert!(!rotate_secret(dir.path()).unwrap());
        let s2 = load_or_create_secret(dir.path()).unwrap();
        assert_ne!(s1, s2);
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

    /// The vectors of `sdk/fixtures/pseudonym-vectors.json`, which the JavaScript SDK's tests
    /// read too: a Rust tool and a Node.js tool of the same name agree on the pseudonym.
    #[test]
    fn shared_pseudonym_vectors() {
        let v = crate::consent::tests::shared_fixture("pseudonym-vectors.json");
        let list = |k: &str| v[k].as_array().unwrap().clone();
        let s = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap().to_owned();
        let at = |c: &serde_json::Value| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(c["unix_s"].as_u64().unwrap())
        };
        for c in list("pseudonyms") {
            let secret: [u8; 32] = hex::decode(s(&c, "secret_hex"))
                .unwrap()
                .try_into()
                .unwrap();
            assert_eq!(
                pseudonym(&secret, &s(&c, "tool"), &s(&c, "epoch")),
                s(&c, "pseudonym"),
                "{c}"
            );
        }
        for c in list("epoch_labels") {
            assert_eq!(Epoch::Monthly.label(at(&c)), s(&c, "monthly"), "{c}");
            assert_eq!(Epoch::Weekly.label(at(&c)), s(&c, "weekly"), "{c}");
            assert_eq!(Epoch::Never.label(at(&c)), s(&c, "never"), "{c}");
        }
        for c in list("recent_epoch_labels") {
            let epoch = match c["kind"].as_str().unwrap() {
                "monthly" => Epoch::Monthly,
                "weekly" => Epoch::Weekly,
                _ => Epoch::Never,
            };
            let labels = recent_epoch_labels(epoch, at(&c), c["max"].as_u64().unwrap() as usize);
            assert_eq!(labels.len() as u64, c["count"].as_u64().unwrap(), "{c}");
            assert_eq!(labels.first().cloned(), Some(s(&c, "first")), "{c}");
            if let Some(last) = c["last"].as_str() {
                assert_eq!(labels.last().map(String::as_str), Some(last), "{c}");
            }
        }
        for c in list("uuid_v4") {
            let bytes: [u8; 16] = hex::decode(s(&c, "bytes_hex")).unwrap().try_into().unwrap();
            assert_eq!(optel_wire::format_uuid_v4(bytes), s(&c, "uuid"), "{c}");
        }
        for c in list("forget_proofs") {
            let proof =
                optel_wire::forget_proof(&s(&c, "pseudonym"), &s(&c, "tool"), &s(&c, "timestamp"));
            assert_eq!(proof, s(&c, "proof"), "{c}");
        }
    }
}
