//! `<archive>.json`: what was checkpointed, by whom and how, with the archive's digest, so
//! an archive can be checked and traced without opening it. The key names are read by the
//! restore (`sha256`, `size`, `criu_options`), the audit, `ckpt-shim inspect` and people's
//! scripts: they do not change.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who made the checkpoint (`engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The runtime's CRI made the archive.
    Native,
    /// The shim ran CRIU through containerd's API.
    Emulated,
    /// A sidecar without (or with an unknown) engine; never written.
    #[default]
    #[serde(other)]
    Unknown,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Native => "native",
            Engine::Emulated => "emulated",
            Engine::Unknown => "unknown",
        }
    }
}

/// Sidecars larger than this are not sidecars.
pub const MAX_BYTES: u64 = 1 << 20;

/// The sidecar, in the order its keys are written. Keys missing on read (an older shim's
/// sidecar) read as empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sidecar {
    pub archive: String,
    pub container: String,
    pub container_id: String,
    pub pod: String,
    pub namespace: String,
    pub image: String,
    pub image_ref: String,
    pub runtime: String,
    pub runtime_version: String,
    pub engine: Engine,
    pub criu_version: Option<String>,
    pub criu_options: Vec<String>,
    /// RFC 3339.
    pub started: String,
    /// RFC 3339.
    pub finished: String,
    /// Hex SHA-256 of the archive file.
    pub sha256: String,
    pub size: u64,
    pub shim_version: String,
}

/// Why a sidecar could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Includes `NotFound`: the archive has no sidecar.
    Io(io::Error),
    /// Not a sidecar (not JSON, or keys of the wrong type).
    Format(serde_json::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::Format(e) => write!(f, "not valid JSON: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// The sidecar's path: the archive's with `.json` appended.
pub fn path_for(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

impl Sidecar {
    /// Reads the sidecar of `archive`.
    pub fn read(archive: &Path) -> Result<Sidecar, ReadError> {
        let bytes = std::fs::read(path_for(archive)).map_err(ReadError::Io)?;
        serde_json::from_slice(&bytes).map_err(ReadError::Format)
    }

    /// Writes the sidecar next to `archive`, crash-safe, mode 0600; returns its path.
    pub fn write(&self, archive: &Path) -> io::Result<PathBuf> {
        let path = path_for(archive);
        let mut text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        text.push(b'\n');
        crate::atomic::write(&path, &text, 0o600)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("ckpt-format-sidecar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.tar");
        let s = Sidecar {
            archive: archive.display().to_string(),
            engine: Engine::Emulated,
            criu_options: vec!["tcp-established".into()],
            sha256: "ab".into(),
            size: 3,
            shim_version: "0.1.0".into(),
            ..Default::default()
        };
        let path = s.write(&archive).unwrap();
        assert_eq!(path, dir.join("a.tar.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let keys: Vec<String> = text
            .lines()
            .filter_map(|l| Some(l.trim().strip_prefix('"')?.split('"').next()?.to_owned()))
            .filter(|k| !k.is_empty() && k != "tcp-established")
            .collect();
        assert_eq!(
            keys,
            [
                "archive",
                "container",
                "container_id",
                "pod",
                "namespace",
                "image",
                "image_ref",
                "runtime",
                "runtime_version",
                "engine",
                "criu_version",
                "criu_options",
                "started",
                "finished",
                "sha256",
                "size",
                "shim_version"
            ]
        );
        assert!(text.contains("\"criu_version\": null"));
        assert_eq!(Sidecar::read(&archive).unwrap(), s);
        assert!(Sidecar::read(&dir.join("none.tar"))
            .unwrap_err()
            .is_missing());
        std::fs::write(path_for(&dir.join("bad.tar")), b"{").unwrap();
        assert!(!Sidecar::read(&dir.join("bad.tar"))
            .unwrap_err()
            .is_missing());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
