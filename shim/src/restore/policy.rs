//! What a restore must satisfy before the runtime sees anything: the archive inside the
//! allowed directories, its digest its sidecar's, its namespace the new pod's, its bind
//! mounts in the request. Each refusal is a gRPC status naming the rule.

use std::path::{Path, PathBuf};

use ckpt_format::sidecar::{self, Sidecar};

use super::error::Error;
use super::stage;
use crate::api::cri::CreateContainerRequest;
use crate::runtime::pod::PodRecord;

/// The archive, symlinks resolved, inside one of the allowed directories.
pub fn confined(path: &Path, allowed_dirs: &[PathBuf]) -> Result<PathBuf, Error> {
    let real = path.canonicalize().map_err(|source| Error::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let inside = allowed_dirs.iter().any(|d| {
        d.canonicalize()
            .map(|d| real.starts_with(d))
            .unwrap_or(false)
    });
    if !inside {
        return Err(Error::OutsideAllowedDirs {
            path: path.to_owned(),
            allowed: allowed_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if !real.is_file() {
        return Err(Error::NotAFile(path.to_owned()));
    }
    Ok(real)
}

/// The archive's digest and size must be its sidecar's; without a sidecar, only when
/// `restore.require_sidecar` is off.
pub fn check_sidecar(
    archive: &Path,
    staged: &stage::Staged,
    require_sidecar: bool,
) -> Result<(), Error> {
    let path = sidecar::path_for(archive);
    let side = match Sidecar::read(archive) {
        Ok(side) => side,
        Err(e) if e.is_missing() => {
            if require_sidecar {
                return Err(Error::NoSidecar {
                    archive: archive.to_owned(),
                    sidecar: path,
                });
            }
            return Ok(());
        }
        Err(sidecar::ReadError::Io(source)) => {
            return Err(Error::SidecarUnreadable {
                sidecar: path,
                source,
            })
        }
        Err(sidecar::ReadError::Format(source)) => {
            return Err(Error::SidecarInvalid {
                sidecar: path,
                source,
            })
        }
    };
    if side.sha256 != staged.sha256 || side.size != staged.size {
        return Err(Error::DigestMismatch {
            archive: archive.to_owned(),
            sha256: staged.sha256.clone(),
            size: staged.size,
            want: side.sha256,
            want_size: side.size.to_string(),
        });
    }
    Ok(())
}

/// The checkpoint's namespace must be the new pod's, unless `restore.allow_cross_namespace`.
pub fn check_namespace(
    staged: &stage::Staged,
    sandbox: &PodRecord,
    allow_cross_namespace: bool,
) -> Result<(), Error> {
    if allow_cross_namespace {
        return Ok(());
    }
    let from = staged.namespace();
    if from != sandbox.namespace {
        return Err(Error::CrossNamespace {
            from: from.to_string(),
            into: sandbox.namespace.clone(),
        });
    }
    Ok(())
}

/// The request must mount every path the checkpointed container had bind-mounted.
pub fn check_mounts(staged: &stage::Staged, request: &CreateContainerRequest) -> Result<(), Error> {
    let have: Vec<&str> = request
        .config
        .as_ref()
        .map(|c| c.mounts.iter().map(|m| m.container_path.as_str()).collect())
        .unwrap_or_default();
    let missing: Vec<String> = staged
        .bind_mounts()
        .into_iter()
        .filter(|d| !have.contains(&d.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::MissingMounts(missing));
    }
    Ok(())
}

/// The CRIU options the checkpoint was taken with, from its sidecar (only those the shim
/// knows).
pub fn criu_options(archive: &Path) -> Vec<String> {
    Sidecar::read(archive)
        .map(|s| s.criu_options)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| crate::config::CRIU_OPTIONS.contains(&o.as_str()))
        .collect()
}
