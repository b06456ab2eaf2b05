//! CheckpointContainer, done by the shim: every runtime gets the same checks (location,
//! container state, policy, one checkpoint per container at a time), the same timeout,
//! the same archive guarantees (complete or absent, 0600, digest in a sidecar) and an audit
//! record. The checkpoint itself is the runtime's (`native`) where its CRI has one, and the
//! shim's own through containerd's API (`engine`) where it answers UNIMPLEMENTED.
//!
//! Concurrency: a second checkpoint of a container already being checkpointed is answered
//! ABORTED at once (it does not wait); checkpoints of different containers run in parallel.

pub mod abort;
pub mod archive_writer;
pub mod capture;
pub mod engine;
pub mod location;
pub mod metadata;
pub mod native;
pub mod policy;
pub mod rootfs;
pub mod sidecar;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::api::containerd::runc::v1::CheckpointOptions;
use crate::api::cri::{
    CheckpointContainerRequest, ContainerState, ContainerStatus, ContainerStatusRequest,
    VersionRequest,
};
use crate::audit::{AuditLog, Record};
use crate::config::{CheckpointMode, CheckpointSettings, Config};
use crate::grpc::{Code, Status};
use crate::proxy::unary::Head;
use crate::proxy::upstream::Upstream;
use crate::runtime::containerd::Containerd;
use crate::runtime::CriClient;
use crate::server::peer::Caller;

/// The container a request names, as the runtime describes it.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub name: String,
    pub pod: String,
    pub pod_uid: String,
    pub namespace: String,
    pub image: String,
    pub image_ref: String,
    pub status: ContainerStatus,
    /// The OCI spec's annotations (from the verbose status), where the runtime gave them.
    pub annotations_spec: HashMap<String, String>,
}

impl Target {
    /// containerd's CRI name for the container: container_pod_namespace_uid_attempt.
    pub fn full_name(&self) -> String {
        let attempt = self.status.metadata.as_ref().map_or(0, |m| m.attempt);
        format!(
            "{}_{}_{}_{}_{attempt}",
            self.name, self.pod, self.namespace, self.pod_uid
        )
    }
}

/// Which way checkpoints are done on the runtime behind the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Detected {
    runtime: (String, String),
    native: bool,
}

pub struct Checkpointer {
    pub settings: CheckpointSettings,
    pub(crate) cri: CriClient,
    pub(crate) images: crate::runtime::ImageClient,
    pub(crate) containerd: Containerd,
    /// The shim's own connection for pass-through checkpoints, so one survives its caller.
    pub(crate) upstream: Arc<Upstream>,
    busy: Arc<Mutex<HashSet<String>>>,
    detected: tokio::sync::Mutex<Option<Detected>>,
    audit: Option<Arc<AuditLog>>,
}

/// One request, owned, so the work can run to its end (or its own timeout) in a task of
/// its own even if the caller hangs up.
pub struct Job {
    pub request: CheckpointContainerRequest,
    pub original: Vec<u8>,
    pub head: Head,
    pub caller: Caller,
}

impl Checkpointer {
    /// Builds the checkpointer and removes what dead runs left behind.
    pub fn start(config: &Config) -> Arc<Checkpointer> {
        let settings = config.checkpoint.clone();
        let containerd = Containerd::new(&config.runtime_endpoint, &settings.containerd_namespace)
            .unwrap_or_else(|e| {
                tracing::error!("{e}; using namespace k8s.io");
                Containerd::new(&config.runtime_endpoint, "k8s.io").expect("valid namespace")
            });
        let cx = Arc::new(Checkpointer {
            cri: crate::runtime::cri(&config.runtime_endpoint),
            images: crate::runtime::images(&config.runtime_endpoint),
            containerd,
            upstream: Arc::new(Upstream::new(
                config.runtime_endpoint.clone(),
                config.connect_timeout,
            )),
            busy: Arc::default(),
            detected: tokio::sync::Mutex::new(None),
            audit: settings
                .audit_log
                .clone()
                .map(|p| Arc::new(AuditLog::new(p))),
            settings,
        });
        // Leftovers only; the capability is detected on the first checkpoint, so a shim
        // that never checkpoints never calls the runtime on its own.
        cx.remove_leftovers();
        cx
    }

    /// Temporary archives and staging directories of earlier runs that died (SIGKILL, power
    /// loss): only those whose owning process is gone, since several shims may share a node.
    fn remove_leftovers(&self) {
        let alive = |name: &str| {
            name.split(archive_writer::TEMP_MARK)
                .nth(1)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<i32>().ok())
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
        };
        for dir in &self.settings.allowed_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(archive_writer::TEMP_MARK) && !alive(&name) {
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
        if let Ok(entries) = std::fs::read_dir(&self.settings.work_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Native or emulated, and the runtime's name and version. Version is asked on every
    /// checkpoint (it is cheap and the sidecar needs it); the capability is probed on the
    /// first checkpoint and again whenever the version changes (a reconnect to a restarted
    /// or upgraded runtime).
    async fn engine(&self) -> Result<(bool, (String, String)), Status> {
        let version = self
            .cri
            .clone()
            .version(VersionRequest::default())
            .await
            .map_err(|e| runtime_error(e, "the runtime's Version failed"))?
            .into_inner();
        let runtime = (version.runtime_name, version.runtime_version);
        let mut detected = self.detected.lock().await;
        if let Some(d) = detected.as_ref().filter(|d| d.runtime == runtime) {
            return Ok((self.forced().unwrap_or(d.native), runtime));
        }
        let native = match self.forced() {
            Some(n) => n,
            None => self.probe().await?,
        };
        tracing::info!(runtime = %runtime.0, version = %runtime.1, native, "checkpoint capability detected");
        *detected = Some(Detected {
            runtime: runtime.clone(),
            native,
        });
        Ok((native, runtime))
    }

    /// The audit log, shared with restores so both extend one chain.
    pub fn audit(&self) -> Option<Arc<AuditLog>> {
        self.audit.clone()
    }

    fn forced(&self) -> Option<bool> {
        match self.settings.mode {
            CheckpointMode::Auto => None,
            CheckpointMode::Native => Some(true),
            CheckpointMode::Emulate => Some(false),
        }
    }

    /// CheckpointContainer for no container: UNIMPLEMENTED where the CRI has none, an
    /// argument or not-found error where it has one. Touches nothing.
    async fn probe(&self) -> Result<bool, Status> {
        match self
            .cri
            .clone()
            .checkpoint_container(CheckpointContainerRequest::default())
            .await
        {
            Err(e) if e.code() == tonic::Code::Unimplemented => Ok(false),
            Err(e) if e.code() == tonic::Code::Unavailable => {
                Err(runtime_error(e, "probing CheckpointContainer"))
            }
            _ => Ok(true),
        }
    }

    /// Detects the capability at once, then again after every new connection to the runtime
    /// (it may have been restarted or upgraded), so the first checkpoint does not pay for
    /// the probe and a changed runtime is noticed before one is asked for.
    pub async fn detect_now(&self) {
        *self.detected.lock().await = None;
        if let Err(status) = self.engine().await {
            tracing::info!(%status, "checkpoint capability not detected yet: the runtime does not answer; trying again when it is connected");
        }
    }

    fn inflight_dir(&self) -> PathBuf {
        self.settings.work_dir.join("inflight")
    }

    /// Checkpoints a killed shim left in flight: their containers may be frozen (a dump cut
    /// short) or still being dumped for nobody. Each is claimed, settled and released.
    pub fn recover_inflight(self: Arc<Self>) {
        let Ok(entries) = std::fs::read_dir(self.inflight_dir()) else {
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
            let cx = self.clone();
            tokio::spawn(async move {
                settle(&cx.containerd, &id).await;
                drop(claim);
            });
        }
    }

    async fn mark_unimplemented(&self) {
        if let Some(d) = self.detected.lock().await.as_mut() {
            d.native = false;
        }
    }

    /// Runs one checkpoint to its end and audits it; the answer is the encoded response.
    pub async fn run(self: Arc<Self>, job: Job) -> Result<Vec<u8>, Status> {
        let start = Instant::now();
        let mut record = Record {
            time: crate::timefmt::rfc3339(SystemTime::now()),
            action: "checkpoint",
            caller_pid: job.caller.pid,
            caller_uid: job.caller.uid,
            container_id: job.request.container_id.clone(),
            location: job.request.location.clone(),
            ..Default::default()
        };
        let result = self.checkpoint(&job, &mut record).await;
        record.duration_ms = start.elapsed().as_millis() as u64;
        record.conclude(result.as_ref().map(|_| ()));
        let runtime_ms = result.as_ref().map_or(0, |r| r.as_millis() as u64);
        if let Some(audit) = &self.audit {
            if let Err(e) = audit.append(&record).await {
                tracing::error!(error = %e, "cannot append to the audit log");
            }
        }
        tracing::info!(
            container = %record.container_id, pod = %record.pod, namespace = %record.namespace,
            result = record.result, code = %record.code, size = record.size,
            duration_ms = record.duration_ms, runtime_ms, "CheckpointContainer"
        );
        result.map(|_| Vec::new())
    }

    /// Returns how long the runtime's part took.
    async fn checkpoint(&self, job: &Job, record: &mut Record) -> Result<Duration, Status> {
        let started = SystemTime::now();
        let request = &job.request;
        let deadline = (request.timeout > 0)
            .then(|| Instant::now() + Duration::from_secs(request.timeout as u64));
        let location = location::validate(&request.location, &self.settings.allowed_dirs)?;
        let target = self.resolve(&request.container_id).await?;
        record.container_id = target.id.clone();
        record.container = target.name.clone();
        record.pod = target.pod.clone();
        record.namespace = target.namespace.clone();
        policy::namespace(&self.settings, &target.namespace)?;
        let mut options = CheckpointOptions::default();
        let annotation = target
            .status
            .annotations
            .get(policy::CRIU_OPTIONS_ANNOTATION)
            .or_else(|| target.annotations_spec.get(policy::CRIU_OPTIONS_ANNOTATION));
        let criu_options =
            policy::criu_options(&self.settings, annotation.map(String::as_str), &mut options)?;
        // Held until the runtime is really done with the container (past a timeout too).
        let mut busy = Some(self.claim(&target.id)?);

        let (mut native, runtime) = self.engine().await?;
        if native && !criu_options.is_empty() {
            return Err(Status::new(
                Code::FailedPrecondition,
                format!("CRIU options {criu_options:?} are only applied when the shim checkpoints itself (checkpoint.mode = emulate); the runtime's own checkpoint takes none"),
            ));
        }
        let mut made = None;
        if native {
            match native::run(self, &job.head, &job.original, &target, &location, deadline, &mut busy).await? {
                native::Outcome::Done(m) => made = Some(m),
                native::Outcome::Unimplemented if self.forced().is_none() => {
                    self.mark_unimplemented().await;
                    native = false;
                }
                native::Outcome::Unimplemented => {
                    return Err(Status::new(
                        Code::Unimplemented,
                        "checkpoint.mode = native but the runtime does not implement CheckpointContainer",
                    ))
                }
            }
        }
        let made = match made {
            Some(m) => m,
            None => engine::run(self, &target, &location, options, deadline).await?,
        };
        record.engine = if native { "native" } else { "emulated" }.into();
        record.sha256 = made.written.sha256.clone();
        record.size = made.written.size;
        let side = sidecar::describe(
            &target,
            &location.path,
            runtime,
            if native { "native" } else { "emulated" },
            made.criu_version.clone(),
            criu_options,
            started,
            &made.written,
        );
        sidecar::write(&location.path, &side).map_err(|e| {
            Status::internal(format!(
                "the archive {} is complete but its sidecar could not be written: {e}",
                location.path.display()
            ))
        })?;
        Ok(made.runtime)
    }

    /// The container, which must exist and run.
    async fn resolve(&self, container_id: &str) -> Result<Target, Status> {
        if container_id.is_empty() {
            return Err(Status::invalid_argument("container_id is empty"));
        }
        let answer = self
            .cri
            .clone()
            .container_status(ContainerStatusRequest {
                container_id: container_id.into(),
                verbose: true,
            })
            .await
            .map_err(|e| match e.code() {
                tonic::Code::NotFound => Status::new(
                    Code::NotFound,
                    format!("container {container_id:?} not found: {}", e.message()),
                ),
                _ => runtime_error(e, "ContainerStatus failed"),
            })?
            .into_inner();
        let status = answer
            .status
            .ok_or_else(|| Status::internal("the runtime's ContainerStatus has no status"))?;
        if status.state != ContainerState::ContainerRunning as i32 {
            let state = ContainerState::try_from(status.state)
                .map(|s| s.as_str_name())
                .unwrap_or("unknown");
            return Err(Status::new(
                Code::FailedPrecondition,
                format!("container {container_id:?} is not running (state {state})"),
            ));
        }
        let annotations_spec = answer
            .info
            .get("info")
            .and_then(|info| serde_json::from_str::<serde_json::Value>(info).ok())
            .and_then(|v| {
                serde_json::from_value::<HashMap<String, String>>(
                    v.get("runtimeSpec")?.get("annotations")?.clone(),
                )
                .ok()
            })
            .unwrap_or_default();
        let label = |k: &str| status.labels.get(k).cloned().unwrap_or_default();
        let ann = |k: &str| annotations_spec.get(k).cloned().unwrap_or_default();
        let or = |a: String, b: String| if a.is_empty() { b } else { a };
        Ok(Target {
            id: status.id.clone(),
            name: or(
                status
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                label("io.kubernetes.container.name"),
            ),
            pod: or(
                label("io.kubernetes.pod.name"),
                ann("io.kubernetes.cri.sandbox-name"),
            ),
            pod_uid: or(
                label("io.kubernetes.pod.uid"),
                ann("io.kubernetes.cri.sandbox-uid"),
            ),
            namespace: or(
                label("io.kubernetes.pod.namespace"),
                ann("io.kubernetes.cri.sandbox-namespace"),
            ),
            image: status
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_ref: self.pullable_ref(&status).await,
            status,
            annotations_spec,
        })
    }

    /// The base image as NAME@DIGEST, which is what a restore on another node can pull
    /// (containerd 2.x's restore pulls `rootfsImageRef`). containerd 1.6/1.7 report the
    /// local image id (a bare config digest) as the container's image_ref; the image's repo
    /// digests give the pullable form. Falls back to the image id when there is none.
    async fn pullable_ref(&self, status: &crate::api::cri::ContainerStatus) -> String {
        let id = status.image_ref.clone();
        if id.contains('@') {
            return id;
        }
        let name = status
            .image
            .as_ref()
            .map(|i| i.image.as_str())
            .unwrap_or("");
        let answer = self
            .images
            .clone()
            .image_status(crate::api::cri::ImageStatusRequest {
                image: Some(crate::api::cri::ImageSpec {
                    image: id.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await;
        let digests = match answer {
            Ok(a) => a
                .into_inner()
                .image
                .map(|i| i.repo_digests)
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(image = %id, error = %e, "ImageStatus failed; recording the image id");
                return id;
            }
        };
        if let Some(d) = pick_repo_digest(name, &digests) {
            return d;
        }
        // An image imported rather than pulled has no repo digest in CRI; containerd's own
        // record of the name still says which manifest it is.
        let repo = repository(name);
        match self.containerd.image_digest(name).await {
            Ok(digest) if !repo.is_empty() && !name.starts_with("sha256:") => {
                format!("{repo}@{digest}")
            }
            _ => id,
        }
    }

    /// Marks the container busy until the guard drops; ABORTED if it already is.
    fn claim(&self, id: &str) -> Result<Busy, Status> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(id.to_owned()) {
            return Err(Status::new(
                Code::Aborted,
                format!(
                    "container {id} is already being checkpointed; try again when that one is done"
                ),
            ));
        }
        let marker = self.inflight_dir().join(id);
        let written = std::fs::create_dir_all(self.inflight_dir())
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

pub(crate) use crate::runtime::runtime_error;

/// The repo digest whose repository is the image's (name without tag or digest), else the
/// first one.
fn pick_repo_digest(image: &str, digests: &[String]) -> Option<String> {
    let repo = repository(image);
    digests
        .iter()
        .find(|d| d.split('@').next() == Some(repo))
        .or_else(|| digests.first())
        .cloned()
}

/// An image name without its tag or digest.
fn repository(image: &str) -> &str {
    let repo = image.split('@').next().unwrap_or(image);
    // A tag follows the last ':' only when no '/' comes after it (a registry port does not).
    match repo.rfind(':') {
        Some(i) if !repo[i..].contains('/') => &repo[..i],
        _ => repo,
    }
}

#[cfg(test)]
mod repo_digest_tests {
    use super::pick_repo_digest;

    #[test]
    fn the_image_repository_is_preferred() {
        let d = vec![
            "other.io/x@sha256:1".to_string(),
            "localhost:5000/ckpt-shim/busybox@sha256:2".to_string(),
        ];
        assert_eq!(
            pick_repo_digest("localhost:5000/ckpt-shim/busybox:latest", &d).as_deref(),
            Some("localhost:5000/ckpt-shim/busybox@sha256:2")
        );
        assert_eq!(
            pick_repo_digest("localhost:5000/ckpt-shim/busybox", &d).as_deref(),
            Some("localhost:5000/ckpt-shim/busybox@sha256:2")
        );
        assert_eq!(
            pick_repo_digest("nope:1", &d).as_deref(),
            Some("other.io/x@sha256:1")
        );
        assert_eq!(pick_repo_digest("nope", &[]), None);
    }
}
