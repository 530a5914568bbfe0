//! Every file and directory optel touches in its data, state and config directories goes
//! through here, so every caller gets the same guarantees. optel runs inside other people's
//! tools, often as root in CI and containers, in directories another user may be able to
//! write to:
//!
//! - **No symbolic links followed** for files: they are opened with `O_NOFOLLOW` (on Windows
//!   `FILE_FLAG_OPEN_REPARSE_POINT`, then refused if the handle is a reparse point), so a
//!   link planted at `queue/dropped` or `ledger/<date>.jsonl` cannot make optel truncate or
//!   append to its target.
//! - **Only regular files**: the opened file's own metadata is checked, and the open is
//!   non-blocking (`O_NONBLOCK`), so a FIFO cannot hang the tool and `/dev/zero` is refused.
//! - **Bounded reads**: at most a limit of bytes, counted while reading (`take(limit + 1)`),
//!   never trusted from the reported size (0 for `/proc` files).
//! - **Private directories**: created 0700; an existing one must be a real directory (not a
//!   link), owned by the effective user and not writable by group or others, else optel
//!   refuses it (telemetry is off for the run and `telemetry status` says why); one readable
//!   by others is tightened to 0700. Ownership and modes are Unix notions: elsewhere only the
//!   link and kind checks apply.
//! - **Nothing created above optel's own directories** that does not exist: never `HOME`,
//!   never an `XDG_*_HOME` that is set; under an existing home the platform's default base
//!   directory (`~/.local/share`, `~/.config`) is created 0700, as the XDG specification asks.
//!
//! Files are created 0600. Nothing here needs `unsafe` (`rustix` for the flags and the
//! effective user id).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where one of optel's own directories lives: the directory, the existing directory it is
/// created from (never created itself), and the first directory from which every level down to
/// `dir` is checked (the levels optel owns, e.g. `<data dir>/optel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirPlan {
    pub(crate) dir: PathBuf,
    /// Must exist; `None`: the nearest existing ancestor of `dir` (a directory the author
    /// named in code).
    pub(crate) anchor: Option<PathBuf>,
    pub(crate) checked_from: PathBuf,
}

impl DirPlan {
    /// A directory named in code: created with its missing parents, checked itself only.
    pub(crate) fn explicit(dir: PathBuf) -> Self {
        Self {
            checked_from: dir.clone(),
            dir,
            anchor: None,
        }
    }

    /// `<base>/<below...>` for a platform base directory (`directories::BaseDirs`): created
    /// from the home directory when the base is the default one under it (`xdg_var`, e.g.
    /// `XDG_DATA_HOME`, not set), else from the base itself; checked from `<base>/<first>`.
    pub(crate) fn under_base(base: &Path, home: &Path, xdg_var_set: bool, below: &[&str]) -> Self {
        let anchor = if !xdg_var_set && base.starts_with(home) && base != home {
            home
        } else {
            base
        };
        let mut dir = base.to_owned();
        let mut checked_from = None;
        for part in below {
            dir.push(part);
            checked_from.get_or_insert_with(|| dir.clone());
        }
        Self {
            checked_from: checked_from.unwrap_or_else(|| dir.clone()),
            dir,
            anchor: Some(anchor.to_owned()),
        }
    }

    /// The same plan for a directory below this one: created from this plan's anchor, checked
    /// from this plan's first checked level.
    #[cfg_attr(not(any(test, feature = "encryption")), allow(dead_code))]
    pub(crate) fn child(&self, name: &str) -> Self {
        Self {
            dir: self.dir.join(name),
            anchor: self.anchor.clone(),
            checked_from: self.checked_from.clone(),
        }
    }

    /// Creates what is missing (0700) and checks every level optel owns; see the module docs.
    ///
    /// # Errors
    /// The anchor does not exist, a level cannot be created, or a level is refused.
    pub(crate) fn ensure(&self) -> io::Result<()> {
        let anchor = match &self.anchor {
            Some(anchor) => {
                if !anchor.is_dir() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "{} does not exist, and optel does not create it: create it (or \
                             set HOME or the XDG base directory to an existing one)",
                            anchor.display()
                        ),
                    ));
                }
                anchor.clone()
            }
            None => nearest_existing(&self.dir),
        };
        let Ok(below) = self.dir.strip_prefix(&anchor) else {
            return Err(io::Error::other(format!(
                "{} is not inside {}",
                self.dir.display(),
                anchor.display()
            )));
        };
        let mut level = anchor.clone();
        for part in below.components() {
            level.push(part);
            match mkdir_private(&level) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if level.starts_with(&self.checked_from) {
                check_dir(&level, true)?;
            }
        }
        if below.as_os_str().is_empty() && self.dir.starts_with(&self.checked_from) {
            check_dir(&self.dir, true)?;
        }
        Ok(())
    }

    /// Checks the levels that exist, creating and changing nothing (for `telemetry status`).
    ///
    /// # Errors
    /// A level that exists is refused.
    #[cfg_attr(not(feature = "clap"), allow(dead_code))]
    pub(crate) fn check_existing(&self) -> io::Result<()> {
        if let Some(anchor) = &self.anchor
            && !anchor.is_dir()
        {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} does not exist, and optel does not create it",
                    anchor.display()
                ),
            ));
        }
        let mut levels: Vec<&Path> = self
            .dir
            .ancestors()
            .take_while(|p| p.starts_with(&self.checked_from))
            .collect();
        levels.reverse();
        for level in levels {
            match fs::symlink_metadata(level) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                _ => check_dir(level, false)?,
            }
        }
        Ok(())
    }
}

fn nearest_existing(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|p| p.as_os_str().is_empty() || p.is_dir())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

fn mkdir_private(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Refuses a level that is a link, not a directory, owned by another user or writable by
/// group or others; with `tighten`, makes one readable by others 0700.
fn check_dir(dir: &Path, tighten: bool) -> io::Result<()> {
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} {why}, so optel does not use it", dir.display()),
        ))
    };
    let meta = fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return refuse("is a symbolic link".into());
    }
    if !meta.is_dir() {
        return refuse("is not a directory".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return refuse(format!(
                "is owned by uid {}, not by this user (uid {me}): remove it or change its owner",
                meta.uid()
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return refuse(format!(
                "is writable by other users (mode {mode:04o}): another user may have put \
                 files in it; remove it, or chmod 700 it if it is yours alone"
            ));
        }
        if tighten && mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
    }
    #[cfg(not(unix))]
    let _ = tighten;
    Ok(())
}

/// Creates `dir` and its missing parents (0700), then checks `dir` itself (for a directory
/// named in code, e.g. a `JsonlFileExporter`'s).
///
/// # Errors
/// As [`DirPlan::ensure`].
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirPlan::explicit(dir.to_owned()).ensure()
}

/// Open options that never follow a symbolic link at the last component and never block on a
/// FIFO or a device.
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        // The flags are small positive constants: the cast keeps their bits.
        #[allow(clippy::cast_possible_wrap)]
        options.custom_flags(flags.bits() as i32);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        /// `FILE_FLAG_OPEN_REPARSE_POINT`: open a link itself, never its target.
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
    options
}

/// Checks that an opened file is a regular file (not a link, FIFO, socket or device).
fn regular(file: File, path: &Path) -> io::Result<File> {
    let meta = file.metadata()?;
    if meta.is_file() && !meta.file_type().is_symlink() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file, so optel does not use it",
                path.display()
            ),
        ))
    }
}

/// Says plainly that a path is a link, where the OS says "too many levels of symbolic links".
fn explain(e: io::Error, path: &Path) -> io::Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link, which optel does not follow",
                path.display()
            ),
        );
    }
    let _ = path;
    e
}

fn open_with(options: &OpenOptions, path: &Path) -> io::Result<File> {
    let file = options.open(path).map_err(|e| explain(e, path))?;
    regular(file, path)
}

/// Opens one of optel's own files for reading (no link followed, regular files only).
///
/// # Errors
/// The file cannot be opened (`NotFound` when missing) or is not a regular file.
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    open_with(no_follow(OpenOptions::new().read(true)), path)
}

/// Reads one of optel's own files whole: no link followed, regular files only, at most
/// `limit` bytes.
///
/// # Errors
/// As [`open_read`], or the file is larger than `limit`.
pub(crate) fn read_private(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_bounded(open_read(path)?, path, limit)
}

/// Opens (creating it 0600 if missing) one of optel's small state files for reading and
/// writing in place, without truncating it.
///
/// # Errors
/// As [`open_read`].
pub(crate) fn open_state(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    private_mode(&mut options);
    open_with(no_follow(&mut options), path)
}

/// Opens (creating it 0600 if missing) one of optel's files for appending.
///
/// # Errors
/// As [`open_read`].
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    private_mode(&mut options);
    open_with(no_follow(&mut options), path)
}

fn private_mode(options: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = options;
}

/// Creates a new file readable and writable by its owner only (0600 on Unix); fails if
/// anything, a link included, exists at `path`.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    private_mode(&mut options);
    open_with(no_follow(&mut options), path)
}

/// Writes `bytes` to `path` (0600), replacing it whole: written under a temporary name in the
/// same directory, then renamed, so a reader never sees half a file. A link at `path` is
/// replaced, never followed.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let suffix = hex::encode(crate::random::random_bytes::<6>()?);
    let tmp = path.with_file_name(format!(".{name}.{suffix}.tmp"));
    let written = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Reads a file outside optel's own directories (a CA bundle, the OS machine id), following
/// symbolic links, refusing anything but a regular file (without blocking on a FIFO), and at
/// most `limit` bytes.
///
/// # Errors
/// The file cannot be opened or read, is not a regular file, or is larger than `limit`.
#[cfg_attr(
    not(any(feature = "tls", feature = "rustls", target_os = "linux")),
    allow(dead_code)
)]
pub(crate) fn read_system_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        #[allow(clippy::cast_possible_wrap)]
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = regular(options.open(path)?, path)?;
    read_bounded(file, path, limit)
}

/// Reads an opened file whole, at most `limit` bytes: the size is counted while reading, not
/// trusted from the metadata (`/proc` files report 0).
fn read_bounded(file: File, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is larger than the limit of {limit} bytes",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

/// Reads a file of `N` counters written by [`update_counters`]; a missing or damaged file
/// reads as zeros.
pub(crate) fn read_counters<const N: usize>(path: &Path) -> [u64; N] {
    let mut text = String::new();
    if let Ok(file) = open_read(path) {
        let _ = file.take(64 * (N as u64 + 1)).read_to_string(&mut text);
    }
    parse_counters(&text)
}

fn parse_counters<const N: usize>(text: &str) -> [u64; N] {
    let mut counters = [0; N];
    let numbers: Vec<Option<u64>> = text.split_whitespace().map(|n| n.parse().ok()).collect();
    if numbers.len() == N && numbers.iter().all(Option::is_some) {
        for (c, n) in counters.iter_mut().zip(numbers) {
            *c = n.unwrap_or(0);
        }
    }
    counters
}

/// Read-modify-write of a small file of `N` counters (created 0600) under an exclusive lock,
/// so concurrent processes never lose each other's counts. The record is written in place with
/// one `write` of fixed width, so a killed process leaves the old or the new value.
///
/// # Errors
/// The file cannot be opened, locked, read or written.
pub(crate) fn update_counters<const N: usize>(
    path: &Path,
    change: impl FnOnce(&mut [u64; N]),
) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = open_state(path)?;
    file.lock()?;
    let mut text = String::new();
    (&mut file)
        .take(64 * (N as u64 + 1))
        .read_to_string(&mut text)?;
    let mut counters = parse_counters::<N>(&text);
    change(&mut counters);
    let mut record = counters
        .iter()
        .map(|c| format!("{c:020}"))
        .collect::<Vec<_>>()
        .join(" ");
    record.push('\n');
    file.seek(SeekFrom::Start(0))?;
    file.write_all(record.as_bytes())?;
    file.set_len(record.len() as u64)?;
    Ok(())
}

/// Free bytes an unprivileged user may still write on the file system holding `dir`
/// (`statvfs`: available blocks × fragment size). `None` when it cannot be told (the call
/// failed, or a platform without `statvfs`).
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::process::Command;

    use super::*;

    fn mkfifo(path: &Path) {
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, "keep me").unwrap();
        let link = dir.path().join("dropped");
        symlink(&target, &link).unwrap();
        for e in [
            open_state(&link).unwrap_err(),
            open_append(&link).unwrap_err(),
            read_private(&link, 1024).unwrap_err(),
            create_private(&link).unwrap_err(),
        ] {
            assert!(
                e.to_string().contains("symbolic link") || e.kind() == io::ErrorKind::AlreadyExists,
                "{e}"
            );
        }
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        // Atomic replacement replaces the link itself.
        write_private_atomic(&link, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        assert!(
            !fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        // Without O_NONBLOCK this open would wait forever for a writer.
        let e = read_private(&fifo, 1024).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_system_file(&fifo, 1024).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_system_file(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn reads_are_bounded_whatever_the_reported_size() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        fs::write(&big, vec![b'x'; 100]).unwrap();
        assert_eq!(read_private(&big, 100).unwrap().len(), 100);
        let e = read_private(&big, 99).unwrap_err();
        assert!(e.to_string().contains("limit of 99 bytes"), "{e}");
        // A /proc file reports size 0 yet has content: the limit counts what is read.
        if Path::new("/proc/self/status").exists() {
            let e = read_system_file(Path::new("/proc/self/status"), 8).unwrap_err();
            assert!(e.to_string().contains("limit of 8 bytes"), "{e}");
        }
    }

    #[test]
    fn directories_are_created_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        let base = home.join(".local/share");
        let plan = DirPlan::under_base(&base, &home, false, &["optel", "acme"]);
        plan.ensure().unwrap();
        for level in [
            home.join(".local"),
            base.clone(),
            base.join("optel"),
            plan.dir.clone(),
        ] {
            assert_eq!(mode(&level), 0o700, "{}", level.display());
        }
        assert_eq!(mode(&home), 0o755, "the home directory is not changed");
        // An existing level of ours that others can read is tightened.
        fs::set_permissions(&plan.dir, fs::Permissions::from_mode(0o755)).unwrap();
        plan.child("queue").ensure().unwrap();
        assert_eq!(mode(&plan.dir), 0o700);
        assert_eq!(mode(&plan.dir.join("queue")), 0o700);
    }

    #[test]
    fn missing_home_or_xdg_base_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("no-such-home");
        let plan =
            DirPlan::under_base(&home.join(".local/share"), &home, false, &["optel", "acme"]);
        let e = plan.ensure().unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!home.exists());
        // `telemetry status` says so too.
        let e = plan.check_existing().unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        // An XDG_DATA_HOME that is set but missing is not created either.
        fs::create_dir(&home).unwrap();
        let xdg = dir.path().join("xdg-data");
        let e = DirPlan::under_base(&xdg, &home, true, &["optel", "acme"])
            .ensure()
            .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!xdg.exists());
    }

    #[test]
    fn hostile_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("xdg");
        fs::create_dir(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
        let plan = DirPlan::under_base(&base, dir.path(), true, &["optel", "acme"]);
        // Another user's pre-created directory, mode 0777, with a link planted inside.
        fs::create_dir_all(&plan.dir).unwrap();
        fs::set_permissions(&plan.dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = plan.ensure().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("writable by other users"), "{e}");
        assert!(plan.check_existing().is_err());
        assert_eq!(
            mode(&plan.dir),
            0o777,
            "a refused directory is left as it is"
        );
        // A symlinked queue directory.
        fs::set_permissions(&plan.dir, fs::Permissions::from_mode(0o700)).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, plan.dir.join("queue")).unwrap();
        let e = plan.child("queue").ensure().unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // A directory of another user (root's files are owned by uid 0; as root, take a
        // file-owning uid we can set).
        if rustix::process::geteuid().is_root() {
            let theirs = base.join("optel").join("other");
            fs::create_dir(&theirs).unwrap();
            fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            let e = DirPlan::under_base(&base, dir.path(), true, &["optel", "other"])
                .ensure()
                .unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        }
    }
}
