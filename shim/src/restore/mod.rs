//! Restore: a CreateContainer whose image is a checkpoint brings the checkpointed process
//! back instead of starting the image's command.
//!
//! Detection (`detect`): the image is an archive path, or a checkpoint image (`image`), or,
//! when configured, the checkpoint-restore-operator's sandbox annotation names an archive.
//! Everything else is not a restore and passes untouched.
//!
//! Before the runtime sees anything, the checkpoint is unpacked into a private staging
//! directory with every member checked (`stage`), its digest compared with its sidecar, its
//! namespace with the new pod's, its bind mounts with the request's. Then either the
//! runtime restores it itself (`native`: containerd 2.1-2.3), or the request is changed to
//! create a container from the checkpoint's base image with the restore annotation, and the
//! runc wrapper (`wrapper`, containerd's `BinaryName`) restores it at StartContainer.
//! The shim checks that containerd is set up for that before, that the annotation reached
//! the spec after CreateContainer, and that the wrapper really restored after
//! StartContainer: a restore never turns into a fresh start unnoticed.

pub mod plan;
pub mod rootfs;
pub mod runtime_config;
pub mod stage;
pub mod wrapper;

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use prost::Message;

use crate::api::cri::{
    ContainerConfig, ContainerStatusRequest, CreateContainerRequest, ImageSpec, ImageStatusRequest,
    PodSandboxStatusRequest, PullImageRequest, RemoveContainerRequest, StatusRequest,
    StopContainerRequest, VersionRequest,
};
use crate::audit::{AuditLog, Record};
use crate::config::{Config, RestoreMode, RestoreSettings};
use crate::grpc::{Code, Status};
use crate::runtime::{runtime_error, CriClient, ImageClient};
use crate::server::peer::Caller;
use plan::{Plan, ANNOTATION};

/// The checkpoint-restore-operator's sandbox annotation, followed by the container name.
pub const OPERATOR_ANNOTATION: &str = "restore.criu.org/checkpoint-path.";

/// Where the checkpoint comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Archive(PathBuf),
    /// A checkpoint image in containerd's store (pulled by kubelet like any image).
    Image(Box<crate::image::CheckpointImage>),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Archive(p) => p.display().to_string(),
            Source::Image(i) => format!("{}@{}", i.name, i.manifest_digest),
        }
    }
}

/// Image ids known not to be checkpoint images. An id is a content digest, so the answer
/// never changes; ordinary CreateContainers then cost one ImageStatus.
const PLAIN_IMAGES_KEPT: usize = 4096;

/// A restore the shim is carrying between CreateContainer and StartContainer.
#[derive(Debug, Clone)]
struct Tracked {
    /// The staging directory (wrapper restores); None when the runtime restores natively.
    dir: Option<PathBuf>,
    record: Record,
}

/// A CreateContainer the shim is about to send on.
pub struct Prepared {
    /// Fields appended to the original message: protobuf merges them, so every field of
    /// the request the shim does not change (newer ones included) stays as it came.
    pub patch: Vec<u8>,
    dir: Option<PathBuf>,
    record: Record,
    started: Instant,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // A caller that hung up between staging and the runtime's answer.
        if let Some(dir) = self.dir.take() {
            let _ = plan::remove_staged(&dir);
        }
    }
}

pub struct Restorer {
    settings: RestoreSettings,
    /// Where CRIU's log of a failed restore is kept (the checkpoint's failed_log_dir).
    failed_log_dir: PathBuf,
    cri: CriClient,
    images: ImageClient,
    audit: Option<Arc<AuditLog>>,
    tracked: Mutex<HashMap<String, Tracked>>,
    /// containerd's API (checkpoint images live in its content store).
    containerd: tonic::transport::Channel,
    containerd_namespace: String,
    plain_images: Mutex<std::collections::HashSet<String>>,
}

impl Restorer {
    pub fn start(config: &Config, audit: Option<Arc<AuditLog>>) -> Arc<Restorer> {
        let r = Restorer {
            settings: config.restore.clone(),
            failed_log_dir: config.checkpoint.failed_log_dir.clone(),
            cri: crate::runtime::cri(&config.runtime_endpoint),
            images: crate::runtime::images(&config.runtime_endpoint),
            audit,
            tracked: Mutex::default(),
            containerd: crate::runtime::channel(&config.runtime_endpoint),
            containerd_namespace: config.checkpoint.containerd_namespace.clone(),
            plain_images: Mutex::default(),
        };
        r.recover();
        Arc::new(r)
    }

    /// Staged checkpoints of containers created before a restart of the shim are picked up
    /// again; half-staged ones (no container) are removed.
    fn recover(&self) {
        let Ok(entries) = std::fs::read_dir(&self.settings.staging_dir) else {
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
                                action: "restore",
                                container_id: id.trim().to_owned(),
                                ..Default::default()
                            },
                        },
                    );
                }
                _ => {
                    tracing::info!(dir = %dir.display(), "removing a staged checkpoint no container uses");
                    let _ = plan::remove_staged(&dir);
                }
            }
        }
    }

    /// The restore source a request names, if it is a restore at all.
    pub async fn detect(&self, request: &CreateContainerRequest) -> Result<Option<Source>, Status> {
        let config = request.config.as_ref();
        if config.is_some_and(|c| c.annotations.contains_key(ANNOTATION)) {
            return Err(Status::invalid_argument(format!(
                "the annotation {ANNOTATION} is reserved for the shim"
            )));
        }
        let image = config
            .and_then(|c| c.image.as_ref())
            .map(|i| i.image.as_str())
            .unwrap_or("");
        // An image reference never starts with '/': such a name is an archive path.
        if image.starts_with('/') {
            return Ok(Some(Source::Archive(PathBuf::from(image))));
        }
        if let Some(image) = self.checkpoint_image(image).await? {
            return Ok(Some(Source::Image(Box::new(image))));
        }
        if self.settings.operator_annotations {
            let name = config
                .and_then(|c| c.metadata.as_ref())
                .map(|m| m.name.as_str())
                .unwrap_or("");
            let key = format!("{OPERATOR_ANNOTATION}{name}");
            // The runtime's view of the sandbox, not the caller's copy of its config.
            let sandbox = self.sandbox(&request.pod_sandbox_id).await?;
            if let Some(path) = sandbox.annotations.get(&key) {
                return Ok(Some(Source::Archive(PathBuf::from(path))));
            }
        }
        Ok(None)
    }

    /// The checkpoint image `image` names, if it is one. kubelet names images by id; the
    /// runtime's ImageStatus turns a name or id into the id and names containerd knows.
    async fn checkpoint_image(
        &self,
        image: &str,
    ) -> Result<Option<crate::image::CheckpointImage>, Status> {
        if image.is_empty() {
            return Ok(None);
        }
        // Detection must never make an ordinary CreateContainer fail: when the runtime
        // cannot tell (no ImageStatus, no containerd API: CRI-O), the call goes on as it came.
        let found = match self.image_status(image).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(image, error = %e.message(), "ImageStatus failed: not checked for a checkpoint image");
                return Ok(None);
            }
        };
        // Not on the node: the runtime answers CreateContainer itself.
        let Some(found) = found else {
            return Ok(None);
        };
        let plain = || self.plain_images.lock().unwrap_or_else(|e| e.into_inner());
        if plain().contains(&found.id) {
            return Ok(None);
        }
        let name = found
            .repo_tags
            .first()
            .or(found.repo_digests.first())
            .cloned()
            .unwrap_or_else(|| found.id.clone());
        let checkpoint =
            crate::image::checkpoint_image(&self.containerd, &self.containerd_namespace, &name)
                .await
                .unwrap_or_else(|why| {
                    tracing::warn!(image, %why, "cannot look into the image for checkpoint annotations (containerd's API); relaying it as an ordinary image");
                    None
                });
        if checkpoint.is_none() {
            let mut plain = plain();
            if plain.len() >= PLAIN_IMAGES_KEPT {
                plain.clear();
            }
            plain.insert(found.id);
        }
        Ok(checkpoint)
    }

    /// The runtime's image of that name or id, if it has one.
    async fn image_status(
        &self,
        image: &str,
    ) -> Result<Option<crate::api::cri::Image>, tonic::Status> {
        let request = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        Ok(self
            .images
            .clone()
            .image_status(request)
            .await?
            .into_inner()
            .image)
    }

    async fn sandbox(&self, id: &str) -> Result<SandboxView, Status> {
        let answer = self
            .cri
            .clone()
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: true,
            })
            .await
            .map_err(|e| runtime_error(e, "PodSandboxStatus of the new container's pod"))?
            .into_inner();
        let status = answer.status.ok_or_else(|| {
            Status::new(Code::NotFound, format!("pod sandbox {id} has no status"))
        })?;
        let meta = status.metadata.unwrap_or_default();
        let handler = answer
            .info
            .get("info")
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|v| v["runtimeHandler"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(SandboxView {
            name: meta.name,
            namespace: meta.namespace,
            annotations: status.annotations,
            handler,
        })
    }

    /// Checks and stages the checkpoint; every refusal is audited.
    pub async fn prepare(
        &self,
        request: &CreateContainerRequest,
        source: Source,
        caller: &Caller,
    ) -> Result<Prepared, Status> {
        let started = Instant::now();
        let name = request
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let mut record = Record {
            time: crate::timefmt::rfc3339(SystemTime::now()),
            action: "restore",
            caller_pid: caller.pid,
            caller_uid: caller.uid,
            container: name.clone(),
            location: source.describe(),
            ..Default::default()
        };
        self.sweep().await;
        let result = self
            .stage_checked(request, &source, &name, &mut record)
            .await;
        match result {
            Ok((dir, patch)) => Ok(Prepared {
                patch,
                dir,
                record,
                started,
            }),
            Err(status) => {
                self.finish(&mut record, started, Err(&status)).await;
                Err(status)
            }
        }
    }

    async fn stage_checked(
        &self,
        request: &CreateContainerRequest,
        source: &Source,
        name: &str,
        record: &mut Record,
    ) -> Result<(Option<PathBuf>, Vec<u8>), Status> {
        let sandbox = self.sandbox(&request.pod_sandbox_id).await?;
        record.pod = sandbox.name.clone();
        record.namespace = sandbox.namespace.clone();

        let dir = self.new_staging_dir()?;
        let guard = RemoveOnDrop(Some(dir.clone()));
        let archive = match source {
            Source::Archive(path) => self.confined(path)?,
            Source::Image(image) => {
                // The layer holds the archive's members: it is read as an archive. The
                // content store checked its digest against the manifest.
                let layer = dir.join("image-layer");
                image.fetch_layer(&layer).await.map_err(|why| {
                    let code = if image.layers.len() == 1 {
                        Code::Internal
                    } else {
                        Code::InvalidArgument
                    };
                    Status::new(code, format!("checkpoint image {}: {why}", image.name))
                })?;
                layer
            }
        };
        let t_stage = Instant::now();
        let staged = {
            let (archive, dir, limits) = (archive.clone(), dir.clone(), self.limits());
            tokio::task::spawn_blocking(move || stage::stage(&archive, &dir, &limits))
                .await
                .map_err(|e| Status::internal(format!("the staging task failed: {e}")))?
        };
        if let Source::Image(_) = source {
            let _ = std::fs::remove_file(&archive);
        }
        let staged = staged.map_err(|why| {
            Status::invalid_argument(format!("checkpoint archive refused: {why}"))
        })?;
        tracing::info!(
            source = %source.describe(),
            bytes = staged.size,
            ms = t_stage.elapsed().as_millis() as u64,
            skipped = ?staged.skipped,
            "checkpoint unpacked and checked"
        );
        record.sha256 = staged.sha256.clone();
        record.size = staged.size;
        if let Source::Archive(_) = source {
            self.check_sidecar(&archive, &staged)?;
        }
        self.check_namespace(&staged, &sandbox)?;
        check_mounts(&staged, request)?;

        let native = self.native(&staged, &sandbox.handler).await?;
        record.engine = if native { "native" } else { "wrapper" }.into();
        if native {
            // The runtime unpacks the archive itself; the staged copy only served the checks.
            drop(guard);
            return Ok((None, Vec::new()));
        }
        if self.settings.mode == RestoreMode::Wrapper {
            self.wrapper_ready(&sandbox.handler).await?;
        }
        let base = staged.base_image();
        if base.is_empty() {
            return Err(Status::invalid_argument(
                "checkpoint archive refused: config.dump names no base image",
            ));
        }
        self.ensure_image(&base).await?;
        let plan = Plan {
            sandbox_id: request.pod_sandbox_id.clone(),
            container_name: name.to_owned(),
            source: source.describe(),
            watchdog_seconds: self.settings.watchdog_seconds,
            criu_options: match source {
                Source::Archive(_) => criu_options(&archive),
                Source::Image(_) => Vec::new(),
            },
        };
        write_private(
            &plan::plan_path(&dir),
            &serde_json::to_vec_pretty(&plan).unwrap_or_default(),
        )
        .map_err(|e| Status::internal(format!("writing the restore plan: {e}")))?;
        let patch = CreateContainerRequest {
            config: Some(ContainerConfig {
                image: Some(ImageSpec {
                    image: base,
                    ..Default::default()
                }),
                annotations: [(ANNOTATION.to_owned(), dir.display().to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        guard.keep();
        Ok((Some(dir), patch))
    }

    fn limits(&self) -> stage::Limits {
        stage::Limits {
            max_member_bytes: self.settings.max_member_bytes,
            max_total_bytes: self.settings.max_archive_bytes,
        }
    }

    /// The archive, symlinks resolved, inside one of the allowed directories.
    fn confined(&self, path: &Path) -> Result<PathBuf, Status> {
        let real = path.canonicalize().map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                Code::NotFound
            } else {
                Code::InvalidArgument
            };
            Status::new(code, format!("checkpoint archive {}: {e}", path.display()))
        })?;
        let inside = self.settings.allowed_dirs.iter().any(|d| {
            d.canonicalize()
                .map(|d| real.starts_with(d))
                .unwrap_or(false)
        });
        if !inside {
            return Err(Status::new(
                Code::PermissionDenied,
                format!(
                    "checkpoint archive {} is outside the directories restores may read ({})",
                    path.display(),
                    self.settings
                        .allowed_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if !real.is_file() {
            return Err(Status::invalid_argument(format!(
                "checkpoint archive {} is not a file",
                path.display()
            )));
        }
        Ok(real)
    }

    fn new_staging_dir(&self) -> Result<PathBuf, Status> {
        let root = &self.settings.staging_dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Status::internal(format!("staging directory {}: {e}", root.display())))?;
        let token = format!(
            "{:x}-{:x}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            std::process::id()
        );
        let dir = root.join(token);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Status::internal(format!("staging directory {}: {e}", dir.display())))?;
        Ok(dir)
    }

    fn check_sidecar(&self, archive: &Path, staged: &stage::Staged) -> Result<(), Status> {
        let path = crate::checkpoint::sidecar::path_for(archive);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.settings.require_sidecar {
                    return Err(Status::new(
                        Code::PermissionDenied,
                        format!(
                            "checkpoint archive {} has no sidecar {} (restore.require_sidecar)",
                            archive.display(),
                            path.display()
                        ),
                    ));
                }
                return Ok(());
            }
            Err(e) => return Err(Status::internal(format!("{}: {e}", path.display()))),
        };
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            Status::invalid_argument(format!("sidecar {} is not valid JSON: {e}", path.display()))
        })?;
        let want = v["sha256"].as_str().unwrap_or("");
        if want != staged.sha256 || v["size"].as_u64() != Some(staged.size) {
            return Err(Status::new(
                Code::PermissionDenied,
                format!(
                    "checkpoint archive {} does not match its sidecar: sha256 {} ({} bytes), sidecar says {want} ({} bytes)",
                    archive.display(),
                    staged.sha256,
                    staged.size,
                    v["size"]
                ),
            ));
        }
        Ok(())
    }

    fn check_namespace(&self, staged: &stage::Staged, sandbox: &SandboxView) -> Result<(), Status> {
        if self.settings.allow_cross_namespace {
            return Ok(());
        }
        let from = staged.namespace();
        if from != sandbox.namespace {
            return Err(Status::new(
                Code::PermissionDenied,
                format!(
                    "the checkpoint is of a container in namespace {from:?}; restoring it into namespace {:?} is not allowed (restore.allow_cross_namespace)",
                    sandbox.namespace
                ),
            ));
        }
        Ok(())
    }

    /// Whether the runtime restores this checkpoint itself. `auto` takes the wrapper when
    /// containerd runs it (every version, every archive layout), else the runtime's own
    /// restore where it has one: containerd 2.1 cannot restore even its own archives when
    /// it would have to look its base image up by id (it tries to pull the id).
    async fn native(&self, staged: &stage::Staged, handler: &str) -> Result<bool, Status> {
        match self.settings.mode {
            RestoreMode::Wrapper => Ok(false),
            RestoreMode::Native => Ok(true),
            RestoreMode::Auto => {
                let wrapper = self.wrapper_ready(handler).await;
                if wrapper.is_ok() {
                    return Ok(false);
                }
                let v = self
                    .cri
                    .clone()
                    .version(VersionRequest::default())
                    .await
                    .map_err(|e| runtime_error(e, "the runtime's Version failed"))?
                    .into_inner();
                // containerd ignores deleted.files: such an archive would get its deleted
                // files back.
                if restores_natively(&v.runtime_name, &v.runtime_version)
                    && staged.has_status
                    && !staged.has_deleted_files
                {
                    return Ok(true);
                }
                wrapper.map(|()| false)
            }
        }
    }

    /// At start and after every reconnect: says in the log whether restores can use the
    /// wrapper (requests are checked again each time; this only tells the admin early).
    pub async fn check_runtime(&self) {
        if self.settings.mode == RestoreMode::Native {
            return;
        }
        match self.wrapper_ready("").await {
            Ok(()) => tracing::info!("restores ready: containerd runs the runc wrapper and passes the restore annotation"),
            Err(status) if status.code == Code::FailedPrecondition => {
                tracing::warn!(reason = %status.message, "restores through the wrapper are not possible on this runtime until it is configured; they will be refused")
            }
            Err(status) => tracing::debug!(%status, "the runtime's set-up for restores is not known yet"),
        }
    }

    /// FAILED_PRECONDITION naming the missing setting unless containerd runs the wrapper
    /// with the annotation passed through, for the pod's runtime handler.
    async fn wrapper_ready(&self, handler: &str) -> Result<(), Status> {
        let answer = self
            .cri
            .clone()
            .status(StatusRequest { verbose: true })
            .await
            .map_err(|e| runtime_error(e, "the runtime's Status failed"))?
            .into_inner();
        let config = answer
            .info
            .get("config")
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .unwrap_or_default();
        runtime_config::check(&config, handler, &self.settings.wrapper_binary).map_err(|why| {
            Status::new(
                Code::FailedPrecondition,
                format!("cannot restore on this runtime: {why}"),
            )
        })
    }

    /// Pulls the base image if the node does not have it (a checkpoint moved from another
    /// node brings only itself).
    async fn ensure_image(&self, image: &str) -> Result<(), Status> {
        let present = self
            .image_status(image)
            .await
            .map_err(|e| runtime_error(e, "ImageStatus of the checkpoint's base image"))?
            .is_some();
        if present {
            return Ok(());
        }
        tracing::info!(image, "pulling the checkpoint's base image");
        self.images
            .clone()
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                runtime_error(e, &format!("pulling the checkpoint's base image {image}"))
            })?;
        Ok(())
    }

    /// CreateContainer succeeded: for wrapper restores, the annotation must be in the new
    /// container's spec, or containerd dropped it and StartContainer would start it fresh.
    pub async fn created(&self, mut prepared: Prepared, container_id: &str) -> Result<(), Status> {
        prepared.record.container_id = container_id.to_owned();
        let dir = prepared.dir.take();
        if let Some(dir) = &dir {
            if let Err(status) = self.annotation_arrived(container_id, dir).await {
                let _ = self
                    .cri
                    .clone()
                    .remove_container(RemoveContainerRequest {
                        container_id: container_id.to_owned(),
                    })
                    .await;
                let _ = plan::remove_staged(dir);
                self.finish(&mut prepared.record, prepared.started, Err(&status))
                    .await;
                return Err(status);
            }
            let _ = write_private(&dir.join("container-id"), container_id.as_bytes());
        }
        prepared.record.duration_ms = prepared.started.elapsed().as_millis() as u64;
        self.lock().insert(
            container_id.to_owned(),
            Tracked {
                dir,
                record: prepared.record.clone(),
            },
        );
        Ok(())
    }

    async fn annotation_arrived(&self, id: &str, dir: &Path) -> Result<(), Status> {
        let answer = self
            .cri
            .clone()
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: true,
            })
            .await
            .map_err(|e| runtime_error(e, "ContainerStatus of the restored container"))?
            .into_inner();
        let info: serde_json::Value = answer
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        let got = info["runtimeSpec"]["annotations"][ANNOTATION].as_str();
        if got != Some(&dir.display().to_string()) {
            return Err(Status::new(
                Code::FailedPrecondition,
                format!(
                    "containerd dropped the restore annotation {ANNOTATION} from the container's spec: add it to the runtime's container_annotations; the container was removed so it cannot start fresh"
                ),
            ));
        }
        Ok(())
    }

    /// CreateContainer failed: nothing of the restore may stay.
    pub async fn create_failed(&self, mut prepared: Prepared, status: &Status) {
        if let Some(dir) = prepared.dir.take() {
            let _ = plan::remove_staged(&dir);
        }
        self.finish(&mut prepared.record, prepared.started, Err(status))
            .await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether StartContainer of `id` finishes a restore.
    pub fn is_restore(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// StartContainer answered: a wrapper restore must have left the wrapper's outcome, or
    /// the container started fresh and is stopped.
    pub async fn started(
        &self,
        id: &str,
        answer: Result<(), Status>,
        took: Instant,
    ) -> Result<(), Status> {
        let Some(tracked) = self.lock().get(id).cloned() else {
            return answer;
        };
        let mut record = tracked.record.clone();
        record.time = crate::timefmt::rfc3339(SystemTime::now());
        let result = match (&answer, &tracked.dir) {
            (Err(status), Some(dir)) => {
                let kept = self.keep_log(id, dir);
                let why = std::fs::read_to_string(dir.join("error")).unwrap_or_default();
                let status = &Status::new(status.code, format!("{}{kept}", status.message));
                Err(if why.is_empty() || status.message.contains(why.trim()) {
                    status.clone()
                } else {
                    Status::new(status.code, format!("{}: {why}", status.message))
                })
            }
            (Err(status), None) => Err(status.clone()),
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
                    Err(Status::new(
                        Code::FailedPrecondition,
                        "the container started without being restored (the runc wrapper did not run: check containerd's BinaryName); it was stopped",
                    ))
                }
            },
        };
        self.finish(&mut record, took, result.as_ref().map(|_| ()))
            .await;
        result
    }

    /// Copies CRIU's restore log out of the staging directory (removed with the container);
    /// returns a note for the error message.
    fn keep_log(&self, id: &str, dir: &Path) -> String {
        let log = dir.join(plan::WORK_DIR).join("restore.log");
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

    /// RemoveContainer answered OK: the staged checkpoint goes with the container.
    pub fn removed(&self, id: &str) {
        if let Some(t) = self.lock().remove(id) {
            if let Some(dir) = t.dir {
                if let Err(e) = plan::remove_staged(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a staged checkpoint");
                }
            }
        }
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
                        if let Err(e) = plan::remove_staged(&dir) {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a staged checkpoint");
                        }
                    });
                }
            }
        }
    }

    async fn finish(&self, record: &mut Record, started: Instant, result: Result<(), &Status>) {
        record.duration_ms = started.elapsed().as_millis() as u64;
        record.conclude(result);
        if let Err(status) = result {
            tracing::warn!(container = %record.container, source = %record.location, %status, "restore refused or failed");
        }
        if let Some(audit) = &self.audit {
            if let Err(e) = audit.append(record).await {
                tracing::error!(error = %e, "cannot append to the audit log");
            }
        }
    }
}

struct SandboxView {
    name: String,
    namespace: String,
    annotations: HashMap<String, String>,
    handler: String,
}

/// Removes a staging directory unless the restore goes on.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = plan::remove_staged(&dir);
        }
    }
}

/// containerd 2.1 to 2.3 restore checkpoint archives in CRI; 2.4 removed it; 1.x never had it.
pub fn restores_natively(name: &str, version: &str) -> bool {
    if name != "containerd" {
        return false;
    }
    let v = version.trim_start_matches('v');
    ["2.1.", "2.2.", "2.3."].iter().any(|p| v.starts_with(p))
}

/// The request must mount every path the checkpointed container had bind-mounted.
fn check_mounts(staged: &stage::Staged, request: &CreateContainerRequest) -> Result<(), Status> {
    let have: Vec<&str> = request
        .config
        .as_ref()
        .map(|c| c.mounts.iter().map(|m| m.container_path.as_str()).collect())
        .unwrap_or_default();
    let missing: Vec<String> = staged
        .bind_mounts()
        .into_iter()
        .filter(|d| !have.contains(&d.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(Status::invalid_argument(format!(
            "the checkpointed container had bind mounts the request does not have: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The CRIU options the checkpoint was taken with, from its sidecar.
fn criu_options(archive: &Path) -> Vec<String> {
    std::fs::read(crate::checkpoint::sidecar::path_for(archive))
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["criu_options"].as_array().map(|a| {
                a.iter()
                    .filter_map(|o| o.as_str().map(str::to_owned))
                    .filter(|o| crate::config::CRIU_OPTIONS.contains(&o.as_str()))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_runtimes_restore_natively() {
        assert!(restores_natively("containerd", "v2.1.9"));
        assert!(restores_natively("containerd", "2.3.0"));
        assert!(!restores_natively("containerd", "v2.4.0"));
        assert!(!restores_natively("containerd", "1.6.20~ds1"));
        assert!(!restores_natively("cri-o", "1.31.0"));
    }
}
