//! File helpers that keep telemetry data private to the user: directories 0700, files 0600.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `dir` and its missing parents; the directories created are private (0700 on Unix).
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates a new file readable and writable by its owner only (0600 on Unix); fails if it exists.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Writes `bytes` to `path` (0600), replacing it whole: written under a temporary name in the
/// same directory, then renamed, so a reader never sees half a file.
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
/// symbolic links, refusing anything but a regular file, and at most `limit` bytes.
///
/// # Errors
/// The file cannot be opened or read, is not a regular file, or is larger than `limit`.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn read_system_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    read_regular(file, limit)
}

/// Reads an opened file whole, if it is a regular file of at most `limit` bytes. The size is
/// checked while reading, not trusted from the metadata (`/proc` files report 0).
fn read_regular(file: File, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the limit of {limit} bytes"),
        ));
    }
    Ok(bytes)
}
