//! Writes a checkpoint archive the only safe way: a temporary file beside the final name,
//! mode 0600 from the start (it holds every memory page of the container), streamed through
//! a SHA-256 hasher so the digest costs no second read, fsynced, renamed into place, and the
//! directory fsynced. Until `finish` the final name never exists; dropping the writer removes
//! the temporary file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use ckpt_format::atomic::{sync_dir, temp_path};

/// Why writing stopped, when it was not the file system's fault.
#[derive(Debug, thiserror::Error)]
pub enum Abort {
    #[error("the archive would be larger than the configured maximum of {0} bytes")]
    TooLarge(u64),
    #[error("the checkpoint's timeout passed while the archive was being written")]
    Deadline,
}

/// The finished archive.
#[derive(Debug, Clone)]
pub struct Written {
    pub sha256: String,
    pub size: u64,
}

/// Counts, hashes and checks every byte on its way to the file.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
    limit: Option<u64>,
    deadline: Option<Instant>,
    next_deadline_check: u64,
}

/// Files at least this big are hashed on a second thread (`HashThread`).
const HASH_APART_MIN: u64 = 1 << 20;

/// Bytes go to a `HashThread` in chunks of this size; this many wait for it at most.
pub const CHUNK: usize = 1 << 20;
const QUEUED: usize = 8;

/// What else looks at every chunk on the hashing thread (the capture finds CRIU's version).
pub trait Seen: Send + 'static {
    fn seen(&mut self, chunk: &[u8]);
}

impl Seen for () {
    fn seen(&mut self, _: &[u8]) {}
}

/// Hashes on a thread of its own the chunks handed to it, in order, while the caller reads
/// and writes them: hashing, the slowest part, then does nothing else. Chunk buffers go back
/// and forth, so memory stays at `QUEUED` chunks whatever the size.
pub struct HashThread<S> {
    to_hash: Option<std::sync::mpsc::SyncSender<(Vec<u8>, usize)>>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: std::thread::JoinHandle<(Sha256, S)>,
}

impl<S: Seen> HashThread<S> {
    /// Continues `hasher`; `finish` gives it back.
    pub fn start(mut hasher: Sha256, mut seen: S) -> io::Result<Self> {
        let (to_hash, chunks) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(QUEUED);
        let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
        let thread = std::thread::Builder::new()
            .name("archive-hash".into())
            .spawn(move || {
                for (chunk, n) in chunks {
                    hasher.update(&chunk[..n]);
                    seen.seen(&chunk[..n]);
                    let _ = recycle.send(chunk);
                }
                (hasher, seen)
            })?;
        Ok(HashThread {
            to_hash: Some(to_hash),
            recycled,
            thread,
        })
    }

    /// A buffer of `CHUNK` bytes: one the thread is done with, or a new one.
    pub fn buffer(&self) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }

    /// Hands over the first `n` bytes of `chunk`; waits while `QUEUED` chunks are waiting.
    pub fn send(&mut self, chunk: Vec<u8>, n: usize) -> io::Result<()> {
        let sent = self.to_hash.as_ref().map(|tx| tx.send((chunk, n)));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(io::Error::other("the hashing thread stopped")),
        }
    }

    /// No more chunks: the thread ends once it has hashed those it has.
    pub fn finish(mut self) -> io::Result<(Sha256, S)> {
        self.to_hash = None;
        self.thread
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))
    }
}

impl<W> Hashing<W> {
    /// The size limit and the deadline, for `more` bytes about to be added.
    fn check(&mut self, more: u64) -> io::Result<()> {
        if let Some(limit) = self.limit {
            if self.size + more > limit {
                return Err(io::Error::other(Abort::TooLarge(limit)));
            }
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(io::Error::other(Abort::Deadline));
        }
        Ok(())
    }
}

/// Dirty pages are sent to the disk every this many bytes.
const WRITEBACK_STEP: u64 = 8 << 20;

/// A file whose dirty pages are sent to the disk as they accumulate (`sync_file_range`,
/// which only starts the writes): the disk works while the archive is still being written,
/// and the fsync at the end waits for the last few MiB instead of the whole archive.
pub struct Writeback {
    file: File,
    written: u64,
    started: u64,
}

impl Writeback {
    pub fn new(file: File) -> Self {
        Writeback {
            file,
            written: 0,
            started: 0,
        }
    }

    /// `n` more bytes were written at the end of the file.
    // nix 0.30 has no sync_file_range: the one libc call left in this file.
    #[allow(unsafe_code)]
    fn advanced(&mut self, n: u64) {
        use std::os::fd::AsRawFd;
        self.written += n;
        let pending = self.written - self.started;
        if pending >= WRITEBACK_STEP {
            // SAFETY: a range of a descriptor this value owns. A failure only means the
            // final fsync does all the work.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.started as i64,
                    pending as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            self.started = self.written;
        }
    }

    pub fn into_inner(self) -> File {
        self.file
    }
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.advanced(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.limit {
            if self.size + buf.len() as u64 > limit {
                return Err(io::Error::other(Abort::TooLarge(limit)));
            }
        }
        if self.size >= self.next_deadline_check {
            // Checking the clock every 4 MiB costs nothing measurable.
            self.next_deadline_check = self.size + (4 << 20);
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::Error::other(Abort::Deadline));
            }
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub struct ArchiveWriter {
    temp: PathBuf,
    location: PathBuf,
    tar: Option<tar::Builder<Hashing<BufWriter<Writeback>>>>,
    mtime: u64,
}

impl ArchiveWriter {
    pub fn create(
        location: &Path,
        limit: Option<u64>,
        deadline: Option<Instant>,
    ) -> io::Result<Self> {
        let temp = temp_path(location);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        let hashing = Hashing {
            inner: BufWriter::with_capacity(1 << 20, Writeback::new(file)),
            hasher: Sha256::new(),
            size: 0,
            limit,
            deadline,
            next_deadline_check: 0,
        };
        let mut tar = tar::Builder::new(hashing);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(ArchiveWriter {
            temp,
            location: location.to_path_buf(),
            tar: Some(tar),
            mtime: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        })
    }

    fn header(&self, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn builder(&mut self) -> &mut tar::Builder<Hashing<BufWriter<Writeback>>> {
        self.tar.as_mut().expect("the builder lives until finish")
    }

    pub fn add_bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Regular, data.len() as u64, 0o600);
        self.builder().append_data(&mut h, name, data)
    }

    pub fn add_dir(&mut self, name: &str) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, 0, 0o700);
        self.builder().append_data(&mut h, name, io::empty())
    }

    /// Streams a file in. Its size is taken once: a file that grows meanwhile (a container
    /// log) is cut there, one that shrinks is padded with zeros, so the header never lies.
    pub fn add_file(&mut self, name: &str, path: &Path) -> io::Result<()> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut h = self.header(tar::EntryType::Regular, size, 0o600);
        let reader = Exact {
            inner: file.take(size),
            remaining: size,
        };
        self.builder().append_data(&mut h, name, reader)
    }

    /// Streams in a file that no longer changes (a CRIU image). Big ones are read and written
    /// here while a second thread hashes the same chunks in order, so hashing, the slowest
    /// part, never waits for the reads and writes nor they for it.
    pub fn add_image(&mut self, name: &str, path: &Path) -> io::Result<()> {
        let size = std::fs::metadata(path)?.len();
        if size < HASH_APART_MIN {
            return self.add_file(name, path);
        }
        let mut h = self.header(tar::EntryType::Regular, size, 0o600);
        h.set_path(name)?;
        h.set_cksum();
        let hashing = self.builder().get_mut();
        hashing.write_all(h.as_bytes())?;
        hashing.check(size)?;
        hashing.inner.flush()?;
        let mut source = File::open(path)?;
        let mut hash = HashThread::start(std::mem::take(&mut hashing.hasher), ())?;
        let (out, deadline) = (hashing.inner.get_mut(), hashing.deadline);
        let copied = (|| {
            let mut done = 0u64;
            while done < size {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(io::Error::other(Abort::Deadline));
                }
                let mut chunk = hash.buffer();
                let want = CHUNK.min((size - done) as usize);
                let n = source.read(&mut chunk[..want])?;
                if n == 0 {
                    break;
                }
                out.write_all(&chunk[..n])?;
                done += n as u64;
                hash.send(chunk, n)?;
            }
            Ok(done)
        })();
        let (hasher, ()) = hash.finish()?;
        hashing.hasher = hasher;
        let copied = copied?;
        hashing.size += copied;
        // A file that shrank is padded with zeros, as add_file does; then the tar padding.
        let pad = (size - copied) as usize + ((512 - size % 512) % 512) as usize;
        hashing.write_all(&vec![0u8; pad])?;
        Ok(())
    }

    /// Ends the tar stream, makes it durable and gives it its final name.
    pub fn finish(mut self) -> io::Result<Written> {
        let tar = self.tar.take().expect("finish runs once");
        let finished = (|| {
            let hashing = tar.into_inner()?;
            let file = hashing.inner.into_inner().map_err(|e| e.into_error())?;
            let file = file.into_inner();
            file.sync_all()?;
            drop(file);
            std::fs::rename(&self.temp, &self.location)?;
            Ok(Written {
                sha256: hex::encode(hashing.hasher.finalize()),
                size: hashing.size,
            })
        })();
        match finished {
            Ok(written) => {
                sync_dir(&self.location);
                Ok(written)
            }
            Err(e) => {
                // The last flush or the fsync can fail (a full disk): nothing stays behind.
                let _ = std::fs::remove_file(&self.temp);
                Err(e)
            }
        }
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if self.tar.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Reads exactly `remaining` bytes: the file's, then zeros if it ended early.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// What a writing error means for the caller: which gRPC code and why.
pub fn classify(err: &io::Error) -> (crate::grpc::Code, String) {
    use crate::grpc::Code;
    if let Some(abort) = err.get_ref().and_then(|e| e.downcast_ref::<Abort>()) {
        return match abort {
            Abort::TooLarge(_) => (Code::ResourceExhausted, abort.to_string()),
            Abort::Deadline => (Code::DeadlineExceeded, abort.to_string()),
        };
    }
    match err.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => (
            Code::ResourceExhausted,
            format!("no space left for the archive: {err}"),
        ),
        _ => (Code::Internal, format!("writing the archive failed: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_the_file_and_temp_is_gone() {
        let dir = std::env::temp_dir().join(format!("ckpt-aw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let loc = dir.join("a.tar");
        let mut w = ArchiveWriter::create(&loc, None, None).unwrap();
        w.add_bytes("config.dump", b"{}").unwrap();
        w.add_dir("checkpoint").unwrap();
        let written = w.finish().unwrap();
        let data = std::fs::read(&loc).unwrap();
        assert_eq!(written.size, data.len() as u64);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&data)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&loc).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn limit_aborts_and_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("ckpt-aw2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let loc = dir.join("a.tar");
        let mut w = ArchiveWriter::create(&loc, Some(1024), None).unwrap();
        let err = w.add_bytes("big", &[0u8; 4096]).unwrap_err();
        assert_eq!(classify(&err).0, crate::grpc::Code::ResourceExhausted);
        drop(w);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
