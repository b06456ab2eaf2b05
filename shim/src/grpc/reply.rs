//! Successful answers the shim produces itself (a unary reply with one message).

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response};

use super::body::GrpcBody;
use super::frame::PREFIX_LEN;

/// HTTP 200, `content-type: application/grpc`, one uncompressed message framed with its
/// length prefix, and trailers `grpc-status: 0`: what a gRPC server sends for a unary call
/// that succeeded.
pub fn ok(payload: &[u8]) -> Response<GrpcBody> {
    let mut framed = BytesMut::with_capacity(PREFIX_LEN + payload.len());
    framed.put_u8(0);
    framed.put_u32(payload.len() as u32);
    framed.put_slice(payload);
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(GrpcBody::complete(framed.freeze(), Some(trailers)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Frames nothing: the empty message (`CheckpointContainerResponse {}` encodes to zero bytes).
pub fn ok_empty() -> Response<GrpcBody> {
    ok(&Bytes::new())
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
}
