//! Pass-through checkpoint, for runtimes whose CRI implements CheckpointContainer
//! (containerd 2.x). The runtime gets the caller's request as it came except for the
//! location, which points at a temporary name beside the real one; the shim then makes the
//! archive 0600, computes its digest, fsyncs it and renames it into place. So the runtime's
//! guarantees become the shim's: nothing at the location until the archive is complete.
//!
//! The location given to the runtime is a FIFO (`capture`): the shim receives the archive as
//! the runtime writes it and hashes it on the way, so the digest costs no second read.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use ckpt_format::atomic::{sync_dir, temp_path};

use super::archive_writer::Written;
use super::capture::Capture;
use super::emulated::Made;
use super::error::Error;
use super::location::Location;
use super::{abort, Checkpointer, Target};
use crate::api::cri::CheckpointContainerRequest;
use crate::grpc::{frame, patch, Code};
use crate::runtime::unary::{self, Head};

pub enum Outcome {
    Done(Made),
    /// The runtime answered UNIMPLEMENTED: it has no CRI checkpoint after all.
    Unimplemented,
}

pub async fn run(
    cx: &Checkpointer,
    head: &Head,
    original: &[u8],
    target: &Target,
    location: &Location,
    deadline: Option<Instant>,
    busy: &mut Option<super::Busy>,
) -> Result<Outcome, Error> {
    let temp = temp_path(&location.path);
    let limit = cx.settings.max_archive_bytes;
    // The runtime writes into a FIFO the shim drains, hashing as it goes; where a FIFO cannot
    // be made, into a temporary file the shim reads afterwards.
    let mut capture = match Capture::start(temp.clone(), temp_path(&location.path), limit) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(error = %e, "no FIFO for the runtime's archive: it is read back afterwards");
            None
        }
    };
    let payload = patch::merged(
        original,
        &CheckpointContainerRequest {
            location: temp.display().to_string(),
            ..Default::default()
        },
    );
    // A task of its own, so that past the timeout the call can be cancelled (containerd then
    // abandons the checkpoint) while the container stays claimed until containerd's dump is
    // really gone: containerd 2.x stages a checkpoint in a directory per container, and a
    // second one started before the first ended would fail on it.
    let (upstream, head) = (cx.upstream.clone(), head.clone());
    let sent = Instant::now();
    let mut send =
        tokio::spawn(async move { unary::call(&upstream, &head, frame::encode(&payload)).await });
    let answer = match deadline {
        Some(d) => match tokio::time::timeout_at(d.into(), &mut send).await {
            Ok(a) => a.map_err(|e| Error::Internal(format!("the checkpoint call failed: {e}")))?,
            Err(_) => {
                send.abort();
                let killed = abort::kill_dump(&target.id);
                let state = abort::unfreeze(&cx.containerd, &target.id).await;
                let claim = busy.take();
                let (id, containerd, leftover) =
                    (target.id.clone(), cx.containerd.clone(), temp.clone());
                tokio::spawn(async move {
                    // A dump containerd starts after the cancellation is killed too.
                    super::settle(&containerd, &id).await;
                    let _ = std::fs::remove_file(&leftover);
                    drop(claim);
                });
                discard_later(temp);
                tracing::warn!(container = %target.id, killed, ?state, "native checkpoint timed out");
                return Err(Error::NativeTimedOut(format!("{state:?}")));
            }
        },
        None => send
            .await
            .map_err(|e| Error::Internal(format!("the checkpoint call failed: {e}")))?,
    };
    let answer = match answer {
        Ok(a) => a,
        Err(status) => {
            discard_later(temp);
            return Err(Error::Upstream(status));
        }
    };
    let runtime = sent.elapsed();
    let (code, message) = answer.status();
    if code == Code::Unimplemented {
        let _ = std::fs::remove_file(&temp);
        return Ok(Outcome::Unimplemented);
    }
    if code != Code::Ok {
        let _ = std::fs::remove_file(&temp);
        abort::unfreeze(&cx.containerd, &target.id).await;
        return Err(Error::RuntimeFailed { code, message });
    }
    let final_path = location.path.clone();
    // A runtime that replaced the FIFO with a file of its own: read that one back.
    let replaced = std::fs::symlink_metadata(&temp).is_ok_and(|m| m.file_type().is_file());
    let temp = match capture.take() {
        Some(capture) if !replaced => {
            return tokio::task::spawn_blocking(move || {
                let got = capture.finish().map_err(Error::Receive)?;
                std::fs::rename(&got.out, &final_path).map_err(|e| {
                    let _ = std::fs::remove_file(&got.out);
                    Error::Internal(format!("{}: {e}", final_path.display()))
                })?;
                sync_dir(&final_path);
                Ok(Outcome::Done(Made {
                    written: got.written,
                    criu_version: got.criu_version,
                    runtime,
                }))
            })
            .await
            .map_err(|e| Error::Internal(format!("receiving the archive stopped: {e}")))?;
        }
        Some(capture) => {
            let moved = temp_path(&location.path);
            let _ = std::fs::rename(&temp, &moved);
            drop(capture);
            moved
        }
        None => temp,
    };
    tokio::task::spawn_blocking(move || {
        let result = seal(&temp, &final_path, limit, runtime);
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    })
    .await
    .map_err(|e| Error::Internal(format!("sealing the archive stopped: {e}")))?
    .map(Outcome::Done)
}

/// 0600, size limit, digest (one read, which also finds CRIU's version in dump.log), fsync,
/// rename, directory fsync.
fn seal(temp: &Path, location: &Path, limit: u64, runtime: Duration) -> Result<Made, Error> {
    let io_err = Error::Archive;
    let file = File::open(temp).map_err(|source| Error::NoArchive {
        path: temp.to_owned(),
        source,
    })?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    if limit > 0 && size > limit {
        return Err(Error::TooLarge { size, limit });
    }
    let mut hashing = HashingReader {
        inner: io::BufReader::with_capacity(1 << 20, &file),
        hasher: Sha256::new(),
    };
    let criu_version = crate::archive::dump_log::criu_version_in_tar(&mut hashing);
    // Whatever the tar reader left unread still counts.
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    std::fs::rename(temp, location).map_err(io_err)?;
    sync_dir(location);
    Ok(Made {
        written: Written {
            sha256: hex::encode(hashing.hasher.finalize()),
            size,
        },
        criu_version,
        runtime,
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The runtime may still finish writing after the call was abandoned: remove the temporary
/// archive now and whenever it shows up in the next minutes.
fn discard_later(temp: PathBuf) {
    let _ = std::fs::remove_file(&temp);
    tokio::spawn(async move {
        for _ in 0..120 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = std::fs::remove_file(&temp);
        }
    });
}
