//! Who restores: the runtime itself (`Engine::Native`, containerd 2.1-2.3) or the runc
//! wrapper containerd runs as `BinaryName` (`Engine::Wrapper`, every containerd set up for
//! it). `restore.mode` can force either; the runtime's set-up is checked before each
//! wrapper restore, and logged at start and after every reconnect.

use super::error::Error;
use super::{runtime_config, stage};
use crate::api::cri::StatusRequest;
use crate::config::RestoreMode;
use crate::runtime::CallFailed;
use crate::runtime::{self, CriClient};

/// Who brings the checkpointed process back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The runtime's own restore through CreateContainer.
    Native,
    /// The shim's runc wrapper, at StartContainer.
    Wrapper,
}

impl Engine {
    /// The name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Native => "native",
            Engine::Wrapper => "wrapper",
        }
    }
}

pub struct RuntimeSetup {
    cri: CriClient,
    mode: RestoreMode,
    wrapper_binary: String,
}

impl RuntimeSetup {
    pub fn new(cri: CriClient, mode: RestoreMode, wrapper_binary: String) -> Self {
        RuntimeSetup {
            cri,
            mode,
            wrapper_binary,
        }
    }

    /// Whether the runtime restores this checkpoint itself. `auto` takes the wrapper when
    /// containerd runs it (every version, every archive layout), else the runtime's own
    /// restore where it has one: containerd 2.1 cannot restore even its own archives when
    /// it would have to look its base image up by id (it tries to pull the id).
    pub async fn engine(&self, staged: &stage::Staged, handler: &str) -> Result<Engine, Error> {
        match self.mode {
            RestoreMode::Wrapper => Ok(Engine::Wrapper),
            RestoreMode::Native => Ok(Engine::Native),
            RestoreMode::Auto => {
                let wrapper = self.wrapper_ready(handler).await;
                if wrapper.is_ok() {
                    return Ok(Engine::Wrapper);
                }
                let v = runtime::version(&self.cri)
                    .await
                    .map_err(|e| CallFailed::new(e, "the runtime's Version failed"))?;
                // containerd ignores deleted.files: such an archive would get its deleted
                // files back.
                if restores_natively(&v.name, &v.version)
                    && staged.has_status
                    && !staged.has_deleted_files
                {
                    return Ok(Engine::Native);
                }
                wrapper.map(|()| Engine::Wrapper)
            }
        }
    }

    /// At start and after every reconnect: says in the log whether restores can use the
    /// wrapper (requests are checked again each time; this only tells the admin early).
    pub async fn check_runtime(&self) {
        if self.mode == RestoreMode::Native {
            return;
        }
        match self.wrapper_ready("").await {
            Ok(()) => tracing::info!("restores ready: containerd runs the runc wrapper and passes the restore annotation"),
            Err(e @ Error::NotSetUp(_)) => {
                tracing::warn!(reason = %e, "restores through the wrapper are not possible on this runtime until it is configured; they will be refused")
            }
            Err(e) => tracing::debug!(error = %e, "the runtime's set-up for restores is not known yet"),
        }
    }

    /// FAILED_PRECONDITION naming the missing setting unless containerd runs the wrapper
    /// with the annotation passed through, for the pod's runtime handler.
    pub async fn wrapper_ready(&self, handler: &str) -> Result<(), Error> {
        let answer = self
            .cri
            .clone()
            .status(StatusRequest { verbose: true })
            .await
            .map_err(|e| CallFailed::new(e, "the runtime's Status failed"))?
            .into_inner();
        let config = answer
            .info
            .get("config")
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .unwrap_or_default();
        Ok(runtime_config::check(
            &config,
            handler,
            &self.wrapper_binary,
        )?)
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
