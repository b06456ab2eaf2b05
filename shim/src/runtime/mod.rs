//! The shim's own calls to the runtime, as opposed to relayed calls: a typed CRI client
//! and containerd's API, on the runtime's socket. Each opens its own connection, so they
//! never share flow control with kubelet's relayed calls.

pub mod containerd;

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::api::cri::image_service_client::ImageServiceClient;
use crate::api::cri::runtime_service_client::RuntimeServiceClient;

/// A runtime error as the shim's status: its code kept, its message with context.
pub fn runtime_error(e: tonic::Status, context: &str) -> crate::grpc::Status {
    crate::grpc::Status::new(e.code(), format!("{context}: {}", e.message()))
}

/// The user-agent prefix of the calls the shim makes itself.
pub const USER_AGENT: &str = concat!("ckpt-shim/", env!("CARGO_PKG_VERSION"));

pub type CriClient = RuntimeServiceClient<Channel>;
pub type ImageClient = ImageServiceClient<Channel>;

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

/// A CRI client for the shim's own calls (ContainerStatus, Version, the capability probe).
pub fn cri(socket: &Path) -> CriClient {
    // Verbose ContainerStatus answers carry the whole OCI spec: allow kubelet's limit.
    RuntimeServiceClient::new(channel(socket)).max_decoding_message_size(16 << 20)
}

/// A CRI image client for the shim's own calls (the repo digest of a checkpoint's base image).
pub fn images(socket: &Path) -> ImageClient {
    ImageServiceClient::new(channel(socket)).max_decoding_message_size(16 << 20)
}
