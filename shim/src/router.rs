//! Which calls the shim intercepts, and where each call goes. Everything not named here is
//! relayed byte for byte, including methods and services CRI adds after this build.

use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::caller::Caller;
use crate::grpc::body::CallLog;
use crate::grpc::GrpcBody;
use crate::intercept::{Handlers, Method};
use crate::relay::Relay;

pub const RUNTIME_SERVICE: &str = "/runtime.v1.RuntimeService/";

pub enum Route {
    Relay,
    Intercept(Method),
}

pub fn route(path: &str) -> Route {
    let Some(method) = path.strip_prefix(RUNTIME_SERVICE) else {
        return Route::Relay;
    };
    match method {
        "CheckpointContainer" => Route::Intercept(Method::CheckpointContainer),
        "CreateContainer" => Route::Intercept(Method::CreateContainer),
        "StartContainer" => Route::Intercept(Method::StartContainer),
        "RemoveContainer" => Route::Intercept(Method::RemoveContainer),
        _ => Route::Relay,
    }
}

/// Every call after the connection's checks: routed, relayed or intercepted, logged.
pub struct Router {
    relay: Relay,
    handlers: Handlers,
}

impl Router {
    pub fn new(relay: Relay, handlers: Handlers) -> Self {
        Router { relay, handlers }
    }

    /// Answers one call. Never fails: every problem becomes a gRPC status for the caller.
    pub async fn handle(&self, request: Request<Incoming>, caller: &Caller) -> Response<GrpcBody> {
        let log = CallLog::start(request.uri().path(), Instant::now());
        // The call's span goes with its log line: only when call logging is on does the
        // relay path carry it (a disabled span still wraps every poll).
        let response = if log.is_some() {
            let span = tracing::debug_span!(
                target: "ckpt_shim::call",
                "call",
                method = request.uri().path(),
                pid = caller.pid
            );
            self.dispatch(request, caller).instrument(span).await
        } else {
            self.dispatch(request, caller).await
        };
        let (parts, body) = response.into_parts();
        let log = log.map(|mut l| {
            // A trailers-only answer carries its status in the headers.
            l.note_status(&parts.headers);
            l
        });
        Response::from_parts(parts, body.with_log(log))
    }

    async fn dispatch(&self, request: Request<Incoming>, caller: &Caller) -> Response<GrpcBody> {
        match route(request.uri().path()) {
            Route::Relay => self.relay.relay(request).await,
            Route::Intercept(method) => {
                crate::intercept::handle(method, request, caller, &self.relay, &self.handlers).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intercepted_methods_and_the_rest() {
        assert!(matches!(
            route("/runtime.v1.RuntimeService/CreateContainer"),
            Route::Intercept(Method::CreateContainer)
        ));
        assert!(matches!(
            route("/runtime.v1.RuntimeService/Version"),
            Route::Relay
        ));
        assert!(matches!(
            route("/runtime.v1.RuntimeService/CheckpointPod"),
            Route::Relay
        ));
        assert!(matches!(
            route("/runtime.v1.ImageService/PullImage"),
            Route::Relay
        ));
        // v1alpha2 and look-alikes are not ours.
        assert!(matches!(
            route("/runtime.v1alpha2.RuntimeService/CreateContainer"),
            Route::Relay
        ));
        assert!(matches!(
            route("/runtime.v1.RuntimeService/CreateContainerX"),
            Route::Relay
        ));
    }
}
