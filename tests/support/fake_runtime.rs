//! An in-process CRI runtime for what a real containerd cannot show: fault injection,
//! exact bytes on the wire, huge answers, long event streams, cancellation.
//!
//! It is a real gRPC server (tonic) for RuntimeService and ImageService, plus one method
//! that CRI does not have yet, `/runtime.v1.RuntimeService/CheckpointPod`, which echoes
//! its request stream back message by message (so it is also the bidi-streaming case).
//! Behaviour is chosen per call by request metadata:
//!   fake-delay-ms: N      sleep before answering
//!   fake-error: CODE      fail with that gRPC code, a details blob and a custom trailer
//!   fake-count: N         ListContainers answers N containers; GetContainerEvents sends N events
//!   fake-label-bytes: N   each listed container carries a label of N bytes
//!   fake-hang: 1          GetContainerEvents stays open after its events

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ckpt_shim::api::cri;
use cri::image_service_server::{ImageService, ImageServiceServer};
use cri::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tonic::{Code, Status};
use tower::ServiceExt;

/// The method CRI does not have (yet): proves unknown methods pass through.
pub const FUTURE_METHOD: &str = "/runtime.v1.RuntimeService/CheckpointPod";

type BoxBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// What the fake saw: a request as it arrived on its socket.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
pub struct Record {
    pub received: Mutex<Vec<Received>>,
    /// Handlers whose future was dropped before finishing (the caller went away).
    pub cancelled: AtomicUsize,
    pub calls: AtomicUsize,
}

impl Record {
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

pub struct FakeRuntime {
    pub socket: PathBuf,
    pub record: Arc<Record>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRuntime {
    /// Serves on `socket` (replacing a leftover file) until stopped.
    pub async fn start(socket: &Path) -> FakeRuntime {
        Self::start_with(socket, Arc::new(Record::default())).await
    }

    pub async fn start_with(socket: &Path, record: Arc<Record>) -> FakeRuntime {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).expect("bind fake runtime socket");
        let (stop, mut stopped) = watch::channel(false);
        let rec = record.clone();
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            loop {
                let stream = tokio::select! {
                    _ = stopped.changed() => break,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                let rec = rec.clone();
                let service = service_fn(move |req| serve(rec.clone(), req));
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder
                    .initial_stream_window_size(4 << 20)
                    .initial_connection_window_size(16 << 20)
                    .max_frame_size(1 << 20)
                    .max_concurrent_streams(4096);
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                connections.push(tokio::spawn(async move {
                    let _ = conn.await;
                }));
            }
            // Stopping means the runtime is gone: drop every connection, like a crash.
            for c in connections {
                c.abort();
            }
        });
        FakeRuntime {
            socket: socket.to_path_buf(),
            record,
            stop,
            task,
        }
    }

    /// Stops serving and closes every connection, as a runtime that died would.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn serve(
    record: Arc<Record>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_owned();
    // The shim's own calls (its capability probe) are served but not recorded: the tests
    // look at what the shim relayed.
    let own = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("ckpt-shim/"));
    if !own {
        record.calls.fetch_add(1, Ordering::Relaxed);
    }
    if path == FUTURE_METHOD {
        return Ok(echo(req));
    }
    let (parts, body) = req.into_parts();
    // Unary and server-streaming requests are one message: record it exactly as received.
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if !own {
        record.received.lock().unwrap().push(Received {
            path: path.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }
    let req = Request::from_parts(parts, Full::new(body));
    let fake = Fake { record };
    let response = if path.starts_with("/runtime.v1.ImageService/") {
        ImageServiceServer::new(fake).oneshot(req).await
    } else {
        RuntimeServiceServer::new(fake)
            .max_encoding_message_size(usize::MAX)
            .oneshot(req)
            .await
    };
    let response = response.unwrap_or_else(|never| match never {});
    Ok(response.map(|b| b.map_err(|e| Box::new(e) as _).boxed_unsync()))
}

/// Echoes each request frame back as soon as it arrives, then ends with a custom trailer.
fn echo(req: Request<Incoming>) -> Response<BoxBody> {
    let body = req.into_body();
    let frames = futures_util::stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Some((Ok(Frame::data(data)), Some(body))),
                Err(_) => Some((Ok(Frame::trailers(ok_trailers())), None)),
            },
            Some(Err(e)) => Some((
                Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                None,
            )),
            None => Some((Ok(Frame::trailers(ok_trailers())), None)),
        }
    });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response
        .headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    response
        .headers_mut()
        .insert("fake-header", "from-the-runtime".parse().unwrap());
    response
}

fn ok_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", "0".parse().unwrap());
    t.insert("fake-trailer", "echo-done".parse().unwrap());
    t.insert("fake-bin-bin", "AAEC/w".parse().unwrap());
    t
}

#[derive(Clone)]
struct Fake {
    record: Arc<Record>,
}

/// Counts a handler as cancelled if it is dropped before `done()`.
struct CancelGuard(Arc<Record>, bool);
impl CancelGuard {
    fn done(mut self) {
        self.1 = true;
    }
}
impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn meta_u64(md: &tonic::metadata::MetadataMap, key: &str) -> Option<u64> {
    md.get(key)?.to_str().ok()?.parse().ok()
}

impl Fake {
    /// The behaviours every method shares: delay and injected errors.
    async fn behave(&self, md: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let guard = CancelGuard(self.record.clone(), false);
        if let Some(ms) = meta_u64(md, "fake-delay-ms") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        guard.done();
        if let Some(code) = meta_u64(md, "fake-error") {
            let mut trailers = tonic::metadata::MetadataMap::new();
            trailers.insert("fake-trailer", "error-path".parse().unwrap());
            trailers.insert_bin(
                "fake-detail-bin",
                tonic::metadata::MetadataValue::from_bytes(&[0, 1, 2, 255]),
            );
            return Err(Status::with_details_and_metadata(
                Code::from(code as i32),
                "fake failure: ünïcode and 100% of it\nsecond line",
                Bytes::from_static(b"\x08\x05\x12\x0cdetail bytes"),
                trailers,
            ));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl RuntimeService for Fake {
    async fn version(
        &self,
        request: tonic::Request<cri::VersionRequest>,
    ) -> Result<tonic::Response<cri::VersionResponse>, Status> {
        self.behave(request.metadata()).await?;
        Ok(tonic::Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0.0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn list_containers(
        &self,
        request: tonic::Request<cri::ListContainersRequest>,
    ) -> Result<tonic::Response<cri::ListContainersResponse>, Status> {
        self.behave(request.metadata()).await?;
        let count = meta_u64(request.metadata(), "fake-count").unwrap_or(3) as usize;
        let label =
            "x".repeat(meta_u64(request.metadata(), "fake-label-bytes").unwrap_or(0) as usize);
        let containers = (0..count).map(|i| container(i, &label)).collect();
        Ok(tonic::Response::new(cri::ListContainersResponse {
            containers,
        }))
    }

    async fn get_container_events(
        &self,
        request: tonic::Request<cri::GetEventsRequest>,
    ) -> Result<tonic::Response<tonic::codegen::BoxStream<cri::ContainerEventResponse>>, Status>
    {
        self.behave(request.metadata()).await?;
        let count = meta_u64(request.metadata(), "fake-count").unwrap_or(10);
        let hang = request.metadata().get("fake-hang").is_some();
        let guard = CancelGuard(self.record.clone(), false);
        let events = futures_util::stream::iter(0..count).map(|i| {
            Ok(cri::ContainerEventResponse {
                container_id: format!("container-{i}"),
                container_event_type: (i % 4) as i32,
                created_at: 1_700_000_000_000_000_000 + i as i64,
                pod_sandbox_status: None,
                containers_statuses: vec![],
            })
        });
        let tail = futures_util::stream::unfold(Some(guard), move |guard| async move {
            let guard = guard?;
            if hang {
                std::future::pending::<()>().await;
            }
            guard.done();
            None
        });
        Ok(tonic::Response::new(Box::pin(events.chain(tail))))
    }

    async fn create_container(
        &self,
        request: tonic::Request<cri::CreateContainerRequest>,
    ) -> Result<tonic::Response<cri::CreateContainerResponse>, Status> {
        self.behave(request.metadata()).await?;
        Ok(tonic::Response::new(cri::CreateContainerResponse {
            container_id: "c-1".into(),
        }))
    }

    async fn start_container(
        &self,
        request: tonic::Request<cri::StartContainerRequest>,
    ) -> Result<tonic::Response<cri::StartContainerResponse>, Status> {
        self.behave(request.metadata()).await?;
        Ok(tonic::Response::new(cri::StartContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: tonic::Request<cri::RemoveContainerRequest>,
    ) -> Result<tonic::Response<cri::RemoveContainerResponse>, Status> {
        self.behave(request.metadata()).await?;
        Ok(tonic::Response::new(cri::RemoveContainerResponse {}))
    }

    async fn checkpoint_container(
        &self,
        request: tonic::Request<cri::CheckpointContainerRequest>,
    ) -> Result<tonic::Response<cri::CheckpointContainerResponse>, Status> {
        self.behave(request.metadata()).await?;
        Ok(tonic::Response::new(cri::CheckpointContainerResponse {}))
    }
}

#[tonic::async_trait]
impl ImageService for Fake {
    async fn list_images(
        &self,
        request: tonic::Request<cri::ListImagesRequest>,
    ) -> Result<tonic::Response<cri::ListImagesResponse>, Status> {
        self.behave(request.metadata()).await?;
        Ok(tonic::Response::new(cri::ListImagesResponse {
            images: vec![cri::Image {
                id: "sha256:0123".into(),
                repo_tags: vec!["localhost/fake:latest".into()],
                size: 1234,
                ..Default::default()
            }],
        }))
    }
}

fn container(i: usize, label: &str) -> cri::Container {
    let mut labels = std::collections::HashMap::new();
    if !label.is_empty() {
        labels.insert("pad".to_string(), label.to_string());
    }
    cri::Container {
        id: format!("{i:064x}"),
        pod_sandbox_id: format!("{:064x}", i / 2),
        metadata: Some(cri::ContainerMetadata {
            name: format!("c{i}"),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "localhost/fake:latest".into(),
            ..Default::default()
        }),
        image_ref: "sha256:0123".into(),
        state: cri::ContainerState::ContainerRunning as i32,
        created_at: 1_700_000_000_000_000_000,
        labels,
        annotations: Default::default(),
        ..Default::default()
    }
}
