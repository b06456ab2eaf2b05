//! The container's filesystem changes: `rootfs-diff.tar` (plain tar from CRI-O, a gzip
//! layer with `.wh.` whiteouts from containerd) plus CRI-O's `deleted.files`.

use std::io::{self, BufRead, BufReader, Read};

use serde::Serialize;

use super::members;

/// Entries listed at most, so a hostile diff cannot grow memory without bound.
pub const MAX_ENTRIES: usize = 200_000;

/// One changed path.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: String,
    /// file | dir | symlink | hardlink | other | deleted | opaque-dir
    pub kind: String,
    pub size: u64,
}

/// Lists a rootfs diff (gzip or plain tar) read from `r`. Names are reported, never used
/// as paths, but a tar-slip name is still flagged in its kind.
pub fn list(r: impl Read) -> io::Result<(Vec<Change>, bool)> {
    let mut r = BufReader::new(r);
    let gzip = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    };
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    let mut truncated = false;
    for entry in archive.entries()? {
        let entry = entry?;
        if out.len() >= MAX_ENTRIES {
            truncated = true;
            break;
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let (path, unsafe_name) = match members::normalise(&raw) {
            Ok(p) => (p, false),
            Err(_) => (raw.clone(), true),
        };
        let base = path.rsplit('/').next().unwrap_or(&path);
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let join = |name: &str| {
            if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            }
        };
        let (path, kind) = if base == ".wh..wh..opq" {
            (dir.to_owned(), "opaque-dir")
        } else if let Some(gone) = base.strip_prefix(".wh.") {
            (join(gone), "deleted")
        } else {
            let t = entry.header().entry_type();
            let kind = if t.is_file() {
                "file"
            } else if t.is_dir() {
                "dir"
            } else if t.is_symlink() {
                "symlink"
            } else if t.is_hard_link() {
                "hardlink"
            } else {
                "other"
            };
            (path, kind)
        };
        let kind = if unsafe_name {
            format!("{kind} (unsafe name)")
        } else {
            kind.to_owned()
        };
        out.push(Change {
            path: format!("/{path}"),
            kind,
            size: entry.size(),
        });
    }
    Ok((out, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            let n = name.as_bytes();
            h.as_gnu_mut().unwrap().name[..n.len()].copy_from_slice(n);
            h.set_size(data.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_opaque_dirs_and_unsafe_names() {
        let t = tar(&[
            ("etc/new.conf", b"x"),
            ("usr/bin/.wh.wget", b""),
            ("var/cache/.wh..wh..opq", b""),
            ("../../escape", b"boom"),
        ]);
        let (changes, truncated) = list(&t[..]).unwrap();
        assert!(!truncated);
        let got: Vec<(String, String)> = changes.into_iter().map(|c| (c.path, c.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("/etc/new.conf".to_string(), "file".to_string()),
                ("/usr/bin/wget".to_string(), "deleted".to_string()),
                ("/var/cache".to_string(), "opaque-dir".to_string()),
                (
                    "/../../escape".to_string(),
                    "file (unsafe name)".to_string()
                ),
            ]
        );
    }
}
