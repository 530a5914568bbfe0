//! Install sketches: [`SketchKind`], the pseudonym hash they hold ([`install_hash`]) and
//! [`InstallSketch`], exact while small, then a HyperLogLog.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// Dimension of a `rollup_installs` sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SketchKind {
    /// Every event of the project (value empty): DAU/WAU/MAU and active installs.
    All = 0,
    /// One command (value: its name).
    Command = 1,
    /// One failed command and error code (value: `command error_code`).
    Error = 2,
    /// One tool version (value: the version).
    Version = 3,
    /// One platform (value: `os arch`).
    Platform = 4,
    /// One feature (value: its name).
    Feature = 5,
    /// One method (value: its name).
    Method = 6,
    /// One custom event (value: its name).
    Custom = 7,
    /// One value of one declared attribute of one event (value: `event_type name attribute
    /// value`, see [`attribute_sketch_value`]).
    Attribute = 8,
}

impl SketchKind {
    /// The stored code.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The kind of a stored code.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::All,
            1 => Self::Command,
            2 => Self::Error,
            3 => Self::Version,
            4 => Self::Platform,
            5 => Self::Feature,
            6 => Self::Method,
            7 => Self::Custom,
            8 => Self::Attribute,
            _ => return None,
        })
    }
}

/// The 64-bit hash of a pseudonym that sketches hold (first 8 bytes of its SHA-256).
pub fn install_hash(pseudonym: &str) -> u64 {
    let d = Sha256::digest(pseudonym.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// Sparse sketches hold up to this many exact hashes before turning into a HyperLogLog.
pub const SPARSE_MAX: usize = 256;
/// HyperLogLog precision: 2^10 registers, about 3 % standard error.
const HLL_P: u32 = 10;
const HLL_M: usize = 1 << HLL_P;

/// The distinct installs of one rollup cell: an exact set of install hashes while small (so
/// that counts below [`SPARSE_MAX`], and thus every k-anonymity decision, are exact), then a
/// HyperLogLog of 1,024 registers (about 3 % error). Sketches of several days merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallSketch {
    /// Exact hashes.
    Sparse(BTreeSet<u64>),
    /// HyperLogLog registers.
    Dense(Box<[u8]>),
}

impl Default for InstallSketch {
    fn default() -> Self {
        Self::Sparse(BTreeSet::new())
    }
}

fn hll_slot(hash: u64) -> (usize, u8) {
    let idx = (hash >> (64 - HLL_P)) as usize;
    let w = (hash << HLL_P) | (1 << (HLL_P - 1));
    (idx, (w.leading_zeros() + 1) as u8)
}

impl InstallSketch {
    /// Adds one install hash. Returns whether the sketch changed (false when the install was
    /// already in an exact sketch, or its register already held as much).
    pub fn insert(&mut self, hash: u64) -> bool {
        match self {
            Self::Sparse(set) => {
                if !set.insert(hash) {
                    return false;
                }
                if set.len() > SPARSE_MAX {
                    self.densify();
                }
                true
            }
            Self::Dense(regs) => {
                let (i, r) = hll_slot(hash);
                match regs.get_mut(i) {
                    Some(slot) if *slot < r => {
                        *slot = r;
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Removes an install hash if the sketch is still exact (deletion by pseudonym); a dense
    /// sketch keeps only register maxima that cannot be traced back to one install.
    pub fn remove(&mut self, hash: u64) {
        if let Self::Sparse(set) = self {
            set.remove(&hash);
        }
    }

    fn densify(&mut self) {
        if let Self::Sparse(set) = self {
            let mut regs = vec![0u8; HLL_M].into_boxed_slice();
            for &h in set.iter() {
                let (i, r) = hll_slot(h);
                if let Some(slot) = regs.get_mut(i) {
                    *slot = (*slot).max(r);
                }
            }
            *self = Self::Dense(regs);
        }
    }

    /// Adds every install of `other`.
    pub fn merge(&mut self, other: &Self) {
        match other {
            Self::Sparse(set) => {
                for &h in set {
                    let _ = self.insert(h);
                }
            }
            Self::Dense(theirs) => {
                self.densify();
                if let Self::Dense(ours) = self {
                    for (a, b) in ours.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// Estimated distinct installs (exact while sparse).
    pub fn count(&self) -> u64 {
        match self {
            Self::Sparse(set) => set.len() as u64,
            Self::Dense(regs) => {
                let m = HLL_M as f64;
                let sum: f64 = regs.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
                let zeros = regs.iter().filter(|&&r| r == 0).count();
                let alpha = 0.7213 / (1.0 + 1.079 / m);
                let raw = alpha * m * m / sum;
                let est = if raw <= 2.5 * m && zeros > 0 {
                    m * (m / zeros as f64).ln()
                } else {
                    raw
                };
                est.round() as u64
            }
        }
    }

    /// The stored form: `0` then big-endian hashes, or `1` then the registers.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Sparse(set) => {
                let mut out = Vec::with_capacity(1 + set.len() * 8);
                out.push(0);
                for h in set {
                    out.extend_from_slice(&h.to_be_bytes());
                }
                out
            }
            Self::Dense(regs) => {
                let mut out = Vec::with_capacity(1 + regs.len());
                out.push(1);
                out.extend_from_slice(regs);
                out
            }
        }
    }

    /// Reads the stored form; anything malformed reads as empty (a sketch is an estimate, and a
    /// damaged one must not fail a dashboard query).
    pub fn decode(bytes: &[u8]) -> Self {
        match bytes.split_first() {
            Some((1, regs)) if regs.len() == HLL_M => Self::Dense(regs.into()),
            Some((0, hashes)) if hashes.len() % 8 == 0 => {
                let mut set = BTreeSet::new();
                for chunk in hashes.chunks_exact(8) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    set.insert(u64::from_be_bytes(b));
                }
                Self::Sparse(set)
            }
            _ => Self::default(),
        }
    }
}

/// The stored value of an [`SketchKind::Attribute`] sketch. Names are wire names (no spaces),
/// so the value, last, may hold anything.
pub fn attribute_sketch_value(
    event_type: &str,
    name: &str,
    attribute: &str,
    value: &str,
) -> String {
    format!("{event_type} {name} {attribute} {value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketch_is_exact_while_small_and_close_when_large() {
        let mut s = InstallSketch::default();
        for i in 0..200 {
            s.insert(install_hash(&format!("p{i}")));
            s.insert(install_hash(&format!("p{i}")));
        }
        assert_eq!(s.count(), 200);
        let round = InstallSketch::decode(&s.encode());
        assert_eq!(round, s);
        s.remove(install_hash("p0"));
        assert_eq!(s.count(), 199);

        let mut a = InstallSketch::default();
        let mut b = InstallSketch::default();
        for i in 0..30_000 {
            a.insert(install_hash(&format!("a{i}")));
            b.insert(install_hash(&format!("a{}", i + 10_000)));
        }
        a.merge(&b);
        let n = a.count() as f64;
        assert!((n - 40_000.0).abs() < 40_000.0 * 0.1, "estimate {n}");
        assert_eq!(InstallSketch::decode(&a.encode()), a);
        assert_eq!(InstallSketch::decode(b"\x07junk").count(), 0);
    }
}
