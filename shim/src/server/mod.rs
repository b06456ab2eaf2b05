//! Accepting connections: peer credentials, HTTP/2 serving, graceful shutdown.

pub mod listener;
pub mod peer;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::UnixListener;

use crate::app::App;
use crate::config::Config;
use crate::grpc::{GrpcBody, Status};
use crate::router::Router;
use peer::Access;

/// Serves until `shutdown` resolves, then stops accepting, removes the socket and gives
/// calls in flight the configured grace period.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let (listener, socket) =
        listener::bind(&config.listen, config.socket_mode, config.socket_group)?;
    tracing::info!(
        listen = %config.listen.display(),
        runtime = %config.runtime_endpoint.display(),
        version = env!("CARGO_PKG_VERSION"),
        "ckpt-shim serving"
    );
    let app = App::build(&config)?;
    app.start();
    on_ready();
    let access = Access::new(config.allowed_uids.clone());
    let graceful = GracefulShutdown::new();
    let builder = http_builder();

    accept_loop(
        &listener,
        &builder,
        &graceful,
        app.router(),
        &access,
        shutdown,
    )
    .await;

    drop(listener);
    drop(socket);
    tracing::info!(grace = ?config.shutdown_grace, "shutting down: waiting for calls in flight");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!("grace period over: closing connections with calls still in flight")
        }
    }
    Ok(())
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(4096)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20)
        .max_send_buf_size(1 << 20)
        .max_header_list_size(1 << 20);
    builder
}

async fn accept_loop(
    listener: &UnixListener,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    router: &Arc<Router>,
    access: &Access,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: back off briefly instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let caller = match peer::caller_of(&stream) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read peer credentials; closing connection");
                continue;
            }
        };
        let allowed = access.allows(&caller);
        if !allowed {
            tracing::warn!(
                pid = caller.pid,
                uid = caller.uid,
                gid = caller.gid,
                "connection from a uid that is not allowed; refusing its calls"
            );
        } else {
            tracing::debug!(pid = caller.pid, uid = caller.uid, "connection accepted");
        }
        let router = router.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            async move {
                Ok::<_, Infallible>(if !allowed {
                    Status::permission_denied(format!(
                        "peer uid {} (pid {}) is not in server.allowed_uids",
                        caller.uid, caller.pid
                    ))
                    .into_response()
                } else if request.version() != Version::HTTP_2 {
                    not_http2(request.version())
                } else {
                    router.handle(request, &caller).await
                })
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(pid = caller.pid, error = %e, "connection ended with an error");
            }
        });
    }
}

/// kubelet speaks gRPC over cleartext HTTP/2; tell an HTTP/1 client so in plain words.
fn not_http2(version: Version) -> Response<GrpcBody> {
    let message = format!(
        "ckpt-shim serves gRPC over HTTP/2 (h2c, prior knowledge); this request was {version:?}\n"
    );
    let mut response = Response::new(GrpcBody::full(message.into()));
    *response.status_mut() = StatusCode::HTTP_VERSION_NOT_SUPPORTED;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}
