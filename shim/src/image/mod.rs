//! Checkpoint images: a checkpoint archive as an OCI image, without buildah.
//!
//! The image is what `FROM scratch` + `ADD archive.tar /` gives: one layer whose files are
//! the archive's members at the root (`config.dump`, `spec.dump`, `checkpoint/...`), a
//! config naming the host's platform, and a manifest and an image index that both carry
//! the checkpoint annotations of every scheme in use (FACTS 6):
//!
//! - CRI-O finds a checkpoint image by the **manifest** annotation
//!   `io.kubernetes.cri-o.annotations.checkpoint.name`;
//! - containerd 2.1 reads the blob the image name points at (the registry's tag target:
//!   here the index) as an OCI index and looks for `org.criu.checkpoint.container.name` in
//!   its top-level annotations;
//! - Podman writes `io.podman.annotations.checkpoint.*`;
//! - ckpt-shim adds `io.ckpt-shim.checkpoint.*` (pod, namespace, base image, archive digest).
//!
//! `layout` builds the image into an OCI image layout directory, streaming the archive and
//! hashing while it writes; `store` imports it into containerd's content and image stores
//! and finds checkpoint images there for the restore path; `push` sends it to a registry
//! through the distribution API; `command` is `ckpt-shim image build`.
//!
//! Own types, not `oci-spec`/`oci-client` (measured, see the commit that says so): oci-spec
//! serialises annotations from a `HashMap`, so the same manifest gets a different digest in
//! each process and a build would not be reproducible; its `Reference` accepts names that
//! containerd refuses (`Upper/case`); oci-client brings a second TLS stack (aws-lc) and a
//! second HTTP client beside the hyper-rustls one the shim already has.

pub mod command;
pub mod layout;
pub mod push;
pub mod reference;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use reference::{Reference, ReferenceError};
pub use store::{checkpoint_image, CheckpointImage, StoreError};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// CRI-O's checkpoint image annotation (on the manifest).
pub const CRIO_NAME: &str = "io.kubernetes.cri-o.annotations.checkpoint.name";
/// checkpointctl's shared metadata key, which containerd 2.1 looks for on the index.
pub const CRIU_NAME: &str = "org.criu.checkpoint.container.name";
/// Podman's checkpoint image annotation.
pub const PODMAN_NAME: &str = "io.podman.annotations.checkpoint.name";
/// ckpt-shim's own.
pub const SHIM_NAME: &str = "io.ckpt-shim.checkpoint.container.name";

/// Any of these marks an image as a checkpoint image.
pub const CHECKPOINT_NAME_KEYS: &[&str] = &[CRIO_NAME, CRIU_NAME, PODMAN_NAME, SHIM_NAME];

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The host's, in Go's GOARCH names (what OCI configs and containerd use).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            architecture: architecture.into(),
            os: std::env::consts::OS.into(),
            variant: (architecture == "arm64").then(|| "v8".into()),
        }
    }
}

/// An image manifest or an image index, as far as this module reads them (both carry
/// `annotations` at the top; containerd 2.1 reads either as an index).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A digest that is not `sha256:` and 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sha256 digest")]
pub struct BadDigest(pub String);

/// The hex part of a `sha256:` digest, checked (it names files and URLs).
pub fn digest_hex(digest: &str) -> Result<&str, BadDigest> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(h)
        }
        _ => Err(BadDigest(digest.to_owned())),
    }
}

/// True when the annotations mark a checkpoint image (any scheme).
pub fn is_checkpoint(annotations: &BTreeMap<String, String>) -> bool {
    CHECKPOINT_NAME_KEYS
        .iter()
        .any(|k| annotations.get(*k).is_some_and(|v| !v.is_empty()))
}

/// The annotations a checkpoint image carries, from what the archive says about itself.
#[derive(Clone, Debug, Default)]
pub struct CheckpointFacts {
    /// The Kubernetes container name (what CRI-O's and containerd's key hold).
    pub container: String,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// Base image name and digest (config.dump rootfsImageName / rootfsImageRef).
    pub base_image: Option<String>,
    pub base_image_ref: Option<String>,
    /// "4.2.1"
    pub criu_version: Option<String>,
    /// ckpt-shim | containerd | cri-o | podman
    pub engine: String,
    pub runtime: Option<String>,
    pub archive_sha256: String,
    /// When the checkpoint was taken (config.dump), the image's `created`.
    pub checkpointed: Option<String>,
}

/// CRIU's version the way go-criu reports it (major*10000 + minor*100 + patch), which is
/// what Podman, CRI-O and containerd write into their `criu.version` annotations.
fn criu_version_number(v: &str) -> Option<String> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major * 10_000 + minor * 100 + patch).to_string())
}

impl CheckpointFacts {
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: Option<&String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                a.insert(k.to_owned(), v.clone());
            }
        };
        let name = Some(&self.container);
        let arch = Platform::host().architecture;
        let criu_number = self.criu_version.as_deref().and_then(criu_version_number);
        // CRI-O (manifest annotation is what it looks for).
        put(CRIO_NAME, name);
        put(
            "io.kubernetes.cri-o.annotations.checkpoint.rootfsImageName",
            self.base_image.as_ref(),
        );
        put(
            "io.kubernetes.cri-o.annotations.checkpoint.rootfsImageID",
            self.base_image_ref.as_ref(),
        );
        put(
            "io.kubernetes.cri-o.annotations.checkpoint.criu.version",
            criu_number.as_ref(),
        );
        // checkpointctl's shared keys (containerd 2.1 looks for the name on the index).
        put(CRIU_NAME, name);
        put("org.criu.checkpoint.pod.name", self.pod.as_ref());
        put("org.criu.checkpoint.pod.namespace", self.namespace.as_ref());
        put(
            "org.criu.checkpoint.rootfsImageName",
            self.base_image.as_ref(),
        );
        put(
            "org.criu.checkpoint.rootfsImageID",
            self.base_image_ref.as_ref(),
        );
        put("org.criu.checkpoint.engine.name", Some(&self.engine));
        put("org.criu.checkpoint.criu.version", criu_number.as_ref());
        put("org.criu.checkpoint.runtime.name", self.runtime.as_ref());
        put("org.criu.checkpoint.host.arch", Some(&arch));
        // Podman.
        put(PODMAN_NAME, name);
        put(
            "io.podman.annotations.checkpoint.rootfsImageName",
            self.base_image.as_ref(),
        );
        put(
            "io.podman.annotations.checkpoint.rootfsImageID",
            self.base_image_ref.as_ref(),
        );
        put(
            "io.podman.annotations.checkpoint.criu.version",
            criu_number.as_ref(),
        );
        put("io.podman.annotations.checkpoint.host.arch", Some(&arch));
        // ckpt-shim.
        put(SHIM_NAME, name);
        put("io.ckpt-shim.checkpoint.pod.name", self.pod.as_ref());
        put(
            "io.ckpt-shim.checkpoint.pod.namespace",
            self.namespace.as_ref(),
        );
        put(
            "io.ckpt-shim.checkpoint.rootfsImageName",
            self.base_image.as_ref(),
        );
        put(
            "io.ckpt-shim.checkpoint.rootfsImageRef",
            self.base_image_ref.as_ref(),
        );
        put(
            "io.ckpt-shim.checkpoint.criu.version",
            self.criu_version.as_ref(),
        );
        put("io.ckpt-shim.checkpoint.engine", Some(&self.engine));
        put(
            "io.ckpt-shim.checkpoint.archive.sha256",
            Some(&self.archive_sha256),
        );
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_numbers_as_go_criu_writes_them() {
        assert_eq!(criu_version_number("4.2.1").as_deref(), Some("40201"));
        assert_eq!(criu_version_number("3.17").as_deref(), Some("31700"));
        assert_eq!(criu_version_number("x"), None);
    }

    #[test]
    fn every_scheme_marks_a_checkpoint() {
        for k in CHECKPOINT_NAME_KEYS {
            let a = BTreeMap::from([(k.to_string(), "c".to_string())]);
            assert!(is_checkpoint(&a), "{k}");
        }
        let empty = BTreeMap::from([(CRIU_NAME.to_string(), String::new())]);
        assert!(!is_checkpoint(&empty));
    }

    #[test]
    fn digests_are_checked() {
        assert!(digest_hex(&sha256_digest(b"x")).is_ok());
        assert!(digest_hex("sha256:../../etc").is_err());
        assert!(digest_hex("md5:00").is_err());
    }
}
