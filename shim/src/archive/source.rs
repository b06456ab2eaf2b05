//! Opening a checkpoint: what kind of input it is, and a byte counter that drives the
//! progress bar.

use std::io::{self, BufRead, IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Archives above this size get a progress bar when stderr is a terminal.
pub const PROGRESS_THRESHOLD: u64 = 100 << 20;

pub use ckpt_format::compression::{sniff, Compression};

/// A progress bar for reading `len` bytes of `path`, hidden for small inputs or when stderr
/// is not a terminal.
pub fn progress(path: &Path, len: u64, wanted: bool) -> ProgressBar {
    if !wanted || len < PROGRESS_THRESHOLD || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}

/// Follows the position in the archive file for the progress bar, and counts the bytes
/// really read (what seeking saves shows in `read`).
pub struct Counting<R> {
    pub inner: R,
    pub bar: ProgressBar,
    pub pos: u64,
    pub read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        self.bar.set_position(self.pos);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        self.bar.set_position(self.pos);
        Ok(self.pos)
    }
}

/// A zstd stream of one or more concatenated frames (compressors may cut big inputs into
/// several; a single-frame decoder would stop after the first).
pub struct ZstdFrames<R: BufRead> {
    current: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

fn zstd_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> ZstdFrames<R> {
    pub fn new(r: R) -> io::Result<Self> {
        let first = ruzstd::decoding::StreamingDecoder::new(r).map_err(zstd_error)?;
        Ok(ZstdFrames {
            current: Some(first),
        })
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(dec) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done: start the next one if more bytes follow.
            let Some(done) = self.current.take() else {
                return Ok(0);
            };
            let mut inner = done.into_inner();
            if inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.current =
                Some(ruzstd::decoding::StreamingDecoder::new(inner).map_err(zstd_error)?);
        }
    }
}
