//! CheckpointContainer, done by the shim: every runtime gets the same checks (location,
//! container state, policy, one checkpoint per container at a time), the same timeout,
//! the same archive guarantees (complete or absent, 0600, digest in a sidecar) and an audit
//! record. The checkpoint itself is the runtime's (`native`) where its CRI has one, and the
//! shim's own through containerd's API (`emulated`) where it answers UNIMPLEMENTED.
//!
//! Concurrency: a second checkpoint of a container already being checkpointed is answered
//! ABORTED at once (it does not wait); checkpoints of different containers run in parallel.

pub mod abort;
pub mod archive_writer;
pub mod capability;
pub mod capture;
mod claim;
pub mod emulated;
mod error;
mod leftovers;
pub mod location;
pub mod metadata;
pub mod native;
pub mod policy;
pub mod rootfs;
pub mod sidecar;
mod target;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::Instrument;

use crate::api::containerd::runc::v1::CheckpointOptions;
use crate::api::cri::CheckpointContainerRequest;
use crate::audit::{Action, AuditLog, Record};
use crate::caller::Caller;
use crate::config::CheckpointSettings;
use crate::grpc::Status;
use crate::runtime::containerd::Containerd;
use crate::runtime::unary::Head;
use crate::runtime::upstream::Upstream;
use crate::runtime::{CriClient, ImageClient, Runtime};
pub use capability::{Engine, RuntimeVersion};
use claim::Claims;
pub(crate) use claim::{settle, Busy};
pub use error::{Error, LocationProblem};
pub use target::Target;

pub struct Checkpointer {
    pub settings: CheckpointSettings,
    cri: CriClient,
    images: ImageClient,
    pub(crate) containerd: Containerd,
    /// The shim's own connection for pass-through checkpoints, so one survives its caller.
    pub(crate) upstream: Arc<Upstream>,
    capability: capability::Capability,
    claims: Claims,
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
    /// The capability is detected on the first checkpoint (or by `detect_now`), so a shim
    /// that never checkpoints never calls the runtime on its own.
    pub fn new(
        settings: CheckpointSettings,
        runtime: &Runtime,
        audit: Option<Arc<AuditLog>>,
    ) -> Checkpointer {
        Checkpointer {
            cri: runtime.cri(),
            images: runtime.images(),
            containerd: runtime.containerd().clone(),
            upstream: runtime.own().clone(),
            capability: capability::Capability::new(runtime.cri(), settings.mode),
            claims: Claims::new(&settings.work_dir),
            audit,
            settings,
        }
    }

    /// Removes the temporary archives and staging directories of earlier runs that died.
    pub fn remove_leftovers(&self) {
        leftovers::remove(&self.settings);
    }

    /// See `capability::Capability::detect_now`.
    pub async fn detect_now(&self) {
        self.capability.detect_now().await;
    }

    /// Thaws containers a killed shim may have left frozen mid-checkpoint.
    pub fn recover_inflight(self: Arc<Self>) {
        self.claims.recover_inflight(&self.containerd);
    }

    /// Runs one checkpoint to its end and audits it; the answer is the encoded response.
    pub async fn run(self: Arc<Self>, job: Job) -> Result<Vec<u8>, Error> {
        let start = Instant::now();
        let mut record = Record {
            time: ckpt_format::time::rfc3339(SystemTime::now()),
            action: Action::Checkpoint,
            caller_pid: job.caller.pid,
            caller_uid: job.caller.uid,
            container_id: job.request.container_id.clone(),
            location: job.request.location.clone(),
            ..Default::default()
        };
        let span = tracing::info_span!(
            "checkpoint",
            container = %job.request.container_id,
            pod = tracing::field::Empty,
            namespace = tracing::field::Empty,
        );
        let result = self
            .checkpoint(&job, &mut record)
            .instrument(span.clone())
            .await;
        record.duration_ms = start.elapsed().as_millis() as u64;
        let status = result.as_ref().err().map(Status::of);
        record.conclude(status.as_ref().map_or(Ok(()), Err));
        let runtime_ms = result.as_ref().map_or(0, |r| r.as_millis() as u64);
        async {
            if let Some(audit) = &self.audit {
                if let Err(e) = audit.append(&record).await {
                    tracing::error!(error = %e, "cannot append to the audit log");
                }
            }
            tracing::info!(
                result = record.result.map_or("", |o| o.as_str()), code = %record.code, size = record.size,
                duration_ms = record.duration_ms, runtime_ms, "CheckpointContainer"
            );
        }
        .instrument(span)
        .await;
        result.map(|_| Vec::new())
    }

    /// Returns how long the runtime's part took.
    async fn checkpoint(&self, job: &Job, record: &mut Record) -> Result<Duration, Error> {
        let started = SystemTime::now();
        let request = &job.request;
        let deadline = (request.timeout > 0)
            .then(|| Instant::now() + Duration::from_secs(request.timeout as u64));
        let location = location::validate(&request.location, &self.settings.allowed_dirs)?;
        let target = target::Resolver {
            cri: &self.cri,
            images: &self.images,
            containerd: &self.containerd,
        }
        .resolve(&request.container_id)
        .await?;
        let span = tracing::Span::current();
        span.record("container", target.id.as_str());
        span.record("pod", target.pod.as_str());
        span.record("namespace", target.namespace.as_str());
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
        let mut busy = Some(self.claims.claim(&target.id)?);

        let (mut engine, runtime) = self.capability.engine().await?;
        if engine == Engine::Native && !criu_options.is_empty() {
            return Err(Error::OptionsNeedEmulate(criu_options));
        }
        let mut made = None;
        if engine == Engine::Native {
            match native::run(
                self,
                &job.head,
                &job.original,
                &target,
                &location,
                deadline,
                &mut busy,
            )
            .await?
            {
                native::Outcome::Done(m) => made = Some(m),
                native::Outcome::Unimplemented if self.capability.forced().is_none() => {
                    self.capability.mark_unimplemented().await;
                    engine = Engine::Emulated;
                }
                native::Outcome::Unimplemented => return Err(Error::NativeUnimplemented),
            }
        }
        let made = match made {
            Some(m) => m,
            None => emulated::run(self, &target, &location, options, deadline, &mut busy).await?,
        };
        record.engine = engine.as_str().into();
        record.sha256 = made.written.sha256.clone();
        record.size = made.written.size;
        let side = sidecar::describe(
            &target,
            &location.path,
            (runtime.name, runtime.version),
            engine,
            made.criu_version.clone(),
            criu_options,
            started,
            &made.written,
        );
        // Written and fsynced on a blocking thread, not on the threads that relay calls.
        let path = location.path.clone();
        tokio::task::spawn_blocking(move || sidecar::write(&path, &side))
            .await
            .map_err(|e| Error::Internal(format!("the sidecar task failed: {e}")))?
            .map_err(|source| Error::Sidecar {
                path: location.path.clone(),
                source,
            })?;
        Ok(made.runtime)
    }
}
