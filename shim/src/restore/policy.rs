//! What a restore must satisfy before the runtime sees anything: the archive inside the
//! allowed directories, its digest its sidecar's, its namespace the new pod's, its bind
//! mounts in the request. Each refusal is a gRPC status naming the rule.

use std::path::{Path, PathBuf};

use super::sandbox::SandboxView;
use super::stage;
use crate::api::cri::CreateContainerRequest;
use crate::grpc::{Code, Status};

/// The archive, symlinks resolved, inside one of the allowed directories.
pub fn confined(path: &Path, allowed_dirs: &[PathBuf]) -> Result<PathBuf, Status> {
    let real = path.canonicalize().map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        Status::new(code, format!("checkpoint archive {}: {e}", path.display()))
    })?;
    let inside = allowed_dirs.iter().any(|d| {
        d.canonicalize()
            .map(|d| real.starts_with(d))
            .unwrap_or(false)
    });
    if !inside {
        return Err(Status::new(
            Code::PermissionDenied,
            format!(
                "checkpoint archive {} is outside the directories restores may read ({})",
                path.display(),
                allowed_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if !real.is_file() {
        return Err(Status::invalid_argument(format!(
            "checkpoint archive {} is not a file",
            path.display()
        )));
    }
    Ok(real)
}

/// The archive's digest and size must be its sidecar's; without a sidecar, only when
/// `restore.require_sidecar` is off.
pub fn check_sidecar(
    archive: &Path,
    staged: &stage::Staged,
    require_sidecar: bool,
) -> Result<(), Status> {
    let path = crate::checkpoint::sidecar::path_for(archive);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if require_sidecar {
                return Err(Status::new(
                    Code::PermissionDenied,
                    format!(
                        "checkpoint archive {} has no sidecar {} (restore.require_sidecar)",
                        archive.display(),
                        path.display()
                    ),
                ));
            }
            return Ok(());
        }
        Err(e) => return Err(Status::internal(format!("{}: {e}", path.display()))),
    };
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        Status::invalid_argument(format!("sidecar {} is not valid JSON: {e}", path.display()))
    })?;
    let want = v["sha256"].as_str().unwrap_or("");
    if want != staged.sha256 || v["size"].as_u64() != Some(staged.size) {
        return Err(Status::new(
            Code::PermissionDenied,
            format!(
                "checkpoint archive {} does not match its sidecar: sha256 {} ({} bytes), sidecar says {want} ({} bytes)",
                archive.display(),
                staged.sha256,
                staged.size,
                v["size"]
            ),
        ));
    }
    Ok(())
}

/// The checkpoint's namespace must be the new pod's, unless `restore.allow_cross_namespace`.
pub fn check_namespace(
    staged: &stage::Staged,
    sandbox: &SandboxView,
    allow_cross_namespace: bool,
) -> Result<(), Status> {
    if allow_cross_namespace {
        return Ok(());
    }
    let from = staged.namespace();
    if from != sandbox.namespace {
        return Err(Status::new(
            Code::PermissionDenied,
            format!(
                "the checkpoint is of a container in namespace {from:?}; restoring it into namespace {:?} is not allowed (restore.allow_cross_namespace)",
                sandbox.namespace
            ),
        ));
    }
    Ok(())
}

/// The request must mount every path the checkpointed container had bind-mounted.
pub fn check_mounts(
    staged: &stage::Staged,
    request: &CreateContainerRequest,
) -> Result<(), Status> {
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
        return Err(Status::invalid_argument(format!(
            "the checkpointed container had bind mounts the request does not have: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The CRIU options the checkpoint was taken with, from its sidecar.
pub fn criu_options(archive: &Path) -> Vec<String> {
    std::fs::read(crate::checkpoint::sidecar::path_for(archive))
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["criu_options"].as_array().map(|a| {
                a.iter()
                    .filter_map(|o| o.as_str().map(str::to_owned))
                    .filter(|o| crate::config::CRIU_OPTIONS.contains(&o.as_str()))
                    .collect()
            })
        })
        .unwrap_or_default()
}
