//! The emulated checkpoint, for runtimes whose CRI has none (containerd 1.6, 1.7): the
//! shim asks containerd's task service for a CRIU dump into a staging directory (the
//! container keeps running), collects the writable layer's changes, and streams everything
//! into the archive in the layout checkpointctl and containerd 2.1's restore read.

#![forbid(unsafe_code)]

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use ckpt_format::dump_log;
use ckpt_format::members::{
    self, CHECKPOINT_DIR, CONFIG_DUMP, CONTAINER_LOG, DELETED_FILES, DUMP_LOG, ROOTFS_DIFF,
    SPEC_DUMP, STATS_DUMP, STATUS_DUMP,
};

use super::archive_writer::{ArchiveWriter, Written};
use super::error::Error;
use super::location::Location;
use super::{abort, metadata, rootfs, Checkpointer, Target};
use crate::api::containerd::runc::v1::CheckpointOptions;
use crate::runtime::CallFailed;

/// What the engine made, for the sidecar.
pub struct Made {
    pub written: Written,
    pub criu_version: Option<String>,
    /// How long the runtime (and CRIU under it) took; the rest of the call is the shim's.
    pub runtime: std::time::Duration,
}

/// A private staging directory for one checkpoint, removed when dropped.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn create(work_dir: &Path, container_id: &str) -> std::io::Result<Staging> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(work_dir)?;
        let short = &container_id[..container_id.len().min(12)];
        let dir = work_dir.join(format!(
            "{short}-{}-{}",
            std::process::id(),
            ckpt_format::time::unix_nanos(SystemTime::now())
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Staging { dir })
    }

    fn images(&self) -> PathBuf {
        self.dir.join("images")
    }

    fn criu_work(&self) -> PathBuf {
        self.dir.join("work")
    }
}

impl Drop for Staging {
    /// Removed on a thread of its own: freeing hundreds of MiB of CRIU images takes tens of
    /// milliseconds, which neither the caller's answer nor the proxy's event loop should wait
    /// for. A shim that stops first leaves the directory to the next one's start-up sweep.
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove staging directory");
            }
        }
        let dir = std::mem::take(&mut self.dir);
        let spawned = std::thread::Builder::new()
            .name("staging-removal".into())
            .spawn({
                let dir = dir.clone();
                move || remove(&dir)
            });
        if spawned.is_err() {
            remove(&dir);
        }
    }
}

pub async fn run(
    cx: &Checkpointer,
    target: &Target,
    location: &Location,
    options: CheckpointOptions,
    deadline: Option<Instant>,
    busy: &mut Option<super::Busy>,
) -> Result<Made, Error> {
    let settings = &cx.settings;
    let container =
        cx.containerd.container(&target.id).await.map_err(|e| {
            CallFailed::new(e, &format!("containerd has no container {}", target.id))
        })?;
    let spec = container.spec.map(|s| s.value).unwrap_or_default();
    let staging = Staging::create(&settings.work_dir, &target.id).map_err(|e| {
        Error::Internal(format!(
            "cannot create a staging directory in {}: {e}",
            settings.work_dir.display()
        ))
    })?;
    let options = CheckpointOptions {
        exit: false,
        image_path: staging.images().display().to_string(),
        work_path: staging.criu_work().display().to_string(),
        ..options
    };

    // 1. CRIU dump, through containerd and runc; the container keeps running.
    let dump_started = Instant::now();
    let dump = cx.containerd.checkpoint(&target.id, options);
    let dumped = match deadline {
        Some(d) => match tokio::time::timeout_at(d.into(), dump).await {
            Ok(r) => r,
            Err(_) => {
                let killed = abort::kill_dump(&target.id);
                let state = abort::unfreeze(&cx.containerd, &target.id).await;
                // runc may start CRIU after the call was dropped; such a dump freezes the
                // container for nobody. Keep the container claimed and kill and thaw until
                // none is seen, as the pass-through path does.
                let claim = busy.take();
                let (id, containerd) = (target.id.clone(), cx.containerd.clone());
                tokio::spawn(async move {
                    super::settle(&containerd, &id).await;
                    drop(claim);
                });
                tracing::warn!(container = %target.id, killed, ?state, "checkpoint timed out during the CRIU dump");
                return Err(Error::DumpTimedOut(format!("{state:?}")));
            }
        },
        None => dump.await,
    };
    if let Err(e) = dumped {
        // A failed dump may still leave the cgroup frozen.
        abort::unfreeze(&cx.containerd, &target.id).await;
        return Err(criu_failure(settings, target, &staging, &e));
    }
    let runtime = dump_started.elapsed();

    // 2. Writable layer and archive, off the async threads: it is all file I/O.
    let upper = cx
        .containerd
        .mounts(&container.snapshotter, &container.snapshot_key)
        .await
        .map_err(|e| CallFailed::new(e, "cannot read the container's snapshot mounts"))?
        .iter()
        .find_map(|m| rootfs::upperdir(&m.r#type, &m.options));
    let limit = (settings.max_archive_bytes > 0).then_some(settings.max_archive_bytes);
    let config_dump = metadata::config_dump(
        target,
        &container.runtime.map(|r| r.name).unwrap_or_default(),
        SystemTime::now(),
    );
    let status_dump = metadata::status_dump(target);
    let log_path = PathBuf::from(&target.status.log_path);
    let path = location.path.clone();
    let work = staging.dir.clone();
    let images = staging.images();
    let criu_work = staging.criu_work();
    let written = tokio::task::spawn_blocking(move || -> Result<Made, Error> {
        let fail = Error::Archive;
        let mut w = ArchiveWriter::create(&path, limit, deadline).map_err(fail)?;
        w.add_bytes(CONFIG_DUMP, &config_dump).map_err(fail)?;
        w.add_bytes(SPEC_DUMP, &spec).map_err(fail)?;
        w.add_bytes(STATUS_DUMP, &status_dump).map_err(fail)?;
        if let Some(upper) = upper {
            let diff_tar = work.join(ROOTFS_DIFF);
            let diff = rootfs::write_diff(&upper, &diff_tar).map_err(|e| {
                Error::Internal(format!(
                    "cannot collect the writable layer {}: {e}",
                    upper.display()
                ))
            })?;
            if !diff.opaque.is_empty() {
                tracing::info!(dirs = ?diff.opaque, "opaque directories kept as directories only");
            }
            if !diff.deleted.is_empty() {
                let list = serde_json::to_vec(&diff.deleted).unwrap_or_default();
                w.add_bytes(DELETED_FILES, &list).map_err(fail)?;
            }
            w.add_file(ROOTFS_DIFF, &diff_tar).map_err(fail)?;
        }
        let dump_log = criu_work.join(DUMP_LOG);
        let criu_version = read_head(&dump_log).and_then(|h| dump_log::criu_version_in(&h));
        if dump_log.exists() {
            w.add_file(DUMP_LOG, &dump_log).map_err(fail)?;
        }
        // CRIU writes its statistics to the work directory (runc's work path).
        if let Some(stats) = [criu_work.join(STATS_DUMP), images.join(STATS_DUMP)]
            .into_iter()
            .find(|p| p.exists())
        {
            w.add_file(STATS_DUMP, &stats).map_err(fail)?;
        }
        if log_path.is_file() {
            w.add_file(CONTAINER_LOG, &log_path).map_err(fail)?;
        }
        w.add_dir(CHECKPOINT_DIR).map_err(fail)?;
        let mut files: Vec<_> = std::fs::read_dir(&images)
            .and_then(|d| d.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Internal(format!("cannot list the CRIU images: {e}")))?;
        files.sort_by_key(|e| e.file_name());
        for f in files {
            let name = f.file_name();
            let name = name.to_string_lossy();
            if name == STATS_DUMP {
                continue;
            }
            w.add_image(&members::image(&name), &f.path())
                .map_err(fail)?;
        }
        let written = w.finish().map_err(fail)?;
        Ok(Made {
            written,
            criu_version,
            runtime,
        })
    })
    .await
    .map_err(|e| Error::Internal(format!("the archive writer stopped: {e}")))?;
    drop(staging);
    written
}

fn read_head(path: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; dump_log::HEAD_BYTES];
    let n = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The failure with the last error lines of CRIU's log, the log kept for debugging.
fn criu_failure(
    settings: &crate::config::CheckpointSettings,
    target: &Target,
    staging: &Staging,
    err: &tonic::Status,
) -> Error {
    let log = staging.criu_work().join(DUMP_LOG);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let kept = keep_log(settings, target, &log);
    Error::CriuFailed {
        id: target.id.clone(),
        message: err.message().to_owned(),
        log: kept.as_deref().map_or_else(
            || "was not written".to_owned(),
            |p| format!("kept at {}", p.display()),
        ),
        tail: last_errors(&text, 8),
    }
}

/// The last `n` lines that report an error (CRIU marks them "Error"), or the last lines.
pub fn last_errors(log: &str, n: usize) -> String {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error"))
        .collect();
    let lines: Vec<&str> = if errors.is_empty() {
        log.lines().collect()
    } else {
        errors
    };
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn keep_log(
    settings: &crate::config::CheckpointSettings,
    target: &Target,
    log: &Path,
) -> Option<PathBuf> {
    if !log.exists() {
        return None;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&settings.failed_log_dir)
        .ok()?;
    let dest = settings.failed_log_dir.join(format!(
        "{}-{}-dump.log",
        target.id,
        ckpt_format::time::unix_nanos(SystemTime::now())
    ));
    std::fs::copy(log, &dest).ok()?;
    Some(dest)
}
