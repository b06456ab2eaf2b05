//! Relaying: a call goes to the runtime and its answer comes back, both as the original
//! bytes, frame by frame, with gRPC message sizes checked on the way.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::grpc::body::{Direction, ViolationSlot};
use crate::grpc::{GrpcBody, Status};
use crate::runtime::unary::{self, UnaryAnswer};
use crate::runtime::upstream::Upstream;

pub struct Relay {
    upstream: Arc<Upstream>,
    max_message_bytes: usize,
}

impl Relay {
    pub fn new(upstream: Arc<Upstream>, max_message_bytes: usize) -> Self {
        Relay {
            upstream,
            max_message_bytes,
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// A request body as it arrives, its framing checked against the size limit;
    /// violations are reported to `slot`.
    pub fn checked_request(&self, body: Incoming, slot: &ViolationSlot) -> GrpcBody {
        GrpcBody::checked(
            body,
            self.max_message_bytes,
            Direction::Request,
            Some(slot.clone()),
        )
    }

    /// Relays a call untouched: the request body streams to the runtime frame by frame.
    pub async fn relay(&self, request: Request<Incoming>) -> Response<GrpcBody> {
        let slot = ViolationSlot::default();
        let (parts, body) = request.into_parts();
        let body = self.checked_request(body, &slot);
        self.forward(Request::from_parts(parts, body), slot).await
    }

    /// Sends a call to the runtime and streams its answer back, checking message sizes.
    /// `slot` receives request-side violations so they are reported as themselves.
    pub async fn forward(
        &self,
        request: Request<GrpcBody>,
        slot: ViolationSlot,
    ) -> Response<GrpcBody> {
        match self.upstream.send(request).await {
            Ok(response) => {
                if let Some(status) = slot.get() {
                    return status.clone().into_response();
                }
                let (parts, body) = response.into_parts();
                let body = GrpcBody::checked(
                    body,
                    self.max_message_bytes,
                    Direction::Response,
                    Some(slot),
                );
                Response::from_parts(parts, body)
            }
            Err(status) => slot.get().cloned().unwrap_or(status).into_response(),
        }
    }

    /// Sends `body` with the caller's request line and headers and collects the whole answer.
    pub async fn forward_unary(
        &self,
        head: &http::request::Parts,
        body: Bytes,
    ) -> Result<UnaryAnswer, Status> {
        let mut request = Request::new(GrpcBody::full(body));
        *request.method_mut() = head.method.clone();
        *request.uri_mut() = head.uri.clone();
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers.clone();
        unary::collect(self.forward(request, ViolationSlot::default()).await).await
    }
}
