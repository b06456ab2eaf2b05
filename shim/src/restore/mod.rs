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

pub mod capability;
pub mod detect;
mod error;
pub mod policy;
pub mod runtime_config;
pub mod stage;
mod staging_dir;
mod track;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tracing::Instrument;

use crate::api::cri::{ContainerConfig, CreateContainerRequest, ImageSpec, PullImageRequest};
use crate::audit::{Action, AuditLog, Record};
use crate::caller::Caller;
use crate::config::{RestoreMode, RestoreSettings};
use crate::grpc::Status;
use crate::runtime::{pod, CallFailed, CriClient, ImageClient, Runtime};
pub use capability::{native_restore, Engine, NativeRestore};
use ckpt_format::plan::{self, Plan, ANNOTATION};
pub use detect::{Source, OPERATOR_ANNOTATION};
pub use error::Error;
use staging_dir::{write_private, RemoveOnDrop};
use track::{Tracked, Tracker};

/// A CreateContainer the shim is about to send on.
pub struct Prepared {
    /// The fields the restore changes, merged over the original message (`grpc::patch`):
    /// every field of the request the shim does not change (newer ones included) stays as
    /// it came.
    pub changes: CreateContainerRequest,
    /// The restore's span, carried to CreateContainer's answer.
    span: tracing::Span,
    dir: Option<PathBuf>,
    record: Record,
    started: Instant,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // A caller that hung up between staging and the runtime's answer.
        if let Some(dir) = self.dir.take() {
            staging_dir::remove_soon(dir);
        }
    }
}

pub struct Restorer {
    settings: RestoreSettings,
    cri: CriClient,
    images: ImageClient,
    detector: detect::Detector,
    setup: capability::RuntimeSetup,
    tracker: Tracker,
    audit: Option<Arc<AuditLog>>,
}

impl Restorer {
    pub fn new(
        settings: RestoreSettings,
        failed_log_dir: PathBuf,
        runtime: &Runtime,
        audit: Option<Arc<AuditLog>>,
    ) -> Restorer {
        Restorer {
            detector: detect::Detector::new(
                runtime.cri(),
                runtime.images(),
                runtime.containerd().clone(),
                settings.operator_annotations,
            ),
            setup: capability::RuntimeSetup::new(
                runtime.cri(),
                settings.mode,
                settings.wrapper_binary.clone(),
            ),
            tracker: Tracker::new(runtime.cri(), failed_log_dir),
            cri: runtime.cri(),
            images: runtime.images(),
            audit,
            settings,
        }
    }

    /// Staged checkpoints of containers created before a restart of the shim are picked up
    /// again; half-staged ones (no container) are removed.
    pub fn recover(&self) {
        self.tracker.recover(&self.settings.staging_dir);
    }

    /// The restore source a request names, if it is a restore at all.
    pub async fn detect(&self, request: &CreateContainerRequest) -> Result<Option<Source>, Error> {
        self.detector.detect(request).await
    }

    /// See `capability::RuntimeSetup::check_runtime`.
    pub async fn check_runtime(&self) {
        self.setup.check_runtime().await;
    }

    /// Checks and stages the checkpoint; every refusal is audited.
    pub async fn prepare(
        &self,
        request: &CreateContainerRequest,
        source: Source,
        caller: &Caller,
    ) -> Result<Prepared, Error> {
        let started = Instant::now();
        let name = request
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let mut record = Record {
            time: ckpt_format::time::rfc3339(SystemTime::now()),
            action: Action::Restore,
            caller_pid: caller.pid,
            caller_uid: caller.uid,
            container: name.clone(),
            location: source.describe(),
            ..Default::default()
        };
        let span = tracing::info_span!(
            "restore",
            container = %name,
            pod = tracing::field::Empty,
            namespace = tracing::field::Empty,
        );
        self.sweep().await;
        let staged = match staging_dir::create(&self.settings.staging_dir) {
            Ok(dir) => {
                // Removes it should this call be abandoned half-way.
                let guard = RemoveOnDrop::new(dir.clone());
                let result = self
                    .stage_checked(request, &source, &name, &dir, &mut record)
                    .instrument(span.clone())
                    .await;
                guard.keep();
                match result {
                    Ok((true, changes)) => Ok((Some(dir), changes)),
                    Ok((false, changes)) => {
                        staging_dir::remove(dir).await;
                        Ok((None, changes))
                    }
                    Err(e) => {
                        staging_dir::remove(dir).await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        match staged {
            Ok((dir, changes)) => Ok(Prepared {
                changes,
                span,
                dir,
                record,
                started,
            }),
            Err(e) => {
                self.finish(&mut record, started, Err(&e))
                    .instrument(span)
                    .await;
                Err(e)
            }
        }
    }

    async fn stage_checked(
        &self,
        request: &CreateContainerRequest,
        source: &Source,
        name: &str,
        dir: &Path,
        record: &mut Record,
    ) -> Result<(bool, CreateContainerRequest), Error> {
        let sandbox = pod::record(&self.cri, &request.pod_sandbox_id)
            .await?
            .ok_or_else(|| Error::NoSandbox(request.pod_sandbox_id.clone()))?;
        let span = tracing::Span::current();
        span.record("pod", sandbox.name.as_str());
        span.record("namespace", sandbox.namespace.as_str());
        record.pod = sandbox.name.clone();
        record.namespace = sandbox.namespace.clone();

        let archive = match source {
            Source::Archive(path) => policy::confined(path, &self.settings.allowed_dirs)?,
            Source::Image(image) => {
                // The layer holds the archive's members: it is read as an archive. The
                // content store checked its digest against the manifest.
                let layer = dir.join("image-layer");
                image
                    .fetch_layer(&layer)
                    .await
                    .map_err(|why| Error::Image {
                        name: image.name.clone(),
                        why: why.to_string(),
                        unreadable_layout: image.layers.len() != 1,
                    })?;
                layer
            }
        };
        let t_stage = Instant::now();
        let staged = {
            let (archive, dir, limits) = (archive.clone(), dir.to_owned(), self.limits());
            // The image layer is a copy made for staging: it goes once staged.
            let layer_copy = matches!(source, Source::Image(_));
            tokio::task::spawn_blocking(move || {
                let staged = stage::stage(&archive, &dir, &limits);
                if layer_copy {
                    let _ = std::fs::remove_file(&archive);
                }
                staged
            })
            .await
            .map_err(|e| Error::Internal(format!("the staging task failed: {e}")))?
        };
        let staged = staged.map_err(|why| Error::Refused(why.to_string()))?;
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
            policy::check_sidecar(&archive, &staged, self.settings.require_sidecar)?;
        }
        policy::check_namespace(&staged, &sandbox, self.settings.allow_cross_namespace)?;
        policy::check_mounts(&staged, request)?;

        let engine = self.setup.engine(&staged, &sandbox.handler).await?;
        record.engine = engine.as_str().into();
        if engine == Engine::Native {
            // The runtime unpacks the archive itself; the staged copy only served the checks.
            return Ok((false, CreateContainerRequest::default()));
        }
        if self.settings.mode == RestoreMode::Wrapper {
            self.setup.wrapper_ready(&sandbox.handler).await?;
        }
        let base = staged.base_image();
        if base.is_empty() {
            return Err(Error::NoBaseImage);
        }
        self.ensure_image(&base).await?;
        let plan = Plan {
            sandbox_id: request.pod_sandbox_id.clone(),
            container_name: name.to_owned(),
            source: source.describe(),
            watchdog_seconds: self.settings.watchdog_seconds,
            criu_options: match source {
                Source::Archive(_) => policy::criu_options(&archive),
                Source::Image(_) => Vec::new(),
            },
        };
        write_private(
            plan::plan_path(dir),
            serde_json::to_vec_pretty(&plan).unwrap_or_default(),
        )
        .await
        .map_err(|e| Error::Internal(format!("writing the restore plan: {e}")))?;
        let changes = CreateContainerRequest {
            config: Some(ContainerConfig {
                image: Some(ImageSpec {
                    image: base,
                    ..Default::default()
                }),
                annotations: [(ANNOTATION.to_owned(), dir.display().to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok((true, changes))
    }

    fn limits(&self) -> stage::Limits {
        stage::Limits {
            max_member_bytes: self.settings.max_member_bytes,
            max_total_bytes: self.settings.max_archive_bytes,
        }
    }

    /// Pulls the base image if the node does not have it (a checkpoint moved from another
    /// node brings only itself).
    async fn ensure_image(&self, image: &str) -> Result<(), Error> {
        let present = detect::image_status(&self.images, image)
            .await
            .map_err(|e| CallFailed::new(e, "ImageStatus of the checkpoint's base image"))?
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
                CallFailed::new(e, &format!("pulling the checkpoint's base image {image}"))
            })?;
        Ok(())
    }

    /// CreateContainer succeeded: for wrapper restores, the annotation must be in the new
    /// container's spec, or containerd dropped it and StartContainer would start it fresh.
    pub async fn created(&self, prepared: Prepared, container_id: &str) -> Result<(), Error> {
        let span = prepared.span.clone();
        self.confirm_created(prepared, container_id)
            .instrument(span)
            .await
    }

    async fn confirm_created(
        &self,
        mut prepared: Prepared,
        container_id: &str,
    ) -> Result<(), Error> {
        prepared.record.container_id = container_id.to_owned();
        let dir = prepared.dir.take();
        if let Some(dir) = &dir {
            if let Err(e) = self.tracker.annotation_arrived(container_id, dir).await {
                self.tracker.remove_container(container_id).await;
                staging_dir::remove(dir.clone()).await;
                self.finish(&mut prepared.record, prepared.started, Err(&e))
                    .await;
                return Err(e);
            }
            let _ = write_private(dir.join("container-id"), container_id.as_bytes().to_vec()).await;
        }
        prepared.record.duration_ms = prepared.started.elapsed().as_millis() as u64;
        self.tracker.insert(
            container_id,
            Tracked {
                dir,
                record: prepared.record.clone(),
            },
        );
        Ok(())
    }

    /// CreateContainer failed: nothing of the restore may stay.
    pub async fn create_failed(&self, mut prepared: Prepared, status: &Status) {
        if let Some(dir) = prepared.dir.take() {
            staging_dir::remove(dir).await;
        }
        let span = prepared.span.clone();
        let failed = Error::Answer(status.clone());
        self.finish(&mut prepared.record, prepared.started, Err(&failed))
            .instrument(span)
            .await;
    }

    /// Whether StartContainer of `id` finishes a restore.
    pub fn is_restore(&self, id: &str) -> bool {
        self.tracker.is_restore(id)
    }

    /// StartContainer answered: the restore is confirmed (or refused) and audited.
    pub async fn started(
        &self,
        id: &str,
        answer: Result<(), Status>,
        took: Instant,
    ) -> Result<(), Error> {
        let Some(tracked) = self.tracker.get(id) else {
            return answer.map_err(Error::Answer);
        };
        let span = tracing::info_span!(
            "restore",
            container = %tracked.record.container,
            pod = %tracked.record.pod,
            namespace = %tracked.record.namespace,
        );
        async {
            let mut record = tracked.record.clone();
            record.time = ckpt_format::time::rfc3339(SystemTime::now());
            let result = self.tracker.outcome(id, &tracked, answer).await;
            self.finish(&mut record, took, result.as_ref().map(|_| ()))
                .await;
            result
        }
        .instrument(span)
        .await
    }

    /// RemoveContainer answered OK: the staged checkpoint goes with the container, before
    /// the caller hears so.
    pub async fn removed(&self, id: &str) {
        if let Some(dir) = self.tracker.untrack(id) {
            staging_dir::remove(dir).await;
        }
    }

    /// Staged checkpoints of containers that are gone without a RemoveContainer (a
    /// RemovePodSandbox takes its containers along) are removed too. Runs before each restore
    /// and every few minutes.
    pub async fn sweep(&self) {
        self.tracker.sweep().await;
    }

    async fn finish(&self, record: &mut Record, started: Instant, result: Result<(), &Error>) {
        record.duration_ms = started.elapsed().as_millis() as u64;
        let status = result.err().map(Status::of);
        record.conclude(status.as_ref().map_or(Ok(()), Err));
        if let Some(status) = &status {
            tracing::warn!(container = %record.container, source = %record.location, %status, "restore refused or failed");
        }
        if let Some(audit) = &self.audit {
            if let Err(e) = audit.append(record).await {
                tracing::error!(error = %e, "cannot append to the audit log");
            }
        }
    }
}
