//! `<archive>.json`: what was checkpointed, by whom and how, with the archive's digest, so
//! an archive can be checked and traced without opening it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use super::archive_writer::{sync_dir, temp_path, Written};
use super::Target;
use crate::timefmt::rfc3339;

#[derive(Serialize)]
pub struct Sidecar<'a> {
    pub archive: String,
    pub container: &'a str,
    pub container_id: &'a str,
    pub pod: &'a str,
    pub namespace: &'a str,
    pub image: &'a str,
    pub image_ref: &'a str,
    pub runtime: String,
    pub runtime_version: String,
    /// "emulated" (the shim ran CRIU through containerd's API) or "native" (the runtime's CRI).
    pub engine: &'static str,
    pub criu_version: Option<String>,
    pub criu_options: Vec<String>,
    pub started: String,
    pub finished: String,
    pub sha256: String,
    pub size: u64,
    pub shim_version: &'static str,
}

pub fn path_for(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

#[allow(clippy::too_many_arguments)]
pub fn describe<'a>(
    target: &'a Target,
    archive: &Path,
    runtime: (String, String),
    engine: &'static str,
    criu_version: Option<String>,
    criu_options: Vec<String>,
    started: SystemTime,
    written: &Written,
) -> Sidecar<'a> {
    Sidecar {
        archive: archive.display().to_string(),
        container: &target.name,
        container_id: &target.id,
        pod: &target.pod,
        namespace: &target.namespace,
        image: &target.image,
        image_ref: &target.image_ref,
        runtime: runtime.0,
        runtime_version: runtime.1,
        engine,
        criu_version,
        criu_options,
        started: rfc3339(started),
        finished: rfc3339(SystemTime::now()),
        sha256: written.sha256.clone(),
        size: written.size,
        shim_version: env!("CARGO_PKG_VERSION"),
    }
}

/// Writes the sidecar next to `archive`, atomically, mode 0600.
pub fn write(archive: &Path, sidecar: &Sidecar<'_>) -> std::io::Result<PathBuf> {
    let path = path_for(archive);
    let temp = temp_path(&path);
    let mut text = serde_json::to_vec_pretty(sidecar).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_dir(&path);
    Ok(path)
}

/// CRIU's version from the first lines of its log ("Version: 4.2 (gitid ...)").
/// CRIU's version from the `dump.log` member of an archive read as a stream. Stops at the
/// end of the tar (or at a bad header); the caller drains what is left.
pub fn criu_version_in_tar(r: &mut impl std::io::Read) -> Option<String> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(r);
    let mut version = None;
    for mut entry in archive.entries().ok()?.flatten() {
        if entry.path().ok().as_deref() == Some(Path::new("dump.log")) {
            let mut head = vec![0u8; 4096];
            let n = entry.read(&mut head).unwrap_or(0);
            version = criu_version_from_log(&String::from_utf8_lossy(&head[..n]));
        }
    }
    version
}

pub fn criu_version_from_log(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let v = l.split("Version: ").nth(1)?;
        Some(v.split_whitespace().next()?.to_owned())
    })
}
