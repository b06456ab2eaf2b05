//! Restores the shim carries from CreateContainer to StartContainer and until the container
//! is removed: their staging directories (wrapper restores), kept across a restart of the
//! shim, removed with the container or when it is found gone.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::error::Error;
use crate::api::cri::{ContainerStatusRequest, RemoveContainerRequest, StopContainerRequest};
use crate::audit::{Action, Record};
use crate::grpc::Status;
use crate::runtime::CallFailed;
use crate::runtime::CriClient;
use ckpt_format::plan;
use ckpt_format::plan::ANNOTATION;
use ckpt_shim_runc::staged::remove_staged;

/// A restore the shim is carrying between CreateContainer and StartContainer.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The staging directory (wrapper restores); None when the runtime restores natively.
    pub dir: Option<PathBuf>,
    pub record: Record,
}

pub struct Tracker {
    cri: CriClient,
    /// Where CRIU's log of a failed restore is kept (the checkpoint's failed_log_dir).
    failed_log_dir: PathBuf,
    tracked: Mutex<HashMap<String, Tracked>>,
}

impl Tracker {
    pub fn new(cri: CriClient, failed_log_dir: PathBuf) -> Self {
        Tracker {
            cri,
            failed_log_dir,
            tracked: Mutex::default(),
        }
    }

    /// Staged checkpoints of containers created before a restart of the shim are picked up
    /// again; half-staged ones (no container) are removed.
    pub fn recover(&self, staging_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(staging_dir) else {
            return;
        };
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        for e in entries.flatten() {
            let dir = e.path();
            match std::fs::read_to_string(dir.join("container-id")) {
                Ok(id) if !id.trim().is_empty() => {
                    tracked.insert(
                        id.trim().to_owned(),
                        Tracked {
                            dir: Some(dir),
                            record: Record {
                                action: Action::Restore,
                                container_id: id.trim().to_owned(),
                                ..Default::default()
                            },
                        },
                    );
                }
                _ => {
                    tracing::info!(dir = %dir.display(), "removing a staged checkpoint no container uses");
                    let _ = remove_staged(&dir);
                }
            }
        }
    }

    pub fn insert(&self, id: &str, tracked: Tracked) {
        self.lock().insert(id.to_owned(), tracked);
    }

    pub fn get(&self, id: &str) -> Option<Tracked> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether StartContainer of `id` finishes a restore.
    pub fn is_restore(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    pub async fn annotation_arrived(&self, id: &str, dir: &Path) -> Result<(), Error> {
        let answer = self
            .cri
            .clone()
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: true,
            })
            .await
            .map_err(|e| CallFailed::new(e, "ContainerStatus of the restored container"))?
            .into_inner();
        let info: serde_json::Value = answer
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        let got = info["runtimeSpec"]["annotations"][ANNOTATION].as_str();
        if got != Some(&dir.display().to_string()) {
            return Err(Error::AnnotationDropped);
        }
        Ok(())
    }

    /// Removes a container the runtime created but that must not start (best effort).
    pub async fn remove_container(&self, id: &str) {
        let _ = self
            .cri
            .clone()
            .remove_container(RemoveContainerRequest {
                container_id: id.to_owned(),
            })
            .await;
    }

    /// How StartContainer of a tracked restore really ended: a wrapper restore must have
    /// left the wrapper's outcome, or the container started fresh and is stopped.
    pub async fn outcome(
        &self,
        id: &str,
        tracked: &Tracked,
        answer: Result<(), Status>,
    ) -> Result<(), Error> {
        match (answer, &tracked.dir) {
            (Err(status), Some(dir)) => {
                // The runtime's answer, with the wrapper's reason and where CRIU's log is kept.
                let kept = self.keep_log(id, dir);
                let why = std::fs::read_to_string(dir.join("error")).unwrap_or_default();
                let status = Status::new(status.code, format!("{}{kept}", status.message));
                Err(Error::Answer(
                    if why.is_empty() || status.message.contains(why.trim()) {
                        status
                    } else {
                        Status::new(status.code, format!("{}: {why}", status.message))
                    },
                ))
            }
            (Err(status), None) => Err(Error::Answer(status)),
            (Ok(()), None) => Ok(()),
            (Ok(()), Some(dir)) => match plan::read_outcome(dir) {
                Some(outcome) if outcome.container_id == id => {
                    tracing::info!(
                        container = id,
                        pid = outcome.pid,
                        rootfs_ms = outcome.rootfs_ms,
                        restore_ms = outcome.restore_ms,
                        "restored"
                    );
                    Ok(())
                }
                _ => {
                    let _ = self
                        .cri
                        .clone()
                        .stop_container(StopContainerRequest {
                            container_id: id.to_owned(),
                            timeout: 0,
                        })
                        .await;
                    Err(Error::StartedFresh)
                }
            },
        }
    }

    /// Copies CRIU's restore log out of the staging directory (removed with the container);
    /// returns a note for the error message.
    pub fn keep_log(&self, id: &str, dir: &Path) -> String {
        let log = dir.join(plan::WORK_DIR).join(plan::RESTORE_LOG);
        if !log.exists() {
            return String::new();
        }
        let short = id.get(..12).unwrap_or(id);
        let kept = self.failed_log_dir.join(format!("restore-{short}.log"));
        let copied = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.failed_log_dir)
            .and_then(|()| std::fs::copy(&log, &kept));
        match copied {
            Ok(_) => format!(" (CRIU's restore log kept at {})", kept.display()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep the restore log");
                String::new()
            }
        }
    }

    /// Stops tracking `id`; its staging directory, if it had one, is the caller's to remove.
    pub fn untrack(&self, id: &str) -> Option<PathBuf> {
        self.lock().remove(id).and_then(|t| t.dir)
    }

    /// Staged checkpoints of containers that are gone without a RemoveContainer (a
    /// RemovePodSandbox takes its containers along) are removed too. Runs before each restore
    /// and every few minutes.
    pub async fn sweep(&self) {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for id in ids {
            let gone = self
                .cri
                .clone()
                .container_status(ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .is_err_and(|e| e.code() == tonic::Code::NotFound);
            if gone {
                tracing::info!(container = %id, "the restored container is gone: removing its staged checkpoint");
                if let Some(dir) = self.lock().remove(&id).and_then(|t| t.dir) {
                    // Off the request's path: removing gigabytes takes a while.
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = remove_staged(&dir) {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a staged checkpoint");
                        }
                    });
                }
            }
        }
    }
}
