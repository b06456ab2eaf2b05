//! The intercepted methods. Each has its own module with the same shape: the request is
//! decoded from the original bytes, the module decides with the collaborator it is handed
//! (the checkpointer or the restorer), and unless it must change or refuse the call, the
//! ORIGINAL bytes go to the runtime (so fields newer than our schema survive).

mod checkpoint;
mod create;
mod remove;
mod start;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prost::Message;

use crate::caller::Caller;
use crate::checkpoint::Checkpointer;
use crate::grpc::body::ViolationSlot;
use crate::grpc::{frame, Code, GrpcBody, Status};
use crate::relay::Relay;
use crate::restore::Restorer;
use crate::runtime::unary::UnaryAnswer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    CheckpointContainer,
    CreateContainer,
    StartContainer,
    RemoveContainer,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::CheckpointContainer => "CheckpointContainer",
            Method::CreateContainer => "CreateContainer",
            Method::StartContainer => "StartContainer",
            Method::RemoveContainer => "RemoveContainer",
        }
    }
}

/// The collaborators the intercepted methods are handed.
pub struct Handlers {
    pub checkpointer: Arc<Checkpointer>,
    pub restorer: Arc<Restorer>,
}

/// What an intercepted method's module decided about a call.
pub enum Decision {
    /// Send the original bytes on.
    Forward,
    /// Answer the caller without asking the runtime.
    Answer(Status),
    /// Answer success with this encoded response message (the shim did the work).
    Reply(Bytes),
    /// Answer with the runtime's own answer to a call the module sent (see `Call::send`).
    Relay(Box<UnaryAnswer>),
}

/// What a module may know about the call besides its request.
pub struct Call<'a> {
    pub caller: &'a Caller,
    relay: &'a Relay,
    head: &'a http::request::Parts,
    /// The request's single message as it came, uncompressed.
    pub original: &'a [u8],
}

impl<'a> Call<'a> {
    /// The caller's request line and headers.
    pub fn head(&self) -> &'a http::request::Parts {
        self.head
    }

    /// Sends `payload` (the original message, or a changed one) to the runtime with the
    /// caller's headers and returns its whole answer, so the module can act on it.
    pub async fn send(&self, payload: &[u8]) -> Result<UnaryAnswer, Status> {
        self.relay
            .forward_unary(self.head, frame::encode(payload))
            .await
    }
}

pub async fn handle(
    method: Method,
    request: Request<Incoming>,
    caller: &Caller,
    relay: &Relay,
    handlers: &Handlers,
) -> Response<GrpcBody> {
    let (parts, body) = request.into_parts();
    let slot = ViolationSlot::default();
    let body = relay.checked_request(body, &slot);
    // Intercepted methods are unary and bounded by the size limit, so holding one is fine.
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return slot
                .get()
                .cloned()
                .unwrap_or_else(|| {
                    Status::new(Code::Cancelled, format!("request body failed: {err}"))
                })
                .into_response();
        }
    };
    let payload = match message(method, &bytes) {
        Ok(p) => p,
        Err(status) => return status.into_response(),
    };
    let call = Call {
        caller,
        relay,
        head: &parts,
        original: payload,
    };
    let decision = match decide(method, &call, handlers, payload).await {
        Ok(d) => d,
        Err(status) => {
            tracing::warn!(method = method.name(), pid = caller.pid, uid = caller.uid, %status, "refused");
            return status.into_response();
        }
    };
    match decision {
        Decision::Forward => {
            relay
                .forward(Request::from_parts(parts, GrpcBody::full(bytes)), slot)
                .await
        }
        Decision::Answer(status) => status.into_response(),
        Decision::Reply(message) => crate::grpc::reply::ok(&message),
        Decision::Relay(answer) => answer.into_response(),
    }
}

async fn decide(
    method: Method,
    call: &Call<'_>,
    handlers: &Handlers,
    payload: &[u8],
) -> Result<Decision, Status> {
    Ok(match method {
        Method::CheckpointContainer => {
            checkpoint::decide(call, &handlers.checkpointer, decode(method, payload)?).await
        }
        Method::CreateContainer => {
            create::decide(call, &handlers.restorer, decode(method, payload)?).await
        }
        Method::StartContainer => {
            start::decide(call, &handlers.restorer, decode(method, payload)?).await
        }
        Method::RemoveContainer => {
            remove::decide(call, &handlers.restorer, decode(method, payload)?).await
        }
    })
}

/// The single message of a unary request, uncompressed.
fn message(method: Method, body: &Bytes) -> Result<&[u8], Status> {
    let (compressed, range) = frame::single_message(body)
        .map_err(|why| Status::invalid_argument(format!("{}: {why}", method.name())))?;
    if compressed {
        // kubelet never compresses; decompressing here would let a client pick the codec the
        // shim's checks run against. gRPC answers an unsupported encoding UNIMPLEMENTED.
        return Err(Status::new(
            Code::Unimplemented,
            format!(
                "{}: compressed requests are not accepted for methods the shim inspects",
                method.name()
            ),
        ));
    }
    Ok(&body[range])
}

fn decode<M: Message + Default>(method: Method, payload: &[u8]) -> Result<M, Status> {
    M::decode(payload).map_err(|e| {
        Status::invalid_argument(format!(
            "cannot decode runtime.v1.{}Request: {e}",
            method.name()
        ))
    })
}

#[cfg(test)]
mod tests {
    //! Handlers are handed their collaborators, so they are tested without a proxy or a
    //! runtime: the runtime here is a socket nobody listens on, and these decisions must not
    //! need it.

    use super::*;
    use crate::api::cri::{
        ContainerConfig, CreateContainerRequest, RemoveContainerRequest, StartContainerRequest,
    };
    use crate::config::Config;
    use crate::runtime::Runtime;

    struct Bed {
        relay: Relay,
        restorer: Restorer,
        head: http::request::Parts,
        caller: Caller,
    }

    fn bed() -> Bed {
        let config = Config::default();
        let runtime = Runtime::new(
            std::path::Path::new("/nonexistent/ckpt-shim-test.sock"),
            std::time::Duration::from_millis(10),
            "k8s.io",
        )
        .unwrap();
        Bed {
            relay: Relay::new(runtime.relay().clone(), 1 << 20),
            restorer: Restorer::new(config.restore.clone(), std::env::temp_dir(), &runtime, None),
            head: Request::new(()).into_parts().0,
            caller: Caller {
                pid: 1,
                uid: 0,
                gid: 0,
            },
        }
    }

    impl Bed {
        fn call<'a>(&'a self, original: &'a [u8]) -> Call<'a> {
            Call {
                caller: &self.caller,
                relay: &self.relay,
                head: &self.head,
                original,
            }
        }
    }

    #[tokio::test]
    async fn a_create_naming_the_reserved_annotation_is_refused() {
        let bed = bed();
        let request = CreateContainerRequest {
            config: Some(ContainerConfig {
                annotations: [(ckpt_format::plan::ANNOTATION.to_owned(), "/tmp".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = request.encode_to_vec();
        match create::decide(&bed.call(&bytes), &bed.restorer, request).await {
            Decision::Answer(status) => {
                assert_eq!(status.code, Code::InvalidArgument);
                assert!(status.message.contains("reserved"), "{status}");
            }
            _ => panic!("the reserved annotation must be refused"),
        }
    }

    #[tokio::test]
    async fn start_and_remove_of_an_ordinary_container_go_on_as_they_came() {
        let bed = bed();
        let start = StartContainerRequest {
            container_id: "c1".into(),
        };
        let bytes = start.encode_to_vec();
        assert!(matches!(
            start::decide(&bed.call(&bytes), &bed.restorer, start).await,
            Decision::Forward
        ));
        let remove = RemoveContainerRequest {
            container_id: "c1".into(),
        };
        let bytes = remove.encode_to_vec();
        assert!(matches!(
            remove::decide(&bed.call(&bytes), &bed.restorer, remove).await,
            Decision::Forward
        ));
    }

    #[test]
    fn compressed_and_misframed_requests_are_refused_by_name() {
        let compressed = bytes::Bytes::from_static(&[1, 0, 0, 0, 0]);
        let status = message(Method::CreateContainer, &compressed).unwrap_err();
        assert_eq!(status.code, Code::Unimplemented);
        let short = bytes::Bytes::from_static(&[0, 0]);
        let status = message(Method::StartContainer, &short).unwrap_err();
        assert_eq!(status.code, Code::InvalidArgument);
        assert!(status.message.starts_with("StartContainer: "), "{status}");
    }
}
