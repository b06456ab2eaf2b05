//! gRPC statuses the shim itself answers with (as opposed to statuses it relays).

use http::{HeaderMap, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
pub use tonic::Code;

/// grpc-message is percent-encoded: '%' and everything outside printable ASCII.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// A status produced by the shim, always prefixed so operators can tell the shim's answers
/// from the runtime's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    /// The grpc-status / grpc-message pair as header values.
    pub fn to_headers(&self, headers: &mut HeaderMap) {
        headers.insert("grpc-status", HeaderValue::from(self.code as i32));
        let encoded = format!("ckpt-shim: {}", self.message);
        let encoded = utf8_percent_encode(&encoded, GRPC_MESSAGE).to_string();
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            headers.insert("grpc-message", v);
        }
    }

    /// The status as a trailer block, for ending a stream whose headers already went out.
    pub fn into_trailers(self) -> HeaderMap {
        let mut trailers = HeaderMap::with_capacity(2);
        self.to_headers(&mut trailers);
        trailers
    }
}

/// A domain error that knows which gRPC code it answers with: the edge turns it into a
/// [`Status`] with its `Display` text as the message.
pub trait Coded: std::fmt::Display {
    fn code(&self) -> Code;

    /// A status to pass on exactly as it came (the runtime's own answer), if this is one.
    fn relayed(&self) -> Option<&Status> {
        None
    }
}

impl Status {
    /// The status a domain error answers with.
    pub fn of(e: &impl Coded) -> Status {
        e.relayed()
            .cloned()
            .unwrap_or_else(|| Status::new(e.code(), e.to_string()))
    }
}

impl<E: Coded> From<E> for Status {
    fn from(e: E) -> Status {
        Status::of(&e)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_percent_encoded() {
        let mut headers = HeaderMap::new();
        Status::new(Code::NotFound, "100% ünïcode\nline").to_headers(&mut headers);
        assert_eq!(headers["grpc-status"], "5");
        assert_eq!(
            headers["grpc-message"],
            "ckpt-shim: 100%25 %C3%BCn%C3%AFcode%0Aline"
        );
    }
}
