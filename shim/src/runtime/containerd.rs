//! containerd's own API: checkpointing a container on runtimes whose CRI cannot
//! (containerd 1.6 and 1.7), and its image and content stores (checkpoint images). Every
//! call carries the namespace CRI keeps its containers in, added here and nowhere else.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::api::containerd::runc::v1::{CheckpointOptions, CHECKPOINT_OPTIONS_TYPE_URL};
use crate::api::containerd::services::containers::v1 as containers;
use crate::api::containerd::services::images::v1 as images;
use crate::api::containerd::services::snapshots::v1 as snapshots;
use crate::api::containerd::services::tasks::v1 as tasks;
use crate::api::containerd::services::version::v1 as version;
use crate::api::containerd::types::Mount;
use crate::api::containerd::v1::types::Status as TaskStatus;

pub use containers::Container;

/// The state of a container's task, as containerd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Paused,
    Pausing,
    Other(i32),
}

#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: MetadataValue<Ascii>,
}

/// containerd's namespaces are header values; the configuration checks this at load.
#[derive(Debug, thiserror::Error)]
#[error("containerd namespace {0:?} is not a valid header value")]
pub struct InvalidNamespace(pub String);

impl Containerd {
    pub fn new(channel: Channel, namespace: &str) -> Result<Self, InvalidNamespace> {
        let parsed = namespace
            .parse()
            .map_err(|_| InvalidNamespace(namespace.to_owned()))?;
        Ok(Containerd {
            channel,
            namespace: parsed,
        })
    }

    /// The namespace every call is made in.
    pub fn namespace(&self) -> &str {
        self.namespace.to_str().unwrap_or_default()
    }

    /// The channel, for containerd services this client has no method for.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// `message` as a request in the CRI namespace.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        request
    }

    /// containerd's own version ("1.6.20~ds1", "v2.1.9"...).
    pub async fn version(&self) -> Result<String, tonic::Status> {
        let mut client = version::version_client::VersionClient::new(self.channel.clone());
        Ok(client.version(self.request(())).await?.into_inner().version)
    }

    /// The digest an image name points at (its manifest or index), as a registry serves it.
    pub async fn image_digest(&self, name: &str) -> Result<String, tonic::Status> {
        let mut client = images::images_client::ImagesClient::new(self.channel.clone());
        let answer = client
            .get(self.request(images::GetImageRequest { name: name.into() }))
            .await?;
        answer
            .into_inner()
            .image
            .and_then(|i| i.target)
            .map(|t| t.digest)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| tonic::Status::not_found(format!("containerd has no image {name}")))
    }

    pub async fn container(&self, id: &str) -> Result<Container, tonic::Status> {
        let mut client = containers::containers_client::ContainersClient::new(self.channel.clone())
            .max_decoding_message_size(16 << 20);
        let answer = client
            .get(self.request(containers::GetContainerRequest { id: id.into() }))
            .await?;
        answer
            .into_inner()
            .container
            .ok_or_else(|| tonic::Status::not_found(format!("containerd has no container {id}")))
    }

    /// The container's init process as containerd's task service reports it.
    async fn task_process(
        &self,
        id: &str,
    ) -> Result<Option<crate::api::containerd::v1::types::Process>, tonic::Status> {
        let mut client = tasks::tasks_client::TasksClient::new(self.channel.clone());
        let answer = client
            .get(self.request(tasks::GetRequest {
                container_id: id.into(),
                exec_id: String::new(),
            }))
            .await?;
        Ok(answer.into_inner().process)
    }

    pub async fn task_state(&self, id: &str) -> Result<TaskState, tonic::Status> {
        let status = self.task_process(id).await?.map(|p| p.status).unwrap_or(0);
        Ok(match TaskStatus::try_from(status) {
            Ok(TaskStatus::Running) => TaskState::Running,
            Ok(TaskStatus::Paused) => TaskState::Paused,
            Ok(TaskStatus::Pausing) => TaskState::Pausing,
            _ => TaskState::Other(status),
        })
    }

    /// The pid of the container's init process.
    pub async fn task_pid(&self, id: &str) -> Result<u32, tonic::Status> {
        Ok(self.task_process(id).await?.map(|p| p.pid).unwrap_or(0))
    }

    pub async fn resume(&self, id: &str) -> Result<(), tonic::Status> {
        let mut client = tasks::tasks_client::TasksClient::new(self.channel.clone());
        client
            .resume(self.request(tasks::ResumeTaskRequest {
                container_id: id.into(),
            }))
            .await?;
        Ok(())
    }

    /// The task's CRIU checkpoint into `options.image_path`, through runc. With an image
    /// path set, containerd writes nothing to its content store.
    pub async fn checkpoint(
        &self,
        id: &str,
        options: CheckpointOptions,
    ) -> Result<(), tonic::Status> {
        use prost::Message;
        let mut client = tasks::tasks_client::TasksClient::new(self.channel.clone());
        client
            .checkpoint(self.request(tasks::CheckpointTaskRequest {
                container_id: id.into(),
                parent_checkpoint: String::new(),
                options: Some(prost_types::Any {
                    type_url: CHECKPOINT_OPTIONS_TYPE_URL.into(),
                    value: options.encode_to_vec(),
                }),
            }))
            .await?;
        Ok(())
    }

    /// The mounts that make up a snapshot (for an overlay container: its upper and lower
    /// directories).
    pub async fn mounts(&self, snapshotter: &str, key: &str) -> Result<Vec<Mount>, tonic::Status> {
        let mut client = snapshots::snapshots_client::SnapshotsClient::new(self.channel.clone());
        let answer = client
            .mounts(self.request(snapshots::MountsRequest {
                snapshotter: snapshotter.into(),
                key: key.into(),
            }))
            .await?;
        Ok(answer.into_inner().mounts)
    }
}
