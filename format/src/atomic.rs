//! Crash-safe writing: a temporary name beside the final one, fsync, rename, fsync of the
//! directory. The temporary names carry [`TEMP_MARK`] and the writer's pid, so a later run
//! can tell a dead run's leftovers from a live one's.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Marks the temporary files of the shim: `.<name>.ckpt-shim-tmp-<pid>-<n>`.
pub const TEMP_MARK: &str = ".ckpt-shim-tmp-";

/// A temporary name in the same directory as `location`, so the rename is atomic.
pub fn temp_path(location: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = location
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    location.with_file_name(format!(".{name}{TEMP_MARK}{}-{n}", std::process::id()))
}

/// fsync of the directory holding `path`, so a rename survives a power cut.
pub fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes `bytes` to `path` with `mode`: the whole file or, after a crash, none of it.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_dir(path);
    Ok(())
}
