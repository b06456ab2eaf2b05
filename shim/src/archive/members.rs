//! Names of checkpoint archive members (FACTS 5) and what each one is for.

use std::fmt;

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
        "config.dump" => return Role::Config,
        "spec.dump" => return Role::Spec,
        "status.dump" => return Role::Status,
        "deleted.files" => return Role::DeletedFiles,
        "dump.log" => return Role::DumpLog,
        "rootfs-diff.tar" => return Role::RootfsDiff,
        "stats-dump" => return Role::Image("stats-dump".into()),
        _ => {}
    }
    let base = name.strip_prefix("checkpoint/").unwrap_or(name);
    if base.contains('/') {
        return Role::Other;
    }
    if base == "dump.log" {
        Role::DumpLog
    } else if base.starts_with("pages-") && base.ends_with(".img") {
        Role::Pages(base.to_owned())
    } else if crate::criu::ImageSet::wants(base) {
        Role::Image(base.to_owned())
    } else {
        Role::Other
    }
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
    }
}
