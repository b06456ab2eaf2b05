//! Receiving a runtime's archive as it is written. The location the runtime is given is a
//! FIFO; the shim reads it, hashes the bytes, notes CRIU's version from `dump.log` and
//! writes them to its own temporary file, all in one pass. The runtime's `open` of the
//! location (containerd: `O_RDWR|O_CREATE`) and its sequential writes work on a FIFO as on a
//! file, so nothing is read twice.

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

use super::archive_writer::{HashThread, Seen, Writeback, Written};
use crate::archive::dump_log::DumpLogScan;

/// What came through the FIFO.
pub struct Captured {
    /// The shim's temporary file holding the archive.
    pub out: PathBuf,
    pub written: Written,
    pub criu_version: Option<String>,
}

/// A FIFO at `fifo` being drained into `out`.
pub struct Capture {
    pub fifo: PathBuf,
    pub out: PathBuf,
    /// The shim's own write end: until it is closed the reader never sees end-of-file, even
    /// before the runtime has opened the FIFO.
    keepalive: Option<File>,
    reader: Option<std::thread::JoinHandle<io::Result<Captured>>>,
    /// Set when the capture is dropped: the reader then only drains.
    abandoned: Arc<AtomicBool>,
}

impl Capture {
    /// Makes the FIFO (0600) and starts draining it. `limit` (0: none) bounds the archive;
    /// past it the bytes are still drained, so the runtime never blocks, but the capture fails.
    pub fn start(fifo: PathBuf, out: PathBuf, limit: u64) -> io::Result<Capture> {
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))?;
        let opened = (|| {
            // Non-blocking so this open does not wait for a writer; reads block again below.
            let pipe = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)?;
            set_blocking(&pipe)?;
            let keepalive = OpenOptions::new().write(true).open(&fifo)?;
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)?;
            Ok::<_, io::Error>((pipe, keepalive, file))
        })();
        let (pipe, keepalive, file) = match opened {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_file(&fifo);
                let _ = std::fs::remove_file(&out);
                return Err(e);
            }
        };
        let abandoned = Arc::new(AtomicBool::new(false));
        let reader = std::thread::Builder::new()
            .name("archive-capture".into())
            .spawn({
                let (out, abandoned) = (out.clone(), abandoned.clone());
                move || drain(pipe, file, limit, out, &abandoned)
            })?;
        Ok(Capture {
            fifo,
            out,
            keepalive: Some(keepalive),
            reader: Some(reader),
            abandoned,
        })
    }

    /// The runtime has answered: once its writes are read, the capture ends. Blocks.
    pub fn finish(mut self) -> io::Result<Captured> {
        self.keepalive = None;
        let reader = self.reader.take().expect("finish runs once");
        let result = reader
            .join()
            .map_err(|_| io::Error::other("the capture thread panicked"))?;
        let _ = std::fs::remove_file(&self.fifo);
        if result.is_err() {
            let _ = std::fs::remove_file(&self.out);
        }
        result
    }
}

impl Drop for Capture {
    /// Abandoned (the call failed or timed out): nothing captured stays, at once. The reader
    /// keeps draining without writing until the runtime closes its end, so the runtime never
    /// blocks on a full pipe.
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
        self.keepalive = None;
        let _ = std::fs::remove_file(&self.fifo);
        if self.reader.take().is_some() {
            let _ = std::fs::remove_file(&self.out);
        }
    }
}

/// A FIFO a killed shim left: a runtime that still has it open would block for ever on a
/// full pipe. It is opened, unlinked (a runtime opening the path later makes a plain file)
/// and read to its end in the background.
pub fn drain_orphan(fifo: PathBuf) {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    let _ = std::fs::remove_file(&fifo);
    let Ok(pipe) = opened else {
        return;
    };
    if set_blocking(&pipe).is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("orphan-drain".into())
        .spawn(move || {
            let mut pipe = pipe;
            let _ = io::copy(&mut pipe, &mut io::sink());
        });
}

fn set_blocking(file: &File) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL)?);
    fcntl(file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The FIFO's buffer, when the kernel allows it: fewer, larger writes for the runtime.
const PIPE_BYTES: i32 = 4 << 20;

impl Seen for DumpLogScan {
    fn seen(&mut self, chunk: &[u8]) {
        self.feed(chunk);
    }
}

/// Reads the pipe to its end. Each chunk goes to the file here and to a second thread that
/// hashes it and looks for CRIU's version, so neither waits for the other; the file's dirty
/// pages are sent to the disk as they accumulate, so the final fsync has little left to do.
/// Past the limit, or after a write error, the pipe is still read to its end, so the runtime
/// never blocks, but the capture fails.
fn drain(
    mut pipe: File,
    file: File,
    limit: u64,
    out: PathBuf,
    abandoned: &AtomicBool,
) -> io::Result<Captured> {
    // Above /proc/sys/fs/pipe-max-size (1 MiB by default) only with CAP_SYS_RESOURCE; a
    // failure keeps the size.
    for bytes in [PIPE_BYTES, 1 << 20] {
        if fcntl(&pipe, FcntlArg::F_SETPIPE_SZ(bytes)).is_ok() {
            break;
        }
    }
    let mut hash = HashThread::start(Sha256::new(), DumpLogScan::default())?;
    let mut file = Writeback::new(file);
    let mut size = 0u64;
    let mut failed: Option<io::Error> = None;
    loop {
        let mut buf = hash.buffer();
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                failed.get_or_insert(e);
                break;
            }
        };
        size += n as u64;
        if failed.is_some() {
            continue;
        }
        let step = if abandoned.load(Ordering::Relaxed) {
            Err(io::Error::other("the capture was abandoned"))
        } else if limit > 0 && size > limit {
            Err(io::Error::other(super::archive_writer::Abort::TooLarge(
                limit,
            )))
        } else {
            file.write_all(&buf[..n]).and_then(|()| hash.send(buf, n))
        };
        failed = step.err();
    }
    if let Some(e) = failed {
        // Whatever else the runtime writes is read and dropped.
        let _ = io::copy(&mut pipe, &mut io::sink());
        return Err(e);
    }
    let (hasher, scan) = hash.finish()?;
    let (sha256, criu_version) = (hex::encode(hasher.finalize()), scan.end());
    file.into_inner().sync_all()?;
    if size == 0 {
        return Err(io::Error::other("the runtime wrote nothing to the archive"));
    }
    Ok(Captured {
        out,
        written: Written { sha256, size },
        criu_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_through_the_fifo_is_captured_whole() {
        let dir = tempfile_dir();
        let (fifo, out) = (dir.join("fifo"), dir.join("out"));
        let capture = Capture::start(fifo.clone(), out.clone(), 0).unwrap();
        // As containerd opens its location.
        let mut w = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&fifo)
            .unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let log = b"(00.000000) Version: 4.2.1 (gitid 0)\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(log.len() as u64);
        tar.append_data(&mut h, "dump.log", &log[..]).unwrap();
        let big = vec![7u8; 3 << 20];
        let mut h = tar::Header::new_gnu();
        h.set_size(big.len() as u64);
        tar.append_data(&mut h, "checkpoint/pages-1.img", &big[..])
            .unwrap();
        let bytes = tar.into_inner().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(&bytes).unwrap();
            bytes
        });
        let bytes = writer.join().unwrap();
        let got = capture.finish().unwrap();
        assert_eq!(got.written.size, bytes.len() as u64);
        assert_eq!(got.written.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
        assert_eq!(got.criu_version.as_deref(), Some("4.2.1"));
        assert!(!fifo.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn over_the_limit_is_drained_and_refused() {
        let dir = tempfile_dir();
        let (fifo, out) = (dir.join("fifo"), dir.join("out"));
        let capture = Capture::start(fifo.clone(), out.clone(), 1000).unwrap();
        let mut w = OpenOptions::new().write(true).open(&fifo).unwrap();
        // More than the pipe holds: the writer finishes only because the reader drains.
        w.write_all(&vec![1u8; 1 << 20]).unwrap();
        drop(w);
        assert!(capture.finish().is_err());
        assert!(!out.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_abandoned_capture_leaves_nothing_while_the_runtime_still_writes() {
        let dir = tempfile_dir();
        let (fifo, out) = (dir.join("fifo"), dir.join("out"));
        let capture = Capture::start(fifo.clone(), out.clone(), 0).unwrap();
        let mut w = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        w.write_all(&vec![3u8; 2 << 20]).unwrap();
        drop(capture);
        assert!(!out.exists() && !fifo.exists());
        // The runtime is not blocked: its writes are still drained.
        let writer = std::thread::spawn(move || w.write_all(&vec![4u8; 8 << 20]));
        writer.join().unwrap().unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_dead_runs_fifo_is_drained_so_the_runtime_finishes() {
        let dir = tempfile_dir();
        let fifo = dir.join(".a.tar.ckpt-shim-tmp-1-0");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        // The runtime opens read-write, as containerd does, so it never sees a missing reader.
        let mut w = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        drain_orphan(fifo.clone());
        assert!(!fifo.exists());
        let writer = std::thread::spawn(move || w.write_all(&vec![0u8; 4 << 20]));
        writer.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ckpt-capture-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
