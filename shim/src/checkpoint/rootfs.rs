//! The container's writable-layer changes: the overlay upper directory as a plain tar
//! (`rootfs-diff.tar`) and the files it deleted from the image (`deleted.files`, a JSON list
//! of absolute paths), the form CRI-O and checkpointctl use.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufWriter};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What the diff found besides the files it stored.
#[derive(Debug, Default)]
pub struct Diff {
    /// Paths deleted from lower layers (overlay whiteouts), absolute inside the container.
    pub deleted: Vec<String>,
    /// Directories made opaque (their lower content hidden); kept as directories only.
    pub opaque: Vec<String>,
}

/// The upper directory of an overlay mount's options, if it is one.
pub fn upperdir(mount_type: &str, options: &[String]) -> Option<PathBuf> {
    if mount_type != "overlay" {
        return None;
    }
    options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(PathBuf::from)
}

/// Writes the changes under `upper` to `out` as a plain tar.
pub fn write_diff(upper: &Path, out: &Path) -> io::Result<Diff> {
    let file = File::create(out)?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.follow_symlinks(false);
    let mut diff = Diff::default();
    walk(upper, Path::new(""), &mut tar, &mut diff)?;
    tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    diff.deleted.sort();
    Ok(diff)
}

fn walk(
    root: &Path,
    rel: &Path,
    tar: &mut tar::Builder<BufWriter<File>>,
    diff: &mut Diff,
) -> io::Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = rel.join(entry.file_name());
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs whiteout: the file was deleted from a lower layer.
            diff.deleted.push(format!("/{}", name.display()));
            continue;
        }
        if ft.is_socket() {
            continue; // a tar cannot hold one; runtimes recreate them
        }
        if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            append_special(tar, &meta, &name)?;
            continue;
        }
        tar.append_path_with_name(&path, &name)?;
        if ft.is_dir() {
            if is_opaque(&path) {
                diff.opaque.push(format!("/{}", name.display()));
            }
            walk(root, &name, tar, diff)?;
        }
    }
    Ok(())
}

/// FIFOs and device nodes as header-only entries (the tar crate's own path for them fails
/// on a FIFO: it leaves the entry's path unset).
fn append_special(
    tar: &mut tar::Builder<BufWriter<File>>,
    meta: &std::fs::Metadata,
    name: &Path,
) -> io::Result<()> {
    let ft = meta.file_type();
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    header.set_size(0);
    header.set_entry_type(if ft.is_fifo() {
        tar::EntryType::Fifo
    } else if ft.is_char_device() {
        tar::EntryType::Char
    } else {
        tar::EntryType::Block
    });
    if !ft.is_fifo() {
        let rdev = meta.rdev();
        header.set_device_major(libc::major(rdev))?;
        header.set_device_minor(libc::minor(rdev))?;
    }
    tar.append_data(&mut header, name, io::empty())
}

// nix 0.30 has no xattr calls: lgetxattr is the one libc call left in this file.
#[allow(unsafe_code)]
fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|attr| {
            let attr = CString::new(*attr).expect("no NUL");
            let mut value = [0u8; 4];
            // SAFETY: both strings are NUL-terminated and the buffer's length is passed.
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    attr.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            n == 1 && value[0] == b'y'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_become_deleted_files() {
        let dir = std::env::temp_dir().join(format!("ckpt-rootfs-{}", std::process::id()));
        let upper = dir.join("upper");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/new"), b"x").unwrap();
        std::os::unix::fs::symlink("new", upper.join("etc/link")).unwrap();
        // A 0/0 character device is overlayfs's whiteout (only root may make one).
        let made = nix::sys::stat::mknod(
            &upper.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .is_ok();
        let out = dir.join("diff.tar");
        let diff = write_diff(&upper, &out).unwrap();
        let mut names: Vec<String> = tar::Archive::new(File::open(&out).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["etc", "etc/link", "etc/new"]);
        if made {
            assert_eq!(diff.deleted, ["/etc/gone"]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            upperdir("overlay", &["lowerdir=/a".into(), "upperdir=/u".into()]),
            Some(PathBuf::from("/u"))
        );
    }

    #[test]
    fn special_files_and_absolute_links_are_kept() {
        let dir = std::env::temp_dir().join(format!("ckpt-rootfs-special-{}", std::process::id()));
        let upper = dir.join("upper");
        std::fs::create_dir_all(upper.join("tmp")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", upper.join("tmp/abs")).unwrap();
        nix::unistd::mkfifo(
            &upper.join("tmp/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let out = dir.join("diff.tar");
        write_diff(&upper, &out).unwrap();
        let mut names: Vec<String> = tar::Archive::new(File::open(&out).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["tmp", "tmp/abs", "tmp/fifo"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
