//! Which engine wrote a checkpoint and which container it is, from `config.dump`,
//! `spec.dump` and `status.dump` (FACTS 5: engines are told apart by the spec annotation
//! `io.container.manager`; names come from each engine's own annotations).

use serde::Serialize;
use serde_json::Value;

use ckpt_format::members;
use ckpt_format::sidecar::{self, Engine, Sidecar};

use super::Checkpoint;

/// The container a checkpoint is of.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Container {
    /// ckpt-shim | containerd | cri-o | podman | unknown
    pub engine: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub image: Option<String>,
    pub image_ref: Option<String>,
    pub runtime: Option<String>,
    /// RFC 3339, as the engine wrote it.
    pub created: Option<String>,
    pub checkpointed: Option<String>,
}

fn str_at(v: Option<&Value>, keys: &[&str]) -> Option<String> {
    let v = v?;
    for k in keys {
        let mut cur = v;
        let mut ok = true;
        for part in k.split('.') {
            match cur.get(part) {
                Some(next) => cur = next,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            if let Some(s) = cur.as_str().filter(|s| !s.is_empty()) {
                return Some(s.to_owned());
            }
        }
    }
    None
}

fn annotation(spec: Option<&Value>, keys: &[&str]) -> Option<String> {
    let ann = spec?.get("annotations")?;
    keys.iter().find_map(|k| {
        ann.get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
}

/// Reads the container's identity from whatever metadata files the archive has.
pub fn container(cp: &Checkpoint) -> Container {
    let config = cp.config.as_ref();
    let spec = cp.spec.as_ref();
    let status = cp.status.as_ref();
    let manager = annotation(spec, &["io.container.manager"]);
    let shim_marked = cp.members.iter().any(|m| m.name == members::SHIM_MARK)
        || spec
            .and_then(|s| s.get("annotations"))
            .and_then(Value::as_object)
            .is_some_and(|a| a.keys().any(|k| k.starts_with("io.ckpt-shim.")));
    // ckpt-shim's sidecar says whether the shim made the archive itself ("emulated") or
    // had the runtime's CRI make it ("native").
    let sidecar_engine = sidecar(cp).map(|s| s.engine);
    let engine = match manager.as_deref() {
        _ if shim_marked || sidecar_engine == Some(Engine::Emulated) => "ckpt-shim",
        Some("cri-o") => "cri-o",
        Some("libpod") => "podman",
        _ if config.is_some() || spec.is_some() => "containerd",
        _ => "unknown",
    };
    let labels = |k: &str| str_at(status, &[&format!("labels.{k}")]);
    // containerd's annotations, CRI-O's kubelet-style name or its labels.
    let engine_named = cp.spec_dump().map(|s| s.pod_identity()).unwrap_or_default();
    let named = |v: String| Some(v).filter(|v| !v.is_empty());
    Container {
        engine: engine.to_owned(),
        id: str_at(config, &["id"]).or_else(|| str_at(status, &["id"])),
        name: annotation(
            spec,
            &[
                "io.kubernetes.cri.container-name",
                "io.kubernetes.container.name",
                "io.kubernetes.cri-o.ContainerName",
            ],
        )
        .or_else(|| str_at(status, &["metadata.name"]))
        .or_else(|| named(engine_named.container.clone()))
        .or_else(|| str_at(config, &["name"])),
        pod: annotation(
            spec,
            &["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"],
        )
        .or_else(|| labels("io.kubernetes.pod.name"))
        .or_else(|| named(engine_named.pod.clone())),
        namespace: annotation(
            spec,
            &[
                "io.kubernetes.cri.sandbox-namespace",
                "io.kubernetes.pod.namespace",
            ],
        )
        .or_else(|| labels("io.kubernetes.pod.namespace"))
        .or_else(|| named(engine_named.namespace.clone())),
        image: str_at(config, &["rootfsImageName", "rootfsImage"])
            .or_else(|| str_at(status, &["image.image"]))
            .or_else(|| annotation(spec, &["io.kubernetes.cri.image-name"])),
        image_ref: str_at(config, &["rootfsImageRef"]).or_else(|| str_at(status, &["imageRef"])),
        runtime: str_at(config, &["runtime", "ociRuntime", "OCIRuntime"]),
        created: str_at(config, &["createdTime", "created"]),
        checkpointed: str_at(config, &["checkpointedTime", "checkpointed"]),
    }
}

/// The archive's sidecar `<archive>.json`, if it has one and it is one.
pub fn sidecar(cp: &Checkpoint) -> Option<Sidecar> {
    let len = std::fs::metadata(sidecar::path_for(&cp.path)).ok()?.len();
    if len > sidecar::MAX_BYTES {
        return None;
    }
    Sidecar::read(&cp.path).ok()
}

/// CRIU's version from the head of dump.log (`Version: 4.2.1 (gitid ...)`).
pub fn criu_version(cp: &Checkpoint) -> Option<String> {
    cp.criu_version()
}
