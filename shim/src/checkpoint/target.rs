//! The container a CheckpointContainer names, as the runtime describes it. Its identity
//! (pod, namespace, pod uid) comes from the runtime's record of the container's sandbox
//! (PodSandboxStatus), never from labels or annotations whoever created the container chose:
//! a label claiming another namespace must not get a container past the namespace policy.

use std::collections::HashMap;

use super::error::Error;
use crate::api::cri::{
    ContainerState, ContainerStatus, ContainerStatusRequest, ImageSpec, ImageStatusRequest,
};
use crate::runtime::containerd::Containerd;
use crate::runtime::{pod, CallFailed};
use crate::runtime::{CriClient, ImageClient};

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

/// The runtime clients resolving a target needs.
pub struct Resolver<'a> {
    pub cri: &'a CriClient,
    pub images: &'a ImageClient,
    pub containerd: &'a Containerd,
}

impl Resolver<'_> {
    /// The container, which must exist and run.
    pub async fn resolve(&self, container_id: &str) -> Result<Target, Error> {
        if container_id.is_empty() {
            return Err(Error::NoContainerId);
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
                tonic::Code::NotFound => Error::NotFound {
                    id: container_id.to_owned(),
                    message: e.message().to_owned(),
                },
                _ => CallFailed::new(e, "ContainerStatus failed").into(),
            })?
            .into_inner();
        let status = answer.status.ok_or(Error::NoStatus)?;
        if status.state != ContainerState::ContainerRunning as i32 {
            let state = ContainerState::try_from(status.state)
                .map(|s| s.as_str_name())
                .unwrap_or("unknown");
            return Err(Error::NotRunning {
                id: container_id.to_owned(),
                state: state.to_owned(),
            });
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
        // The pod as the runtime records it, not as the container's labels claim.
        let sandbox = pod::sandbox_of(self.cri, &status.id)
            .await?
            .ok_or_else(|| Error::NoSandbox(status.id.clone()))?;
        let pod = pod::record(self.cri, &sandbox)
            .await?
            .ok_or_else(|| Error::NoSandbox(status.id.clone()))?;
        Ok(Target {
            id: status.id.clone(),
            name: status
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            pod: pod.name,
            pod_uid: pod.uid,
            namespace: pod.namespace,
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
    async fn pullable_ref(&self, status: &ContainerStatus) -> String {
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
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
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
}

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

/// An image name without its tag or digest, as written.
fn repository(image: &str) -> &str {
    crate::image::reference::split(image).0
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
