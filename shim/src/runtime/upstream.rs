//! The connection to the real runtime.
//!
//! One HTTP/2 connection carries every call (gRPC multiplexes). When the runtime goes away
//! calls fail at once with UNAVAILABLE instead of waiting for their deadline, and the next
//! call dials again, so a restarted containerd is picked up without restarting the shim.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use tokio::net::UnixStream;

use crate::grpc::{GrpcBody, Status};

type Sender = http2::SendRequest<GrpcBody>;

pub struct Upstream {
    socket: PathBuf,
    connect_timeout: Duration,
    current: Mutex<Option<Sender>>,
    /// Serialises dialing so a burst of calls after an outage opens one connection.
    dialing: tokio::sync::Mutex<()>,
    /// Signalled after every new connection (a runtime that restarted may have changed).
    connected: Arc<tokio::sync::Notify>,
}

impl Upstream {
    pub fn new(socket: PathBuf, connect_timeout: Duration) -> Self {
        Upstream {
            socket,
            connect_timeout,
            current: Mutex::new(None),
            dialing: Default::default(),
            connected: Default::default(),
        }
    }

    /// Notified (one stored permit) each time a new connection to the runtime is made.
    pub fn on_connect(&self) -> Arc<tokio::sync::Notify> {
        self.connected.clone()
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn live(&self) -> Option<Sender> {
        let guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    fn forget(&self, dead: &Sender) {
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|s| s.is_closed()) || dead.is_closed() {
            *guard = None;
        }
    }

    async fn sender(&self) -> Result<Sender, Status> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _dial = self.dialing.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let sender = self.dial().await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    async fn dial(&self) -> Result<Sender, Status> {
        let unavailable = |why: String| {
            Status::unavailable(format!(
                "runtime at {} is unavailable: {why}",
                self.endpoint()
            ))
        };
        let stream = tokio::time::timeout(self.connect_timeout, UnixStream::connect(&self.socket))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "connect timed out after {:?}",
                    self.connect_timeout
                ))
            })?
            .map_err(|e| unavailable(e.to_string()))?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            // Large windows: a 16 MiB ListContainers answer must not stall on flow control.
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(1 << 20)
            .max_send_buf_size(1 << 20)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(format!("HTTP/2 handshake failed: {e}")))?;
        let endpoint = self.endpoint();
        tokio::spawn(async move {
            match connection.await {
                Ok(()) => tracing::info!(runtime = %endpoint, "runtime connection closed"),
                Err(e) => {
                    tracing::warn!(runtime = %endpoint, error = %e, "runtime connection lost")
                }
            }
        });
        tracing::info!(runtime = %self.endpoint(), "connected to runtime");
        self.connected.notify_one();
        Ok(sender)
    }

    /// Sends one call. A call that never left the shim because the connection had just died
    /// is sent once more on a fresh connection; a call that was sent is never repeated.
    pub async fn send(&self, request: Request<GrpcBody>) -> Result<Response<Incoming>, Status> {
        let mut request = absolute_uri(request);
        for attempt in 0..2 {
            let mut sender = self.sender().await?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut err) => {
                    self.forget(&sender);
                    let lost = Status::unavailable(format!(
                        "runtime at {} failed the call: {}",
                        self.endpoint(),
                        err.error()
                    ));
                    match err.take_message() {
                        Some(unsent) if attempt == 0 => request = unsent,
                        _ => return Err(lost),
                    }
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }
}

/// The client library needs scheme and authority to fill the HTTP/2 pseudo-headers; keep
/// the caller's when it sent them (it always does over HTTP/2).
fn absolute_uri(request: Request<GrpcBody>) -> Request<GrpcBody> {
    if request.uri().scheme().is_some() && request.uri().authority().is_some() {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme.get_or_insert(Scheme::HTTP);
    uri.authority
        .get_or_insert_with(|| Authority::from_static("localhost"));
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    parts.uri = Uri::from_parts(uri).unwrap_or_default();
    Request::from_parts(parts, body)
}
