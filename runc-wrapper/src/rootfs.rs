//! A checkpoint's filesystem changes, put back onto a fresh rootfs: `deleted.files` (CRI-O,
//! the shim) and `rootfs-diff.tar`, plain or as a gzip layer with `.wh.` whiteouts
//! (containerd). The same rules are checked twice: by the shim before anything is staged
//! (`check`), and by the wrapper while it writes (`apply`), which never follows a symlink
//! on the way to a path, so no entry can land outside the rootfs.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use ckpt_format::compression::{sniff, Compression};
use ckpt_format::members::{self, DELETED_FILES, ROOTFS_DIFF};

/// Char devices a container may carry in its own layer (null, zero, full, random, urandom,
/// tty), besides overlay's 0:0 whiteout.
const HARMLESS_DEVICES: &[(u32, u32)] = &[(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)];

/// Rootfs-diff entry prefixes that mark a whiteout in a layer.
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
}

/// Opens `rootfs-diff.tar`, plain or gzip.
fn open_diff(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = File::open(path)?;
    let gz = matches!(sniff(&mut f)?, Compression::Gzip);
    let r = BufReader::with_capacity(1 << 16, f);
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// What an entry is, once it passed the rules.
enum Kind {
    /// `.wh.NAME`: remove NAME.
    Whiteout(PathBuf),
    /// `.wh..wh..opq` in DIR: empty DIR.
    Opaque(PathBuf),
    /// A 0:0 char device: overlay's own whiteout of this path.
    DeviceWhiteout(PathBuf),
    Plain(PathBuf),
    HardLink {
        path: PathBuf,
        target: PathBuf,
    },
}

fn classify(entry: &tar::Entry<'_, impl Read>, max_entry: u64) -> Result<Kind, String> {
    let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let name = members::normalise(&raw).map_err(|e| format!("rootfs-diff.tar: {e}"))?;
    if name.is_empty() {
        return Ok(Kind::Plain(PathBuf::new()));
    }
    let path = PathBuf::from(&name);
    let header = entry.header();
    let size = entry.size();
    if size > max_entry {
        return Err(format!(
            "rootfs-diff.tar: {name:?} is {size} bytes, above the limit of {max_entry}"
        ));
    }
    let base = path
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if base == OPAQUE {
        return Ok(Kind::Opaque(parent));
    }
    if let Some(hidden) = base.strip_prefix(WHITEOUT) {
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(format!("rootfs-diff.tar: bad whiteout {name:?}"));
        }
        return Ok(Kind::Whiteout(parent.join(hidden)));
    }
    use tar::EntryType as T;
    match header.entry_type() {
        T::Regular | T::Continuous | T::Directory | T::Symlink | T::Fifo => Ok(Kind::Plain(path)),
        T::Link => {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let target = members::normalise(target.trim_start_matches('/'))
                .map_err(|_| format!("rootfs-diff.tar: hard link {name:?} points outside"))?;
            if target.is_empty() {
                return Err(format!("rootfs-diff.tar: hard link {name:?} has no target"));
            }
            Ok(Kind::HardLink {
                path,
                target: PathBuf::from(target),
            })
        }
        T::Char | T::Block => {
            let major = header.device_major().ok().flatten().unwrap_or(u32::MAX);
            let minor = header.device_minor().ok().flatten().unwrap_or(u32::MAX);
            let char = header.entry_type() == T::Char;
            if char && (major, minor) == (0, 0) {
                Ok(Kind::DeviceWhiteout(path))
            } else if char && HARMLESS_DEVICES.contains(&(major, minor)) {
                Ok(Kind::Plain(path))
            } else {
                Err(format!(
                    "rootfs-diff.tar: {name:?} is a {} device {major}:{minor}; a restore never creates device nodes",
                    if char { "char" } else { "block" }
                ))
            }
        }
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {
            Ok(Kind::Plain(PathBuf::new()))
        }
        other => Err(format!(
            "rootfs-diff.tar: {name:?} has an entry type ({other:?}) a restore does not create"
        )),
    }
}

/// Checks every entry of `diff` against the rules without writing anything.
pub fn check(diff: &Path, max_entry: u64) -> Result<Summary, String> {
    let mut archive =
        tar::Archive::new(open_diff(diff).map_err(|e| format!("rootfs-diff.tar: {e}"))?);
    let mut s = Summary::default();
    // Symlinks the diff itself creates: a later entry below one would be written through it.
    let mut links = std::collections::HashSet::new();
    for entry in archive
        .entries()
        .map_err(|e| format!("rootfs-diff.tar: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("rootfs-diff.tar: bad entry: {e}"))?;
        let kind = classify(&entry, max_entry)?;
        let path = match &kind {
            Kind::Whiteout(p) | Kind::Opaque(p) | Kind::DeviceWhiteout(p) | Kind::Plain(p) => p,
            Kind::HardLink { path, .. } => path,
        };
        if let Some(through) = path.ancestors().skip(1).find(|a| links.contains(*a)) {
            return Err(format!(
                "rootfs-diff.tar: {} would be written through the symlink {} it creates",
                path.display(),
                through.display()
            ));
        }
        if entry.header().entry_type() == tar::EntryType::Symlink {
            links.insert(path.clone());
        }
        if matches!(
            kind,
            Kind::Whiteout(_) | Kind::Opaque(_) | Kind::DeviceWhiteout(_)
        ) {
            s.whiteouts += 1;
        }
        s.entries += 1;
        // Read through the data so a truncated member is found here, not half-way in `apply`.
        s.bytes += io::copy(&mut entry, &mut io::sink())
            .map_err(|e| format!("rootfs-diff.tar: truncated entry: {e}"))?;
    }
    Ok(s)
}

/// Parses `deleted.files`: a JSON list of absolute paths inside the container.
pub fn deleted_files(bytes: &[u8]) -> Result<Vec<PathBuf>, String> {
    let list: Vec<String> = serde_json::from_slice(bytes)
        .map_err(|e| format!("deleted.files is not a JSON list of strings: {e}"))?;
    list.iter()
        .map(|p| {
            let rel = members::normalise(p.trim_start_matches('/'))
                .map_err(|_| format!("deleted.files: {p:?} points outside the rootfs"))?;
            if rel.is_empty() {
                return Err(format!("deleted.files: {p:?} names the root"));
            }
            Ok(PathBuf::from(rel))
        })
        .collect()
}

/// `rel` under `root`, refusing any existing ancestor that is not a real directory (a
/// symlink there could lead outside the rootfs).
fn inside(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut at = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let Component::Normal(part) = c else {
            return Err(io::Error::other(format!(
                "{} is not a plain relative path",
                rel.display()
            )));
        };
        at.push(part);
        if i + 1 == comps.len() {
            break;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{}: {} is not a directory (a symlink on the way is refused)",
                    rel.display(),
                    at.strip_prefix(root).unwrap_or(&at).display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&at)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies the staged changes in `staged` (deleted.files, rootfs-diff.tar) to `rootfs`.
pub fn apply(rootfs: &Path, staged: &Path, max_entry: u64) -> Result<Summary, String> {
    let mut s = Summary::default();
    let deleted = staged.join(DELETED_FILES);
    if deleted.exists() {
        let bytes = std::fs::read(&deleted).map_err(|e| format!("deleted.files: {e}"))?;
        for rel in deleted_files(&bytes)? {
            let path = inside(rootfs, &rel).map_err(|e| format!("deleted.files: {e}"))?;
            remove_any(&path)
                .map_err(|e| format!("deleted.files: removing {}: {e}", rel.display()))?;
            s.whiteouts += 1;
        }
    }
    let diff = staged.join(ROOTFS_DIFF);
    if !diff.exists() {
        return Ok(s);
    }
    let mut archive =
        tar::Archive::new(open_diff(&diff).map_err(|e| format!("rootfs-diff.tar: {e}"))?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    let err = |what: &Path, e: io::Error| format!("rootfs-diff.tar: {}: {e}", what.display());
    for entry in archive
        .entries()
        .map_err(|e| format!("rootfs-diff.tar: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("rootfs-diff.tar: bad entry: {e}"))?;
        s.entries += 1;
        match classify(&entry, max_entry)? {
            Kind::Plain(rel) if rel.as_os_str().is_empty() => {}
            Kind::Whiteout(rel) | Kind::DeviceWhiteout(rel) => {
                let path = inside(rootfs, &rel).map_err(|e| err(&rel, e))?;
                remove_any(&path).map_err(|e| err(&rel, e))?;
                s.whiteouts += 1;
            }
            Kind::Opaque(dir) => {
                let path = if dir.as_os_str().is_empty() {
                    rootfs.to_path_buf()
                } else {
                    inside(rootfs, &dir).map_err(|e| err(&dir, e))?
                };
                if let Ok(children) = std::fs::read_dir(&path) {
                    for c in children.flatten() {
                        remove_any(&c.path()).map_err(|e| err(&dir, e))?;
                    }
                }
                s.whiteouts += 1;
            }
            Kind::HardLink { path: rel, target } => {
                let path = inside(rootfs, &rel).map_err(|e| err(&rel, e))?;
                let source = inside(rootfs, &target).map_err(|e| err(&target, e))?;
                let m = std::fs::symlink_metadata(&source).map_err(|e| err(&target, e))?;
                if !m.is_file() {
                    return Err(format!(
                        "rootfs-diff.tar: hard link {} to {}, which is not a regular file",
                        rel.display(),
                        target.display()
                    ));
                }
                remove_any(&path).map_err(|e| err(&rel, e))?;
                std::fs::hard_link(&source, &path).map_err(|e| err(&rel, e))?;
            }
            Kind::Plain(rel) => {
                let path = inside(rootfs, &rel).map_err(|e| err(&rel, e))?;
                let is_dir = entry.header().entry_type().is_dir();
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() && is_dir => {}
                    Ok(_) => remove_any(&path).map_err(|e| err(&rel, e))?,
                    Err(_) => {}
                }
                s.bytes += entry.size();
                entry.unpack(&path).map_err(|e| err(&rel, e))?;
            }
        }
    }
    Ok(s)
}
