//! The private directory a restore is unpacked into (root's, 0700, under
//! `restore.staging_dir`), and files written into it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::Error;
use ckpt_shim_runc::staged::remove_staged;

/// A new, empty staging directory.
pub fn create(root: &Path) -> Result<PathBuf, Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| Error::Internal(format!("staging directory {}: {e}", root.display())))?;
    let token = format!(
        "{:x}-{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        std::process::id()
    );
    let dir = root.join(token);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::Internal(format!("staging directory {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Removes a staging directory unless the restore goes on.
pub struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub fn new(dir: PathBuf) -> Self {
        RemoveOnDrop(Some(dir))
    }

    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = remove_staged(&dir);
        }
    }
}

/// A new file only root can read, on disk before this returns.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
