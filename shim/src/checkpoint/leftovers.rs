//! What dead runs left behind (SIGKILL, power loss): temporary archives beside checkpoint
//! locations and emulated checkpoints' staging directories. Only those whose owning process
//! is gone are removed, since several shims may share a node.

use std::path::Path;

use ckpt_format::atomic::TEMP_MARK;

use super::capture;
use crate::config::CheckpointSettings;

pub fn remove(settings: &CheckpointSettings) {
    let alive = |name: &str| {
        name.split(TEMP_MARK)
            .nth(1)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    };
    for dir in &settings.allowed_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(TEMP_MARK) && !alive(&name) {
                tracing::info!(path = %e.path().display(), "removing a dead run's temporary archive");
                if e.file_type().is_ok_and(|t| {
                    use std::os::unix::fs::FileTypeExt;
                    t.is_fifo()
                }) {
                    // The runtime may still be writing into a dead run's FIFO: drain it.
                    capture::drain_orphan(e.path());
                } else {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(&settings.work_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
