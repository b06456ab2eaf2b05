//! Which CreateContainers are restores: the image is an archive path, or a checkpoint image
//! in containerd's store (kubelet names it by id), or, when configured, the
//! checkpoint-restore-operator's sandbox annotation names an archive. Everything else is not
//! a restore and passes untouched; detection never makes an ordinary call fail.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use super::error::Error;
use crate::api::cri::{CreateContainerRequest, ImageSpec, ImageStatusRequest};
use crate::runtime::containerd::Containerd;
use crate::runtime::{pod, CriClient, ImageClient};
use ckpt_format::plan::ANNOTATION;

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
    pub fn describe(&self) -> String {
        match self {
            Source::Archive(p) => p.display().to_string(),
            Source::Image(i) => format!("{}@{}", i.name, i.manifest_digest),
        }
    }
}

/// Image ids known not to be checkpoint images. An id is a content digest, so the answer
/// never changes; ordinary CreateContainers then cost one ImageStatus.
const PLAIN_IMAGES_KEPT: usize = 4096;

pub struct Detector {
    cri: CriClient,
    images: ImageClient,
    /// containerd's API (checkpoint images live in its content store).
    containerd: Containerd,
    operator_annotations: bool,
    plain_images: Mutex<HashSet<String>>,
}

impl Detector {
    pub fn new(
        cri: CriClient,
        images: ImageClient,
        containerd: Containerd,
        operator_annotations: bool,
    ) -> Self {
        Detector {
            cri,
            images,
            containerd,
            operator_annotations,
            plain_images: Mutex::default(),
        }
    }

    /// The restore source a request names, if it is a restore at all.
    pub async fn detect(&self, request: &CreateContainerRequest) -> Result<Option<Source>, Error> {
        let config = request.config.as_ref();
        if config.is_some_and(|c| c.annotations.contains_key(ANNOTATION)) {
            return Err(Error::ReservedAnnotation);
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
        if self.operator_annotations {
            let name = config
                .and_then(|c| c.metadata.as_ref())
                .map(|m| m.name.as_str())
                .unwrap_or("");
            let key = format!("{OPERATOR_ANNOTATION}{name}");
            // The runtime's view of the sandbox, not the caller's copy of its config.
            let sandbox = pod::record(&self.cri, &request.pod_sandbox_id)
                .await?
                .ok_or_else(|| Error::NoSandbox(request.pod_sandbox_id.clone()))?;
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
    ) -> Result<Option<crate::image::CheckpointImage>, Error> {
        if image.is_empty() {
            return Ok(None);
        }
        // Detection must never make an ordinary CreateContainer fail: when the runtime
        // cannot tell (no ImageStatus, no containerd API: CRI-O), the call goes on as it came.
        let found = match image_status(&self.images, image).await {
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
            crate::image::checkpoint_image(&self.containerd, &name)
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
}

/// The runtime's image of that name or id, if it has one.
pub(super) async fn image_status(
    images: &ImageClient,
    image: &str,
) -> Result<Option<crate::api::cri::Image>, tonic::Status> {
    let request = ImageStatusRequest {
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        verbose: false,
    };
    Ok(images
        .clone()
        .image_status(request)
        .await?
        .into_inner()
        .image)
}
