//! The methods the shim owns. Each has its own module with the same shape: the request is
//! decoded from the original bytes, the module decides, and unless it must change or refuse
//! the call, the ORIGINAL bytes go to the runtime (so fields newer than our schema survive).

mod checkpoint;
mod create;
mod remove;
mod start;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prost::Message;

use crate::grpc::body::{Direction, ViolationSlot};
use crate::grpc::{frame, Code, GrpcBody, Status};
use crate::proxy::unary::UnaryAnswer;
use crate::proxy::Proxy;
use crate::server::peer::Caller;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedRpc {
    CheckpointContainer,
    CreateContainer,
    StartContainer,
    RemoveContainer,
}

impl OwnedRpc {
    pub fn name(self) -> &'static str {
        match self {
            OwnedRpc::CheckpointContainer => "CheckpointContainer",
            OwnedRpc::CreateContainer => "CreateContainer",
            OwnedRpc::StartContainer => "StartContainer",
            OwnedRpc::RemoveContainer => "RemoveContainer",
        }
    }
}

/// What an owned method's module decided about a call.
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
    pub proxy: &'a Proxy,
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
        self.proxy
            .forward_unary(self.head, frame_message(payload))
            .await
    }
}

fn frame_message(payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(frame::PREFIX_LEN + payload.len());
    b.push(0);
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    Bytes::from(b)
}

pub async fn handle(
    proxy: &Proxy,
    rpc: OwnedRpc,
    request: Request<Incoming>,
    caller: &Caller,
) -> Response<GrpcBody> {
    let (parts, body) = request.into_parts();
    let slot = ViolationSlot::default();
    let body = GrpcBody::checked(
        body,
        proxy.max_message_bytes(),
        Direction::Request,
        Some(slot.clone()),
    );
    // Owned methods are unary and bounded by the size limit, so holding one is fine.
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
    let payload = match message(rpc, &bytes) {
        Ok(p) => p,
        Err(status) => return status.into_response(),
    };
    let call = Call {
        caller,
        proxy,
        head: &parts,
        original: payload,
    };
    let decision = match decide(rpc, &call, payload).await {
        Ok(d) => d,
        Err(status) => {
            tracing::warn!(method = rpc.name(), pid = caller.pid, uid = caller.uid, %status, "refused");
            return status.into_response();
        }
    };
    match decision {
        Decision::Forward => {
            proxy
                .forward(Request::from_parts(parts, GrpcBody::full(bytes)), slot)
                .await
        }
        Decision::Answer(status) => status.into_response(),
        Decision::Reply(message) => crate::grpc::reply::ok(&message),
        Decision::Relay(answer) => answer.into_response(),
    }
}

async fn decide(rpc: OwnedRpc, call: &Call<'_>, payload: &[u8]) -> Result<Decision, Status> {
    Ok(match rpc {
        OwnedRpc::CheckpointContainer => checkpoint::decide(call, decode(rpc, payload)?).await,
        OwnedRpc::CreateContainer => create::decide(call, decode(rpc, payload)?).await,
        OwnedRpc::StartContainer => start::decide(call, decode(rpc, payload)?).await,
        OwnedRpc::RemoveContainer => remove::decide(call, decode(rpc, payload)?).await,
    })
}

/// The single message of a unary request, uncompressed.
fn message(rpc: OwnedRpc, body: &Bytes) -> Result<&[u8], Status> {
    let (compressed, range) = frame::single_message(body)
        .map_err(|why| Status::invalid_argument(format!("{}: {why}", rpc.name())))?;
    if compressed {
        // kubelet never compresses; decompressing here would let a client pick the codec the
        // shim's checks run against. gRPC answers an unsupported encoding UNIMPLEMENTED.
        return Err(Status::new(
            Code::Unimplemented,
            format!(
                "{}: compressed requests are not accepted for methods the shim inspects",
                rpc.name()
            ),
        ));
    }
    Ok(&body[range])
}

fn decode<M: Message + Default>(rpc: OwnedRpc, payload: &[u8]) -> Result<M, Status> {
    M::decode(payload).map_err(|e| {
        Status::invalid_argument(format!(
            "cannot decode runtime.v1.{}Request: {e}",
            rpc.name()
        ))
    })
}
