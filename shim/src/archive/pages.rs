//! Random access to `pages-*.img` wherever it lies: inside an uncompressed tar (a window of
//! the archive file), as a plain file of an image directory, spooled to an unlinked
//! temporary file when the archive is compressed, or, when only argv and environ are
//! wanted from a compressed archive, just those byte ranges kept in memory. File reads are
//! positioned (`pread`), so several processes' memory can be read without re-opening.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::criu::memory::PageSource;

/// Captured ranges are given up (and the file spooled instead) above this many bytes.
pub const MAX_CAPTURED: u64 = 64 << 20;

#[derive(Clone, Debug)]
enum Store {
    /// `base` of `file` is the first byte of the pages file.
    File { file: Arc<File>, base: u64 },
    /// Only these `(offset, bytes)` ranges were kept, in order.
    Captured(Arc<Vec<(u64, Vec<u8>)>>),
}

/// One pages file.
#[derive(Clone, Debug)]
pub struct PagesFile {
    pub name: String,
    pub len: u64,
    store: Store,
}

impl PagesFile {
    /// `len` bytes at `base` of `file`.
    pub fn in_file(name: &str, file: Arc<File>, base: u64, len: u64) -> Self {
        PagesFile {
            name: name.to_owned(),
            len,
            store: Store::File { file, base },
        }
    }

    /// Reads the member's bytes from `data` (positioned at its start) and keeps only
    /// `ranges` (sorted, not overlapping) of them.
    pub fn capture(
        name: &str,
        len: u64,
        data: &mut dyn Read,
        ranges: &[(u64, u64)],
    ) -> io::Result<Self> {
        let mut pos = 0u64;
        let mut kept = Vec::with_capacity(ranges.len());
        for &(start, end) in ranges {
            if start < pos || end > len || start > end {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "bad capture range",
                ));
            }
            let skip = start - pos;
            if copy_big(&mut data.take(skip), &mut io::sink())? != skip {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut bytes = vec![0u8; (end - start) as usize];
            data.read_exact(&mut bytes)?;
            kept.push((start, bytes));
            pos = end;
        }
        Ok(PagesFile {
            name: name.to_owned(),
            len,
            store: Store::Captured(Arc::new(kept)),
        })
    }

    /// Whether only parts of the file were kept.
    pub fn is_partial(&self) -> bool {
        matches!(self.store, Store::Captured(_))
    }
}

impl PageSource for PagesFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(io::ErrorKind::InvalidInput)?;
        if end > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end ({})",
                    buf.len(),
                    self.len
                ),
            ));
        }
        match &self.store {
            Store::File { file, base } => file.read_exact_at(buf, base + offset),
            Store::Captured(chunks) => {
                let i = chunks.partition_point(|(start, _)| *start <= offset);
                let hit =
                    i.checked_sub(1)
                        .and_then(|i| chunks.get(i))
                        .and_then(|(start, bytes)| {
                            let from = (offset - start) as usize;
                            bytes.get(from..from.checked_add(buf.len())?)
                        });
                match hit {
                    Some(src) => {
                        buf.copy_from_slice(src);
                        Ok(())
                    }
                    None => Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "bytes not kept from the compressed archive (only argv and environ were)",
                    )),
                }
            }
        }
    }
}

/// `io::copy` with a 1 MiB buffer instead of 8 KiB: fewer calls through the tar entry,
/// the decompressor and the byte counter per GiB skipped or spooled.
pub fn copy_big(r: &mut dyn Read, w: &mut dyn io::Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// An unlinked temporary file in `$TMPDIR` (gone when closed).
pub fn spool_file() -> io::Result<File> {
    let dir = std::env::temp_dir();
    for n in 0..100u32 {
        let path = dir.join(format!("ckpt-shim-pages-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free temporary file name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_ranges_serve_reads_inside_them_only() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let p = PagesFile::capture(
            "pages-1.img",
            10_000,
            &mut &data[..],
            &[(100, 200), (5000, 5100)],
        )
        .unwrap();
        let mut buf = [0u8; 50];
        p.read_exact_at(120, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[120..170]);
        p.read_exact_at(5050, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[5050..5100]);
        assert!(p.read_exact_at(180, &mut buf).is_err());
        assert!(p.read_exact_at(0, &mut buf).is_err());
        assert!(p.read_exact_at(9990, &mut buf).is_err());
        assert!(PagesFile::capture("p", 10, &mut &data[..5], &[(0, 8)]).is_err());
    }
}
