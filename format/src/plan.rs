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
/// Written by the wrapper when the restore failed: the message.
pub const ERROR_FILE: &str = "error";
/// Created by the wrapper when it takes the directory: a plan is used once.
pub const CLAIMED_FILE: &str = "claimed";
/// CRIU's images inside the staged directory (the archive's `checkpoint/`).
pub const IMAGES_DIR: &str = crate::members::CHECKPOINT_DIR;
/// CRIU's work directory (restore.log) inside the staged directory.
pub const WORK_DIR: &str = "work";
/// CRIU's log of the restore, in [`WORK_DIR`].
pub const RESTORE_LOG: &str = "restore.log";
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_refuses_unknown_keys() {
        let p = Plan {
            sandbox_id: "s".into(),
            container_name: "c".into(),
            source: "/a.tar".into(),
            watchdog_seconds: 5,
            criu_options: vec![],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&text).unwrap(), p);
        let more = text.replacen('{', r#"{"x":1,"#, 1);
        assert!(serde_json::from_str::<Plan>(&more).is_err());
    }
}
