//! Random bytes from the operating system, for secrets, ids, temporary file names and jitter.

use std::io;

/// `N` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    Ok(buf)
}
