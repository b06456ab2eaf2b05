//! The proxy: every call arrives here, is routed, and is either relayed to the runtime as
//! the original bytes or handed to the module that owns its method.

pub mod router;
pub mod unary;
pub mod upstream;

use std::sync::Arc;
use std::time::Instant;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;

use crate::checkpoint::Checkpointer;
use crate::config::Config;
use crate::grpc::body::{CallLog, Direction, ViolationSlot};
use crate::grpc::GrpcBody;
use crate::owned;
use crate::restore::Restorer;
use crate::server::peer::Caller;
use router::Route;
use upstream::Upstream;

pub struct Proxy {
    upstream: Upstream,
    max_message_bytes: usize,
    checkpointer: Arc<Checkpointer>,
    restorer: Arc<Restorer>,
}

impl Proxy {
    pub fn new(config: &Config) -> Self {
        let checkpointer = Checkpointer::start(config);
        let restorer = Restorer::start(config, checkpointer.audit());
        let upstream = Upstream::new(config.runtime_endpoint.clone(), config.connect_timeout);
        // What the runtime can do (its checkpoint, its set-up for restores) is looked at now
        // and after every reconnect: it may have been restarted, upgraded or reconfigured.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (cx, rx, connected) = (
                checkpointer.clone(),
                restorer.clone(),
                upstream.on_connect(),
            );
            let sweeper = restorer.clone();
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(300)).await;
                    sweeper.sweep().await;
                }
            });
            runtime.spawn(async move {
                cx.clone().recover_inflight();
                loop {
                    cx.detect_now().await;
                    rx.check_runtime().await;
                    connected.notified().await;
                }
            });
        }
        Proxy {
            upstream,
            max_message_bytes: config.max_message_bytes,
            checkpointer,
            restorer,
        }
    }

    /// The checkpoint engine CheckpointContainer is handed to.
    pub fn checkpointer(&self) -> &Arc<Checkpointer> {
        &self.checkpointer
    }

    /// Where CreateContainer/StartContainer/RemoveContainer of checkpoints go.
    pub fn restorer(&self) -> &Arc<Restorer> {
        &self.restorer
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Answers one call. Never fails: every problem becomes a gRPC status for the caller.
    pub async fn handle(&self, request: Request<Incoming>, caller: &Caller) -> Response<GrpcBody> {
        let log = CallLog::start(request.uri().path(), Instant::now());
        let response = match router::route(request.uri().path()) {
            Route::Relay => self.relay(request).await,
            Route::Owned(rpc) => owned::handle(self, rpc, request, caller).await,
        };
        let (parts, body) = response.into_parts();
        let log = log.map(|mut l| {
            // A trailers-only answer carries its status in the headers.
            l.note_status(&parts.headers);
            l
        });
        Response::from_parts(parts, body.with_log(log))
    }

    /// Relays a call untouched: the request body streams to the runtime frame by frame.
    async fn relay(&self, request: Request<Incoming>) -> Response<GrpcBody> {
        let slot = ViolationSlot::default();
        let (parts, body) = request.into_parts();
        let body = GrpcBody::checked(
            body,
            self.max_message_bytes,
            Direction::Request,
            Some(slot.clone()),
        );
        self.forward(Request::from_parts(parts, body), slot).await
    }

    /// Sends a call to the runtime and streams its answer back, checking message sizes.
    /// `slot` receives request-side violations so they are reported as themselves.
    pub async fn forward(
        &self,
        request: Request<GrpcBody>,
        slot: ViolationSlot,
    ) -> Response<GrpcBody> {
        let request = absolute_uri(request);
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
}

/// The client library needs scheme and authority to fill the HTTP/2 pseudo-headers; keep
/// the caller's when it sent them (it always does over HTTP/2).
pub(crate) fn absolute_uri(request: Request<GrpcBody>) -> Request<GrpcBody> {
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
