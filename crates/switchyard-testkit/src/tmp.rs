//! A std-only temporary directory, removed on drop.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// The directory temp dirs are created in: `$SWITCHYARD_TEST_TMPDIR`, else the system temp dir.
pub(crate) fn base_dir() -> PathBuf {
    match std::env::var_os("SWITCHYARD_TEST_TMPDIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::temp_dir(),
    }
}

pub(crate) fn keep_tmp() -> bool {
    std::env::var("SWITCHYARD_KEEP_TMP").is_ok_and(|v| v == "1")
}

/// A small non-cryptographic random number (time, pid and a counter mixed with splitmix64).
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fresh directory (mode 0700) removed with its contents on drop, unless
/// `SWITCHYARD_KEEP_TMP=1` or [`TempDir::keep`] was called.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates `<base>/<prefix>-<pid>-<random>`.
    pub fn new(prefix: &str) -> Result<TempDir> {
        let base = base_dir();
        for _ in 0..100 {
            let path = base.join(format!(
                "{prefix}-{}-{:012x}",
                std::process::id(),
                random_u64() >> 16
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir { path, keep: false }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        anyhow::bail!(
            "could not create a unique temp dir under {}",
            base.display()
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place when dropped; returns its path.
    pub fn keep(&mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep || keep_tmp() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
