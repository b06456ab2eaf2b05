//! One checkpoint per container at a time, and what a killed shim left in flight.
//!
//! A claim marks the container busy in memory and in `<work_dir>/inflight/<id>` (holding
//! the shim's pid). A second checkpoint of a claimed container is ABORTED at once. A shim
//! killed mid-checkpoint leaves the marker; the next one thaws what may have stayed frozen.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::abort;
use super::error::Error;
use crate::runtime::containerd::Containerd;

pub struct Claims {
    busy: Arc<Mutex<HashSet<String>>>,
    inflight_dir: PathBuf,
}

impl Claims {
    pub fn new(work_dir: &Path) -> Self {
        Claims {
            busy: Arc::default(),
            inflight_dir: work_dir.join("inflight"),
        }
    }

    /// Marks the container busy until the guard drops; ABORTED if it already is.
    pub fn claim(&self, id: &str) -> Result<Busy, Error> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(id.to_owned()) {
            return Err(Error::Busy(id.to_owned()));
        }
        let marker = self.inflight_dir.join(id);
        let written = std::fs::create_dir_all(&self.inflight_dir)
            .and_then(|()| std::fs::write(&marker, std::process::id().to_string()));
        if let Err(e) = &written {
            tracing::warn!(error = %e, marker = %marker.display(), "cannot mark the checkpoint in flight");
        }
        Ok(Busy {
            set: self.busy.clone(),
            id: id.to_owned(),
            marker: written.is_ok().then_some(marker),
        })
    }

    /// Checkpoints a killed shim left in flight: their containers may be frozen (a dump cut
    /// short) or still being dumped for nobody. Each is claimed, settled and released.
    pub fn recover_inflight(&self, containerd: &Containerd) {
        let Ok(entries) = std::fs::read_dir(&self.inflight_dir) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let owner = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            let alive = owner.is_some_and(|pid| {
                pid != std::process::id() as i32 && Path::new(&format!("/proc/{pid}")).exists()
            });
            if alive {
                continue; // another shim on this node is at work
            }
            let _ = std::fs::remove_file(e.path());
            let Ok(claim) = self.claim(&id) else {
                continue;
            };
            tracing::warn!(container = %id, "a checkpoint of this container was cut short by the shim's end: thawing it");
            let containerd = containerd.clone();
            tokio::spawn(async move {
                settle(&containerd, &id).await;
                drop(claim);
            });
        }
    }
}

/// A container being checkpointed; released when dropped.
pub struct Busy {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
    /// `<work_dir>/inflight/<id>`, holding this shim's pid: a shim killed mid-checkpoint
    /// leaves it, and the next one thaws the container it may have left frozen.
    marker: Option<PathBuf>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(marker) = &self.marker {
            let _ = std::fs::remove_file(marker);
        }
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Kills any dump of the container and thaws it until none has been seen for 2 s (at most
/// 2 minutes): what is left of a checkpoint nobody waits for any more.
pub(crate) async fn settle(containerd: &Containerd, id: &str) {
    let mut quiet = 0;
    for _ in 0..240 {
        if abort::kill_dump(id) > 0 {
            quiet = 0;
        } else {
            quiet += 1;
        }
        abort::unfreeze(containerd, id).await;
        if quiet >= 4 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
