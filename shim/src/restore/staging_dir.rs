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

/// Removes a staging directory (gigabytes, at times) on a blocking thread, and waits for it:
/// the caller's answer says nothing is left.
pub async fn remove(dir: PathBuf) {
    let shown = dir.display().to_string();
    let removed = tokio::task::spawn_blocking(move || remove_staged(&dir)).await;
    if let Ok(Err(e)) = removed {
        tracing::warn!(dir = %shown, error = %e, "cannot remove a staged checkpoint");
    }
}

/// Removes a staging directory off the async threads without waiting: for a call that was
/// abandoned (its future dropped), where nobody waits for the answer.
pub fn remove_soon(dir: PathBuf) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || remove_staged(&dir));
        }
        Err(_) => {
            let _ = remove_staged(&dir);
        }
    }
}

/// Removes a staging directory if the work on it is abandoned before it is kept or removed.
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
            remove_soon(dir);
        }
    }
}

/// A new file only root can read, on disk before this returns (written and fsynced on a
/// blocking thread).
pub async fn write_private(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || write_private_now(&path, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

fn write_private_now(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
