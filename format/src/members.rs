//! The members of a checkpoint archive (FACTS 5), by name, and what each one is for. Every
//! engine (the shim, containerd 2.x, CRI-O, Podman) uses these names; checkpointctl and the
//! engines' restores find the members by them.

use std::fmt;

/// The engine's container config (JSON, [`crate::config_dump`]).
pub const CONFIG_DUMP: &str = "config.dump";
/// The OCI runtime spec (JSON, [`crate::spec_dump`]).
pub const SPEC_DUMP: &str = "spec.dump";
/// CRI ContainerStatus (JSON, containerd 2.1+).
pub const STATUS_DUMP: &str = "status.dump";
/// The directory of CRIU's images.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The container's changes to its image's filesystem (a tar, plain or gzip).
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
/// JSON list of paths removed from the image's filesystem (CRI-O, the shim).
pub const DELETED_FILES: &str = "deleted.files";
/// CRIU's log of the dump ([`crate::dump_log`]).
pub const DUMP_LOG: &str = "dump.log";
/// CRIU's statistics of the dump.
pub const STATS_DUMP: &str = "stats-dump";
/// The container's log at the time of the checkpoint.
pub const CONTAINER_LOG: &str = "container.log";
/// CRI-O: the container's bind mounts.
pub const BIND_MOUNTS: &str = "bind.mounts";
/// CRI-O / Podman: the pod's network status.
pub const NETWORK_STATUS: &str = "network.status";
/// A member marking an archive the shim wrote itself.
pub const SHIM_MARK: &str = "ckpt-shim.json";
/// CRIU's inventory image; every checkpoint has one.
pub const INVENTORY: &str = "checkpoint/inventory.img";

/// `checkpoint/<base>`: a CRIU image's member name.
pub fn image(base: &str) -> String {
    format!("{CHECKPOINT_DIR}/{base}")
}

/// What a member is, by its (normalised) name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// `config.dump`: the engine's container config (JSON).
    Config,
    /// `spec.dump`: the OCI runtime spec (JSON).
    Spec,
    /// `status.dump`: CRI ContainerStatus (JSON, containerd 2.1+).
    Status,
    /// `deleted.files`: JSON list of paths removed from the image's rootfs.
    DeletedFiles,
    /// `dump.log` (top level or in checkpoint/): CRIU's log.
    DumpLog,
    /// A CRIU metadata image (or `stats-dump`); the base name.
    Image(String),
    /// A CRIU `pages-*.img`; the base name.
    Pages(String),
    /// `rootfs-diff.tar`: the container's changes to its image's filesystem.
    RootfsDiff,
    /// Anything else (other CRIU images, bind.mounts, volumes/...).
    Other,
}

/// A member name that would escape the directory it is unpacked into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeName(pub String);

impl fmt::Display for UnsafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsafe member name {:?} (absolute or with '..')", self.0)
    }
}

impl std::error::Error for UnsafeName {}

/// Strips `./` and trailing `/`; refuses absolute names and `..` components (tar-slip).
pub fn normalise(raw: &str) -> Result<String, UnsafeName> {
    if raw.starts_with('/') || raw.split('/').any(|c| c == "..") {
        return Err(UnsafeName(raw.to_owned()));
    }
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    Ok(parts.join("/"))
}

/// The role of a normalised member name. CRIU images are found in `checkpoint/` (archives
/// of every engine) or at the top (a tar or directory of bare CRIU images).
pub fn role(name: &str) -> Role {
    match name {
        CONFIG_DUMP => return Role::Config,
        SPEC_DUMP => return Role::Spec,
        STATUS_DUMP => return Role::Status,
        DELETED_FILES => return Role::DeletedFiles,
        DUMP_LOG => return Role::DumpLog,
        ROOTFS_DIFF => return Role::RootfsDiff,
        STATS_DUMP => return Role::Image(STATS_DUMP.into()),
        _ => {}
    }
    let base = name
        .strip_prefix(CHECKPOINT_DIR)
        .and_then(|n| n.strip_prefix('/'))
        .unwrap_or(name);
    if base.contains('/') {
        return Role::Other;
    }
    if base == DUMP_LOG {
        Role::DumpLog
    } else if base.starts_with("pages-") && base.ends_with(".img") {
        Role::Pages(base.to_owned())
    } else if is_metadata_image(base) {
        Role::Image(base.to_owned())
    } else {
        Role::Other
    }
}

/// CRIU images named after what they hold alone (`inventory.img`).
const SINGLE_IMAGES: &[&str] = &[
    "inventory",
    "pstree",
    "files",
    "stats-dump",
    "stats-restore",
];
/// CRIU images of one kind per process or object (`core-<pid>.img`, `tcp-stream-<ino>.img`).
const PER_ID_IMAGES: &[&str] = &[
    "fdinfo",
    "pagemap",
    "core",
    "ids",
    "mm",
    "fs",
    "mountpoints",
];

/// Whether a CRIU image (base name) is one of the metadata images the shim's CRIU reader
/// decodes, and so worth loading into memory. The same list as the reader's table of magic
/// numbers (`ckpt_shim::criu::magic`); a test there keeps the two equal.
pub fn is_metadata_image(base: &str) -> bool {
    let base = base.rsplit('/').next().unwrap_or(base);
    let stem = base.strip_suffix(".img").unwrap_or(base);
    let kind = stem.split_once('-').map_or(stem, |(k, _)| k);
    SINGLE_IMAGES.contains(&stem)
        || PER_ID_IMAGES.contains(&kind)
        || (kind == "tcp" && stem.starts_with("tcp-stream-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_slip_names_are_refused() {
        assert!(normalise("../etc/passwd").is_err());
        assert!(normalise("checkpoint/../../x").is_err());
        assert!(normalise("/etc/shadow").is_err());
        assert_eq!(
            normalise("./checkpoint/pstree.img").unwrap(),
            "checkpoint/pstree.img"
        );
        assert_eq!(normalise("checkpoint/").unwrap(), "checkpoint");
    }

    #[test]
    fn roles() {
        assert_eq!(
            role("checkpoint/pages-1.img"),
            Role::Pages("pages-1.img".into())
        );
        assert_eq!(
            role("checkpoint/pstree.img"),
            Role::Image("pstree.img".into())
        );
        assert_eq!(role("pstree.img"), Role::Image("pstree.img".into()));
        assert_eq!(role("checkpoint/ghost-file-3.img"), Role::Other);
        assert_eq!(role("volumes/x/pstree.img"), Role::Other);
        assert_eq!(role("rootfs-diff.tar"), Role::RootfsDiff);
        assert_eq!(role(INVENTORY), Role::Image("inventory.img".into()));
        assert_eq!(image("core-1.img"), "checkpoint/core-1.img");
    }
}
