//! Every connection to the runtime, owned in one place.
//!
//! - `relay`: the raw HTTP/2 connection kubelet's calls are relayed on, byte for byte.
//! - `own`: a second raw connection for the shim's own sends of a caller's request (the
//!   pass-through checkpoint), so one can outlive its caller and never shares flow control
//!   with relayed calls.
//! - one tonic channel for the shim's typed calls: CRI (`cri`, `images`) and containerd's
//!   own API (`containerd`, which adds containerd's namespace to every call).
//!
//! All connect lazily and again after the runtime restarts.

pub mod containerd;
pub mod pod;
pub mod unary;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::api::cri::image_service_client::ImageServiceClient;
use crate::api::cri::runtime_service_client::RuntimeServiceClient;
use containerd::Containerd;
use upstream::Upstream;

/// A call the shim made to the runtime failed: what the shim was doing, and the runtime's
/// status, whose code the caller gets.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {}", .status.message())]
pub struct CallFailed {
    pub context: String,
    pub status: tonic::Status,
}

impl CallFailed {
    pub fn new(status: tonic::Status, context: &str) -> Self {
        CallFailed {
            context: context.to_owned(),
            status,
        }
    }

    pub fn code(&self) -> crate::grpc::Code {
        self.status.code()
    }
}

/// The runtime's name and version, as its CRI Version reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub name: String,
    pub version: String,
}

/// Asks the runtime's CRI for its name and version.
pub async fn version(cri: &CriClient) -> Result<RuntimeVersion, tonic::Status> {
    let answer = cri
        .clone()
        .version(crate::api::cri::VersionRequest::default())
        .await?
        .into_inner();
    Ok(RuntimeVersion {
        name: answer.runtime_name,
        version: answer.runtime_version,
    })
}

/// The user-agent prefix of the calls the shim makes itself.
pub const USER_AGENT: &str = concat!("ckpt-shim/", env!("CARGO_PKG_VERSION"));

/// Verbose ContainerStatus answers carry the whole OCI spec: allow kubelet's limit.
const MAX_DECODED: usize = 16 << 20;

pub type CriClient = RuntimeServiceClient<Channel>;
pub type ImageClient = ImageServiceClient<Channel>;

/// The runtime behind the shim, as the shim reaches it.
pub struct Runtime {
    relay: Arc<Upstream>,
    own: Arc<Upstream>,
    channel: Channel,
    containerd: Containerd,
}

impl Runtime {
    /// Sets up the connections; nothing is dialled until first used.
    pub fn new(
        socket: &Path,
        connect_timeout: Duration,
        containerd_namespace: &str,
    ) -> Result<Self, containerd::InvalidNamespace> {
        let channel = channel(socket);
        Ok(Runtime {
            relay: Arc::new(Upstream::new(socket.to_path_buf(), connect_timeout)),
            own: Arc::new(Upstream::new(socket.to_path_buf(), connect_timeout)),
            containerd: Containerd::new(channel.clone(), containerd_namespace)?,
            channel,
        })
    }

    /// The connection relayed calls go on.
    pub fn relay(&self) -> &Arc<Upstream> {
        &self.relay
    }

    /// The connection for requests the shim sends on by itself.
    pub fn own(&self) -> &Arc<Upstream> {
        &self.own
    }

    pub fn cri(&self) -> CriClient {
        RuntimeServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODED)
    }

    pub fn images(&self) -> ImageClient {
        ImageServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODED)
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }
}

/// A channel to a unix socket that dials on first use and again after the runtime restarts.
pub fn channel(socket: &Path) -> Channel {
    let socket: PathBuf = socket.to_path_buf();
    // The shim's own calls say so (runtime logs, and tests tell them from relayed ones).
    Endpoint::from_static("http://localhost")
        .user_agent(USER_AGENT)
        .expect("a valid user agent")
        .connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
}

/// A CRI client on any socket (the `ckpt-shim checkpoint` command talks to the shim's own).
pub fn cri(socket: &Path) -> CriClient {
    RuntimeServiceClient::new(channel(socket)).max_decoding_message_size(MAX_DECODED)
}
