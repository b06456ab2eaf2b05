//! The hand-over between the shim and the runc wrapper: a staged checkpoint directory.
//!
//! The shim unpacks and checks a checkpoint into `<staging_dir>/<token>/`, writes
//! `restore.json` last (so a directory without it is incomplete), and names the directory in
//! the container's `io.ckpt-shim.restore-from` annotation. The wrapper trusts a directory
//! only if it and its `restore.json` are root's and not writable by anyone else, and only
//! for the sandbox and container name recorded in it: a pod that sets the annotation itself
//! can name nothing it could have made, nor another pod's checkpoint.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The container annotation that tells the wrapper to restore instead of create.
pub const ANNOTATION: &str = "io.ckpt-shim.restore-from";
/// Written by the shim after everything else is in place.
pub const PLAN_FILE: &str = "restore.json";
/// Written by the wrapper once `runc restore` succeeded.
pub const RESULT_FILE: &str = "result.json";
/// CRIU's images inside the staged directory.
pub const IMAGES_DIR: &str = "checkpoint";
/// CRIU's work directory (restore.log) inside the staged directory.
pub const WORK_DIR: &str = "work";
/// In runc's state directory of a restored container: `start` has nothing to do.
pub const RESTORED_MARK: &str = "ckpt-shim-restored";

/// What the shim decided; read by the wrapper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub sandbox_id: String,
    pub container_name: String,
    /// The archive or image the checkpoint came from (for logs and audit).
    pub source: String,
    /// Seconds `runc restore` may take before the wrapper kills what it restored.
    pub watchdog_seconds: u64,
    /// runc restore options the checkpoint was taken with (`tcp-established`...).
    pub criu_options: Vec<String>,
}

/// What the wrapper did; read by the shim after StartContainer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub container_id: String,
    pub pid: i32,
    pub rootfs_ms: u64,
    pub restore_ms: u64,
}

pub fn plan_path(dir: &Path) -> PathBuf {
    dir.join(PLAN_FILE)
}

pub fn result_path(dir: &Path) -> PathBuf {
    dir.join(RESULT_FILE)
}

/// Reads the wrapper's outcome, if it wrote one.
pub fn read_outcome(dir: &Path) -> Option<Outcome> {
    let text = std::fs::read(result_path(dir)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Detaches every mount at or below `dir` (deepest first). CRIU mounts a cgroup yard in its
/// work directory; a CRIU killed by the watchdog leaves it there, and nothing below a
/// mount point can be removed.
pub fn unmount_under(dir: &Path) -> usize {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points.dedup();
    let mut n = 0;
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: a NUL-terminated path; MNT_DETACH never blocks on busy mounts.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            n += 1;
        }
    }
    n
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a staged checkpoint, mounts left below it included.
pub fn remove_staged(dir: &Path) -> std::io::Result<()> {
    unmount_under(dir);
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(super::unescape(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(super::unescape(r"/plain"), "/plain");
        assert_eq!(super::unescape(r"/short\04"), r"/short\04");
    }
}
