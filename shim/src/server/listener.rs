//! The shim's own socket: created with the configured mode and group, a stale socket from
//! a crashed run replaced, a live one (another shim) refused, removed again on shutdown.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tokio::net::UnixListener;

/// Removes the socket file when dropped, so a clean stop leaves nothing behind.
pub struct SocketGuard {
    path: PathBuf,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::info!(socket = %self.path.display(), "socket removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove socket")
            }
        }
    }
}

pub fn bind(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> anyhow::Result<(UnixListener, SocketGuard)> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create socket directory {}", parent.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket nobody answers on is left over from a crash; one that answers belongs
            // to a running shim, which we must not steal from.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => bail!(
                    "{} is in use by a running process (another ckpt-shim?)",
                    path.display()
                ),
                Err(_) => {
                    tracing::warn!(socket = %path.display(), "replacing stale socket");
                    std::fs::remove_file(path).with_context(|| {
                        format!("cannot remove stale socket {}", path.display())
                    })?;
                }
            }
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .with_context(|| format!("cannot give {} to group {gid}", path.display()))?;
    }
    Ok((listener, guard))
}
