//! Crafted checkpoint archives: a real one with one thing made wrong.

use std::io::Read;
use std::path::Path;

/// Every member of a plain tar, in order.
pub fn members(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// A header with any name bytes (the tar crate refuses '..' and absolute names, which is
/// exactly what these archives need).
fn header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

pub enum Extra<'a> {
    /// A member with this raw name and content.
    File(&'a [u8], &'a [u8]),
    /// A top-level symlink member.
    Symlink(&'a [u8], &'a [u8]),
    /// A member whose header declares more bytes than follow (the archive ends).
    Huge(&'a [u8], u64),
}

/// Changes a member's content, or drops it (None).
pub type Edit<'a> = dyn Fn(&str, &[u8]) -> Option<Vec<u8>> + 'a;

/// Writes `members` (after `edit`) plus `extra` as a plain tar.
pub fn write(
    out: &Path,
    members: &[(String, Vec<u8>)],
    edit: impl Fn(&str, &[u8]) -> Option<Vec<u8>>,
    extra: &[Extra<'_>],
) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (name, data) in members {
        let Some(data) = edit(name, data) else {
            continue;
        };
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    for e in extra {
        match e {
            Extra::File(name, data) => {
                let h = header(name, tar::EntryType::Regular, data.len() as u64, b"");
                b.append(&h, *data).unwrap();
            }
            Extra::Symlink(name, target) => {
                let h = header(name, tar::EntryType::Symlink, 0, target);
                b.append(&h, &[][..]).unwrap();
            }
            Extra::Huge(name, size) => {
                let h = header(name, tar::EntryType::Regular, *size, b"");
                b.get_mut().write_all_raw(h.as_bytes());
                b.get_mut().write_all_raw(&[0u8; 4096]);
                // The archive just ends: no end-of-archive blocks either.
                std::mem::forget(b);
                return;
            }
        }
    }
    b.finish().unwrap();
}

trait Raw {
    fn write_all_raw(&mut self, bytes: &[u8]);
}

impl Raw for std::fs::File {
    fn write_all_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.write_all(bytes).unwrap();
    }
}

/// A rootfs-diff.tar holding the given raw entries.
/// One rootfs-diff entry: raw name, type, link target, device numbers.
pub type DiffEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], (u32, u32));

pub fn rootfs_diff(entries: &[DiffEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, (major, minor)) in entries {
        let mut h = header(name, *kind, 0, link);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(*major).unwrap();
            h.set_device_minor(*minor).unwrap();
            h.set_cksum();
        }
        b.append(&h, &[][..]).unwrap();
    }
    b.into_inner().unwrap()
}
