//! The sidecar `<archive>.json` of a checkpoint the shim made: filled in from the target
//! here, the format itself (keys, typed read, crash-safe write) in `ckpt_format::sidecar`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use ckpt_format::sidecar::{path_for, Sidecar};

use super::archive_writer::Written;
use super::Target;
use ckpt_format::time::rfc3339;

#[allow(clippy::too_many_arguments)]
pub fn describe(
    target: &Target,
    archive: &Path,
    runtime: (String, String),
    engine: super::Engine,
    criu_version: Option<String>,
    criu_options: Vec<String>,
    started: SystemTime,
    written: &Written,
) -> Sidecar {
    Sidecar {
        archive: archive.display().to_string(),
        container: target.name.clone(),
        container_id: target.id.clone(),
        pod: target.pod.clone(),
        namespace: target.namespace.clone(),
        image: target.image.clone(),
        image_ref: target.image_ref.clone(),
        runtime: runtime.0,
        runtime_version: runtime.1,
        engine,
        criu_version,
        criu_options,
        started: rfc3339(started),
        finished: rfc3339(SystemTime::now()),
        sha256: written.sha256.clone(),
        size: written.size,
        shim_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Writes the sidecar next to `archive`, atomically, mode 0600.
pub fn write(archive: &Path, sidecar: &Sidecar) -> std::io::Result<PathBuf> {
    sidecar.write(archive)
}
