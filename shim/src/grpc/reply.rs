//! Answers the shim produces itself: a unary reply with one message, or a status alone.

use http::{HeaderValue, Response};

use super::body::GrpcBody;
use super::frame;
use super::status::Status;

/// HTTP 200, `content-type: application/grpc`, one uncompressed message framed with its
/// length prefix, and trailers `grpc-status: 0`: what a gRPC server sends for a unary call
/// that succeeded.
pub fn ok(payload: &[u8]) -> Response<GrpcBody> {
    let mut trailers = http::HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(GrpcBody::complete(frame::encode(payload), Some(trailers)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

impl Status {
    /// A trailers-only response: HTTP 200 whose header block carries the status and whose
    /// stream ends right there, as gRPC servers answer a call that fails before any message.
    pub fn into_response(self) -> Response<GrpcBody> {
        let mut response = Response::new(GrpcBody::empty());
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        self.to_headers(headers);
        response
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn one_framed_message_then_status_zero() {
        let r = ok(b"abc");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        let collected = r.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(
            &collected.to_bytes()[..],
            &[0, 0, 0, 0, 3, b'a', b'b', b'c']
        );
    }

    #[test]
    fn a_status_alone_is_a_trailers_only_answer() {
        let r = Status::new(super::super::Code::NotFound, "gone").into_response();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "5");
        assert_eq!(r.headers()["grpc-message"], "ckpt-shim: gone");
    }
}
