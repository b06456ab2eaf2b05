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

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::archive_writer::{hex, sync_dir, temp_path, Written};
use super::capture::Capture;
use super::engine::Made;
use super::location::Location;
use super::{abort, Checkpointer, Target};
use crate::grpc::{Code, Status};
use crate::proxy::unary::{self, Head};

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
) -> Result<Outcome, Status> {
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
    let payload = with_location(original, &temp.display().to_string())
        .map_err(|why| Status::invalid_argument(format!("CheckpointContainerRequest: {why}")))?;
    // A task of its own, so that past the timeout the call can be cancelled (containerd then
    // abandons the checkpoint) while the container stays claimed until containerd's dump is
    // really gone: containerd 2.x stages a checkpoint in a directory per container, and a
    // second one started before the first ended would fail on it.
    let (upstream, head) = (cx.upstream.clone(), head.clone());
    let sent = Instant::now();
    let mut send =
        tokio::spawn(async move { unary::call(&upstream, &head, frame(&payload)).await });
    let answer = match deadline {
        Some(d) => match tokio::time::timeout_at(d.into(), &mut send).await {
            Ok(a) => a.map_err(|e| Status::internal(format!("the checkpoint call failed: {e}")))?,
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
                return Err(Status::new(
                    Code::DeadlineExceeded,
                    format!("the checkpoint's timeout passed; the runtime's checkpoint was aborted (container state afterwards: {state:?})"),
                ));
            }
        },
        None => send
            .await
            .map_err(|e| Status::internal(format!("the checkpoint call failed: {e}")))?,
    };
    let answer = match answer {
        Ok(a) => a,
        Err(status) => {
            discard_later(temp);
            return Err(status);
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
        return Err(Status::new(
            code,
            format!("the runtime's checkpoint failed: {message}"),
        ));
    }
    let final_path = location.path.clone();
    // A runtime that replaced the FIFO with a file of its own: read that one back.
    let replaced = std::fs::symlink_metadata(&temp).is_ok_and(|m| m.file_type().is_file());
    let temp = match capture.take() {
        Some(capture) if !replaced => {
            return tokio::task::spawn_blocking(move || {
                let got = capture.finish().map_err(|e| {
                    let (code, why) = super::archive_writer::classify(&e);
                    Status::new(code, format!("receiving the runtime's archive: {why}"))
                })?;
                std::fs::rename(&got.out, &final_path).map_err(|e| {
                    let _ = std::fs::remove_file(&got.out);
                    Status::internal(format!("{}: {e}", final_path.display()))
                })?;
                sync_dir(&final_path);
                Ok(Outcome::Done(Made {
                    written: got.written,
                    criu_version: got.criu_version,
                    runtime,
                }))
            })
            .await
            .map_err(|e| Status::internal(format!("receiving the archive stopped: {e}")))?;
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
    .map_err(|e| Status::internal(format!("sealing the archive stopped: {e}")))?
    .map(Outcome::Done)
}

/// 0600, size limit, digest (one read, which also finds CRIU's version in dump.log), fsync,
/// rename, directory fsync.
fn seal(temp: &Path, location: &Path, limit: u64, runtime: Duration) -> Result<Made, Status> {
    let io_err = |e: io::Error| {
        let (code, why) = super::archive_writer::classify(&e);
        Status::new(code, why)
    };
    let file = File::open(temp).map_err(|e| {
        Status::internal(format!(
            "the runtime reported success but wrote no archive at {}: {e}",
            temp.display()
        ))
    })?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    if limit > 0 && size > limit {
        return Err(Status::resource_exhausted(format!(
            "the archive of {size} bytes is larger than the configured maximum of {limit} bytes"
        )));
    }
    let mut hashing = HashingReader {
        inner: io::BufReader::with_capacity(1 << 20, &file),
        hasher: Sha256::new(),
    };
    let criu_version = super::sidecar::criu_version_in_tar(&mut hashing);
    // Whatever the tar reader left unread still counts.
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    std::fs::rename(temp, location).map_err(io_err)?;
    sync_dir(location);
    Ok(Made {
        written: Written {
            sha256: hex(&hashing.hasher.finalize()),
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

fn frame(payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(5 + payload.len());
    b.push(0);
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    Bytes::from(b)
}

/// `location` is field 2 of CheckpointContainerRequest. Every other field is copied as its
/// original bytes (so fields newer than our schema survive); field 2 is dropped wherever it
/// occurs and written once at the end.
pub fn with_location(message: &[u8], location: &str) -> Result<Vec<u8>, String> {
    const LOCATION: u64 = 2;
    let mut out = Vec::with_capacity(message.len() + location.len() + 8);
    let mut pos = 0;
    while pos < message.len() {
        let start = pos;
        let key = varint(message, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(message, &mut pos)?;
            }
            1 => pos += 8,
            2 => {
                let len = varint(message, &mut pos)? as usize;
                pos = pos.checked_add(len).ok_or("length overflows")?;
            }
            5 => pos += 4,
            w => return Err(format!("unsupported wire type {w} in field {field}")),
        }
        if pos > message.len() {
            return Err("message ends inside a field".into());
        }
        if field != LOCATION {
            out.extend_from_slice(&message[start..pos]);
        }
    }
    out.push((LOCATION << 3 | 2) as u8);
    let mut len = location.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(location.as_bytes());
    Ok(out)
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("message ends inside a varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cri::CheckpointContainerRequest;
    use prost::Message;

    #[test]
    fn location_is_replaced_and_the_rest_kept() {
        let req = CheckpointContainerRequest {
            container_id: "abc".into(),
            location: "/var/lib/kubelet/checkpoints/x.tar".into(),
            timeout: 30,
        };
        let mut bytes = req.encode_to_vec();
        bytes.extend_from_slice(&[0xc2, 0x3e, 3, b'f', b'u', b't']); // field 1000
        let out = with_location(&bytes, "/tmp/.x.tar.tmp").unwrap();
        let back = CheckpointContainerRequest::decode(&out[..]).unwrap();
        assert_eq!(back.container_id, "abc");
        assert_eq!(back.location, "/tmp/.x.tar.tmp");
        assert_eq!(back.timeout, 30);
        assert!(out
            .windows(6)
            .any(|w| w == [0xc2, 0x3e, 3, b'f', b'u', b't']));
        assert!(with_location(&[0x0a, 0x05, b'a'], "x").is_err());
    }
}
