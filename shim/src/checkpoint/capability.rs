//! Which way checkpoints are done on the runtime behind the shim: passed to the runtime's
//! own CRI CheckpointContainer (`Engine::Native`), or done by the shim through containerd's
//! API (`Engine::Emulated`) where the CRI answers UNIMPLEMENTED. `checkpoint.mode` can force
//! either.

use super::error::Error;
use crate::api::cri::CheckpointContainerRequest;
use crate::config::CheckpointMode;
use crate::runtime::CallFailed;
pub use crate::runtime::RuntimeVersion;
use crate::runtime::{self, CriClient};

/// Who makes the checkpoint: the sidecar's `engine` (`Unknown` is never chosen).
pub use ckpt_format::sidecar::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Detected {
    runtime: RuntimeVersion,
    engine: Engine,
}

pub struct Capability {
    cri: CriClient,
    mode: CheckpointMode,
    detected: tokio::sync::Mutex<Option<Detected>>,
}

impl Capability {
    pub fn new(cri: CriClient, mode: CheckpointMode) -> Self {
        Capability {
            cri,
            mode,
            detected: tokio::sync::Mutex::new(None),
        }
    }

    /// The engine `checkpoint.mode` forces, if any.
    pub fn forced(&self) -> Option<Engine> {
        match self.mode {
            CheckpointMode::Auto => None,
            CheckpointMode::Native => Some(Engine::Native),
            CheckpointMode::Emulate => Some(Engine::Emulated),
        }
    }

    /// The engine, and the runtime's name and version. Version is asked on every checkpoint
    /// (it is cheap and the sidecar needs it); the capability is probed on the first
    /// checkpoint and again whenever the version changes (a reconnect to a restarted or
    /// upgraded runtime).
    pub async fn engine(&self) -> Result<(Engine, RuntimeVersion), Error> {
        let runtime = runtime::version(&self.cri)
            .await
            .map_err(|e| CallFailed::new(e, "the runtime's Version failed"))?;
        let mut detected = self.detected.lock().await;
        if let Some(d) = detected.as_ref().filter(|d| d.runtime == runtime) {
            return Ok((self.forced().unwrap_or(d.engine), runtime));
        }
        let engine = match self.forced() {
            Some(e) => e,
            None => self.probe().await?,
        };
        tracing::info!(runtime = %runtime.name, version = %runtime.version, native = engine == Engine::Native, "checkpoint capability detected");
        *detected = Some(Detected {
            runtime: runtime.clone(),
            engine,
        });
        Ok((engine, runtime))
    }

    /// CheckpointContainer for no container: UNIMPLEMENTED where the CRI has none, an
    /// argument or not-found error where it has one. Touches nothing.
    async fn probe(&self) -> Result<Engine, Error> {
        match self
            .cri
            .clone()
            .checkpoint_container(CheckpointContainerRequest::default())
            .await
        {
            Err(e) if e.code() == tonic::Code::Unimplemented => Ok(Engine::Emulated),
            Err(e) if e.code() == tonic::Code::Unavailable => {
                Err(CallFailed::new(e, "probing CheckpointContainer").into())
            }
            _ => Ok(Engine::Native),
        }
    }

    /// Detects the capability at once, then again after every new connection to the runtime
    /// (it may have been restarted or upgraded), so the first checkpoint does not pay for
    /// the probe and a changed runtime is noticed before one is asked for.
    pub async fn detect_now(&self) {
        *self.detected.lock().await = None;
        if let Err(status) = self.engine().await {
            tracing::info!(status = %status, "checkpoint capability not detected yet: the runtime does not answer; trying again when it is connected");
        }
    }

    /// The runtime answered a passed-through checkpoint UNIMPLEMENTED after all.
    pub async fn mark_unimplemented(&self) {
        if let Some(d) = self.detected.lock().await.as_mut() {
            d.engine = Engine::Emulated;
        }
    }
}
