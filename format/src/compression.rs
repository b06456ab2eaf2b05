//! How an archive's (or a `rootfs-diff.tar`'s) bytes are stored, told by its first bytes.

use std::io::{self, Read, Seek, SeekFrom};

/// How the archive's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar: members are read in place by seeking.
    None,
    Gzip,
    Zstd,
    /// Not an archive: an unpacked checkpoint or a CRIU image directory.
    Directory,
}

/// Tells plain, gzip and zstd apart by their first bytes; leaves `file` at its start.
pub fn sniff<F: Read + Seek>(file: &mut F) -> io::Result<Compression> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(match &head[..got] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        let s = |b: &[u8]| sniff(&mut io::Cursor::new(b.to_vec())).unwrap();
        assert_eq!(s(&[0x1f, 0x8b, 8, 0, 1]), Compression::Gzip);
        assert_eq!(s(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(s(b"ustar"), Compression::None);
        assert_eq!(s(&[0x1f]), Compression::None);
    }
}
