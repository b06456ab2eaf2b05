//! Who restores: the runtime itself (`Engine::Native`, containerd 2.1-2.3) or the runc
//! wrapper containerd runs as `BinaryName` (`Engine::Wrapper`, every containerd set up for
//! it). `restore.mode` can force either; the runtime's set-up is checked before each
//! wrapper restore, and logged at start and after every reconnect.

use super::error::Error;
use super::{runtime_config, stage};
use serde_json::Value;

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
                let config = self.config().await?;
                let not_set_up = match runtime_config::check(&config, handler, &self.wrapper_binary)
                {
                    Ok(()) => return Ok(Engine::Wrapper),
                    Err(e) => e,
                };
                let v = runtime::version(&self.cri)
                    .await
                    .map_err(|e| CallFailed::new(e, "the runtime's Version failed"))?;
                // containerd ignores deleted.files: such an archive would get its deleted
                // files back.
                if native_restore(&v.name, &v.version, &config) == NativeRestore::On
                    && staged.has_status
                    && !staged.has_deleted_files
                {
                    return Ok(Engine::Native);
                }
                Err(not_set_up.into())
            }
        }
    }

    /// At start and after every reconnect: says in the log whether restores can use the
    /// wrapper (requests are checked again each time; this only tells the admin early).
    pub async fn check_runtime(&self) {
        if self.mode == RestoreMode::Native {
            return;
        }
        let config = match self.config().await {
            Ok(config) => config,
            Err(e) => {
                tracing::debug!(error = %e, "the runtime's set-up for restores is not known yet");
                return;
            }
        };
        let Err(not_set_up) = runtime_config::check(&config, "", &self.wrapper_binary) else {
            tracing::info!("restores ready: containerd runs the runc wrapper and passes the restore annotation");
            return;
        };
        let reason = Error::NotSetUp(not_set_up);
        // Whether the runtime's own restore can stand in (restore.mode = auto).
        let own = match runtime::version(&self.cri).await {
            Ok(v) => native_restore(&v.name, &v.version, &config),
            Err(_) => NativeRestore::Absent,
        };
        match own {
            NativeRestore::On => {
                tracing::warn!(%reason, "restores through the wrapper are not possible on this runtime until it is configured; the runtime's own restore is used where it can take the archive")
            }
            NativeRestore::Off => {
                tracing::warn!(%reason, "restores through the wrapper are not possible on this runtime until it is configured, and its own restore is switched off (enable_experimental_restore_via_create); restores will be refused")
            }
            NativeRestore::Absent => {
                tracing::warn!(%reason, "restores through the wrapper are not possible on this runtime until it is configured; it has no restore of its own; restores will be refused")
            }
        }
    }

    /// FAILED_PRECONDITION naming the missing setting unless containerd runs the wrapper
    /// with the annotation passed through, for the pod's runtime handler.
    pub async fn wrapper_ready(&self, handler: &str) -> Result<(), Error> {
        let config = self.config().await?;
        Ok(runtime_config::check(
            &config,
            handler,
            &self.wrapper_binary,
        )?)
    }

    /// The runtime's CRI configuration, as its verbose Status reports it.
    async fn config(&self) -> Result<Value, Error> {
        let answer = self
            .cri
            .clone()
            .status(StatusRequest { verbose: true })
            .await
            .map_err(|e| CallFailed::new(e, "the runtime's Status failed"))?
            .into_inner();
        Ok(answer
            .info
            .get("config")
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .unwrap_or_default())
    }
}

/// The runtime's own restore through CreateContainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeRestore {
    /// It has none (containerd 1.x, >= 2.4; runtimes the shim does not know).
    Absent,
    /// It has one, switched off (containerd 2.2.7+ and 2.3.4+ by default).
    Off,
    On,
}

/// containerd's restore through CreateContainer by release (FACTS 2): added in 2.1;
/// deprecated in 2.2 and 2.3 and switched off by default from 2.2.7 and 2.3.4 behind
/// `enable_experimental_restore_via_create`; removed in 2.4.
pub fn native_restore(name: &str, version: &str, config: &Value) -> NativeRestore {
    if name != "containerd" {
        return NativeRestore::Absent;
    }
    let Some((major, minor, patch)) = release(version) else {
        return NativeRestore::Absent;
    };
    // The first patch release of each minor where restore is off unless enabled.
    let off_from = match (major, minor) {
        (2, 1) => None,
        (2, 2) => Some(7),
        (2, 3) => Some(4),
        _ => return NativeRestore::Absent,
    };
    match off_from {
        Some(p) if patch >= p && !restore_enabled(config) => NativeRestore::Off,
        _ => NativeRestore::On,
    }
}

/// `v2.2.7`, `2.1.9~ds1`, `2.3.4-rc.1+unknown` -> (2, 2, 7)...
fn release(version: &str) -> Option<(u32, u32, u32)> {
    let v = version.trim().trim_start_matches('v');
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let mut parts = v[..end].split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Whether the CRI configuration switches the experimental restore on, under whichever
/// spelling the release reports it (TOML key, JSON tag or Go field name).
fn restore_enabled(config: &Value) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| {
                let key: String = k
                    .chars()
                    .filter(|c| *c != '_')
                    .flat_map(char::to_lowercase)
                    .collect();
                (key == "enableexperimentalrestoreviacreate" && v.as_bool() == Some(true))
                    || walk(v)
            }),
            _ => false,
        }
    }
    walk(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn which_runtimes_restore_natively() {
        let none = json!({});
        let enabled = json!({"containerd": {"enableExperimentalRestoreViaCreate": true}});
        let enabled_toml = json!({"enable_experimental_restore_via_create": true});
        let disabled = json!({"EnableExperimentalRestoreViaCreate": false});
        use NativeRestore::*;
        for (name, version, config, want) in [
            ("containerd", "1.6.20~ds1", &none, Absent),
            ("containerd", "v1.7.24", &none, Absent),
            ("containerd", "v2.0.5", &none, Absent),
            ("containerd", "v2.1.9", &none, On),
            ("containerd", "2.1.9~ds1-1", &none, On),
            ("containerd", "v2.2.0", &none, On),
            ("containerd", "v2.2.6", &none, On),
            ("containerd", "v2.2.7", &none, Off),
            ("containerd", "v2.2.7", &enabled, On),
            ("containerd", "v2.2.9", &disabled, Off),
            ("containerd", "v2.3.0", &none, On),
            ("containerd", "v2.3.3", &none, On),
            ("containerd", "v2.3.4", &none, Off),
            ("containerd", "2.3.4-rc.1", &enabled_toml, On),
            ("containerd", "v2.4.0", &enabled, Absent),
            ("containerd", "v3.0.0", &none, Absent),
            ("containerd", "garbage", &none, Absent),
            ("cri-o", "1.33.13", &none, Absent),
        ] {
            assert_eq!(
                native_restore(name, version, config),
                want,
                "{name} {version} {config}"
            );
        }
    }
}
