//! Random access to `pages-*.img` wherever it lies: inside an uncompressed tar (a window of
//! the archive file), as a plain file of an image directory, or spooled to an unlinked
//! temporary file when the archive is compressed. All reads are positioned (`pread`), so
//! several processes' memory can be read without re-opening anything.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::criu::memory::PageSource;

/// One pages file: `len` bytes at `base` of `file`.
#[derive(Clone, Debug)]
pub struct PagesFile {
    pub name: String,
    pub file: Arc<File>,
    pub base: u64,
    pub len: u64,
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
        self.file.read_exact_at(buf, self.base + offset)
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
