//! A unary call sent to the runtime as bytes and collected whole, for intercepted methods
//! that act on the runtime's answer (native checkpoint: digest and sidecar after the runtime
//! wrote the archive; restore: the new container's id) before answering the caller.

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;

use super::upstream::Upstream;
use crate::grpc::{frame, Code, GrpcBody, Status};

/// The runtime's whole answer to a unary call.
pub struct UnaryAnswer {
    pub parts: http::response::Parts,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl UnaryAnswer {
    /// grpc-status and grpc-message, from the trailers or a trailers-only header block.
    pub fn status(&self) -> (Code, String) {
        let find = |name: &str| {
            self.trailers
                .as_ref()
                .and_then(|t| t.get(name))
                .or_else(|| self.parts.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let code = find("grpc-status")
            .and_then(|s| s.parse::<i32>().ok())
            .map(Code::from_i32)
            .unwrap_or(Code::Unknown);
        let message = find("grpc-message")
            .map(|m| {
                percent_encoding::percent_decode_str(&m)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        (code, message)
    }

    /// The answer's single message, if the call succeeded with one.
    pub fn message(&self) -> Option<&[u8]> {
        let (compressed, range) = frame::single_message(&self.body).ok()?;
        (!compressed).then(|| &self.body[range])
    }

    /// The answer as it came, for the caller.
    pub fn into_response(self) -> Response<GrpcBody> {
        Response::from_parts(self.parts, GrpcBody::complete(self.body, self.trailers))
    }
}

/// What an answer needs of the caller's request to be sent again on another connection.
#[derive(Clone)]
pub struct Head {
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
}

impl Head {
    pub fn of(parts: &http::request::Parts) -> Self {
        Head {
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        }
    }
}

/// Sends one framed unary request on `upstream` and collects the whole answer. Used by work
/// that must finish even if the caller goes away (it owns its own upstream connection).
pub async fn call(upstream: &Upstream, head: &Head, body: Bytes) -> Result<UnaryAnswer, Status> {
    let mut request = Request::new(GrpcBody::full(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = head.uri.clone();
    *request.headers_mut() = head.headers.clone();
    collect(upstream.send(request).await?).await
}

/// Reads a whole answer: status line, body and trailers.
pub async fn collect<B>(response: Response<B>) -> Result<UnaryAnswer, Status>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (parts, body) = response.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| Status::unavailable(format!("the runtime's answer broke off: {e}")))?;
    let trailers = collected.trailers().cloned();
    Ok(UnaryAnswer {
        parts,
        body: collected.to_bytes(),
        trailers,
    })
}
