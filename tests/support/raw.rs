//! A gRPC client that works on bytes: sends exactly the bytes it is given and returns
//! exactly what came back (status line, headers, body, trailers), so the same call made
//! directly and through the shim can be compared byte for byte.

use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;

pub type BoxBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Frames one message: flag 0, 4-byte big-endian length, payload.
pub fn frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 5);
    b.put_u8(0);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

pub fn encode<M: prost::Message>(message: &M) -> Bytes {
    frame(&message.encode_to_vec())
}

/// Appends protobuf fields no CRI schema has (field 1000 as a string, 1001 as a varint):
/// a proxy that decodes and re-encodes with our schema would drop them.
pub fn with_unknown_fields(payload: Vec<u8>) -> Vec<u8> {
    let mut p = payload;
    // field 1000, wire type 2 (len): key = (1000 << 3) | 2 = 8002 as varint
    p.extend_from_slice(&[0xc2, 0x3e, 11]);
    p.extend_from_slice(b"from-future");
    // field 1001, wire type 0 (varint): key = 8008
    p.extend_from_slice(&[0xc8, 0x3e, 0x96, 0x01]);
    p
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl RawResponse {
    /// grpc-status from the trailers, or from the headers of a trailers-only answer.
    pub fn grpc_status(&self) -> Option<i32> {
        let h = self.trailers.as_ref().and_then(|t| t.get("grpc-status"));
        let h = h.or_else(|| self.headers.get("grpc-status"))?;
        h.to_str().ok()?.parse().ok()
    }

    pub fn grpc_message(&self) -> String {
        let h = self.trailers.as_ref().and_then(|t| t.get("grpc-message"));
        let h = h.or_else(|| self.headers.get("grpc-message"));
        let raw = h
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        percent_decode(&raw)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct RawClient {
    sender: http2::SendRequest<BoxBody>,
}

impl RawClient {
    pub async fn connect(socket: &Path) -> anyhow::Result<RawClient> {
        let stream = UnixStream::connect(socket).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(RawClient { sender })
    }

    /// Starts a call with any body; the caller reads the response as it streams.
    pub async fn start(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: BoxBody,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let mut request = Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.sender.ready().await?;
        Ok(self.sender.send_request(request.body(body)?).await?)
    }

    /// A whole call: these bytes out, everything that came back in.
    pub async fn call(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<RawResponse> {
        let body = Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        let response = self.start(path, headers, body).await?;
        read_all(response).await
    }
}

pub async fn read_all(response: http::Response<Incoming>) -> anyhow::Result<RawResponse> {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok(RawResponse {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

/// A typed CRI channel over a unix socket, as kubelet's client would use.
pub async fn channel(socket: &Path) -> anyhow::Result<tonic::transport::Channel> {
    let socket: PathBuf = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await?;
    Ok(channel)
}

/// A channel that dials lazily, so calls can be made while the far end is down.
pub fn lazy_channel(socket: &Path) -> tonic::transport::Channel {
    let socket: PathBuf = socket.to_path_buf();
    tonic::transport::Endpoint::from_static("http://localhost").connect_with_connector_lazy(
        tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }),
    )
}
