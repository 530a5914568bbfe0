//! One spelling per operating system and CPU architecture, shared by every ingest path.
//!
//! The canonical names are Rust's `std::env::consts::OS` and `std::env::consts::ARCH` (what
//! the Rust SDK sends natively: `linux`, `macos`, `x86_64`, `aarch64`, ...). OpenTelemetry's
//! `os.type` and `host.arch` spellings (`darwin`, `amd64`, `arm64`, ...), the spellings other
//! runtimes report (`AMD64` from Python's `platform.machine()` on Windows, `x64` from Node.js,
//! `Linux` from `platform.system()`) and any letter case map to the same name, so that one
//! machine shows as one platform row whichever SDK sent its events. A value outside the table
//! becomes `unknown`: the item is kept, the unknown platform is not stored.
//!
//! ```
//! use optel_wire::platform::{normalize_arch, normalize_os};
//! assert_eq!(normalize_arch("AMD64"), "x86_64");
//! assert_eq!(normalize_arch("arm64"), "aarch64");
//! assert_eq!(normalize_os("Darwin"), "macos");
//! assert_eq!(normalize_os("Linux"), "linux");
//! assert_eq!(normalize_os("plan9-from-space"), "unknown");
//! ```

/// What an unknown OS or architecture is stored as.
pub const UNKNOWN: &str = "unknown";

/// `(spelling, canonical)` for operating systems; spellings are compared ignoring ASCII case.
const OS: &[(&str, &str)] = &[
    ("linux", "linux"),
    ("gnu/linux", "linux"),
    ("macos", "macos"),
    ("darwin", "macos"),
    ("mac os x", "macos"),
    ("osx", "macos"),
    ("windows", "windows"),
    ("win32", "windows"),
    ("windows_nt", "windows"),
    ("cygwin", "windows"),
    ("ios", "ios"),
    ("android", "android"),
    ("freebsd", "freebsd"),
    ("dragonfly", "dragonfly"),
    ("dragonflybsd", "dragonfly"),
    ("netbsd", "netbsd"),
    ("openbsd", "openbsd"),
    ("solaris", "solaris"),
    ("sunos", "solaris"),
    ("illumos", "illumos"),
    ("aix", "aix"),
    ("hpux", "hpux"),
    ("haiku", "haiku"),
    ("z_os", "zos"),
    ("zos", "zos"),
    ("os390", "zos"),
    ("fuchsia", "fuchsia"),
    ("redox", "redox"),
    ("wasi", "wasi"),
    ("emscripten", "emscripten"),
];

/// `(spelling, canonical)` for CPU architectures; spellings are compared ignoring ASCII case.
const ARCH: &[(&str, &str)] = &[
    ("x86_64", "x86_64"),
    ("amd64", "x86_64"),
    ("x64", "x86_64"),
    ("x86-64", "x86_64"),
    ("em64t", "x86_64"),
    ("intel64", "x86_64"),
    ("aarch64", "aarch64"),
    ("arm64", "aarch64"),
    ("arm64e", "aarch64"),
    ("armv8", "aarch64"),
    ("x86", "x86"),
    ("i386", "x86"),
    ("i486", "x86"),
    ("i586", "x86"),
    ("i686", "x86"),
    ("ia32", "x86"),
    ("arm", "arm"),
    ("arm32", "arm"),
    ("armv6l", "arm"),
    ("armv7l", "arm"),
    ("armv7", "arm"),
    ("ia64", "ia64"),
    ("ppc32", "powerpc"),
    ("ppc", "powerpc"),
    ("powerpc", "powerpc"),
    ("ppc64", "powerpc64"),
    ("ppc64le", "powerpc64"),
    ("powerpc64", "powerpc64"),
    ("s390x", "s390x"),
    ("riscv64", "riscv64"),
    ("riscv64gc", "riscv64"),
    ("loongarch64", "loongarch64"),
    ("mips", "mips"),
    ("mips64", "mips64"),
    ("sparc64", "sparc64"),
    ("wasm32", "wasm32"),
];

fn lookup(table: &'static [(&'static str, &'static str)], value: &str) -> &'static str {
    let value = value.trim();
    table
        .iter()
        .find(|(spelling, _)| spelling.eq_ignore_ascii_case(value))
        .map_or(UNKNOWN, |(_, canonical)| canonical)
}

/// The canonical name of an operating system (see the [module docs](self)), `unknown` when
/// the value is not in the table.
pub fn normalize_os(os: &str) -> &'static str {
    lookup(OS, os)
}

/// The canonical name of a CPU architecture (see the [module docs](self)), `unknown` when the
/// value is not in the table.
pub fn normalize_arch(arch: &str) -> &'static str {
    lookup(ARCH, arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the Rust SDK sends natively is already canonical.
    #[test]
    fn rust_consts_are_canonical() {
        assert_eq!(normalize_os(std::env::consts::OS), std::env::consts::OS);
        assert_eq!(
            normalize_arch(std::env::consts::ARCH),
            std::env::consts::ARCH
        );
        for (_, canonical) in OS {
            assert_eq!(normalize_os(canonical), *canonical);
        }
        for (_, canonical) in ARCH {
            assert_eq!(normalize_arch(canonical), *canonical);
        }
    }

    /// Regression: `host.arch=AMD64` or `os.type=Linux` made every item of the resource
    /// rejected, and `amd64`/`darwin` (OTLP) and `x86_64`/`macos` (native) were two rows.
    #[test]
    fn other_spellings_map_to_one_name() {
        for a in ["AMD64", "amd64", "x64", "X86_64"] {
            assert_eq!(normalize_arch(a), "x86_64", "{a}");
        }
        for a in ["arm64", "ARM64", "aarch64"] {
            assert_eq!(normalize_arch(a), "aarch64", "{a}");
        }
        for o in ["darwin", "Darwin", "macos"] {
            assert_eq!(normalize_os(o), "macos", "{o}");
        }
        assert_eq!(normalize_os("Linux"), "linux");
        assert_eq!(normalize_os("Windows"), "windows");
        assert_eq!(normalize_arch("quantum-9000"), UNKNOWN);
        assert_eq!(normalize_os(""), UNKNOWN);
    }
}
