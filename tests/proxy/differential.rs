//! The same request directly and through the shim gives the same answer, byte for byte:
//! status line, headers, body and trailers.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ckpt_shim::api::cri;
use ckpt_shim_tests::fake_runtime::FUTURE_METHOD;
use ckpt_shim_tests::raw::{encode, frame, with_unknown_fields, BoxBody};
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;

use crate::Bed;

const VERSION: &str = "/runtime.v1.RuntimeService/Version";
const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";
const EVENTS: &str = "/runtime.v1.RuntimeService/GetContainerEvents";

#[tokio::test]
async fn unary_answers_are_identical() {
    let bed = Bed::new().await;
    let request = encode(&cri::VersionRequest {
        version: "v1".into(),
    });
    let (direct, shimmed) = bed.both(VERSION, &[], request).await;
    assert_eq!(direct.grpc_status(), Some(0));
    assert_eq!(direct, shimmed);
    let version = cri::VersionResponse::decode(&shimmed.body[5..]).unwrap();
    assert_eq!(version.runtime_name, "fake");

    let (direct, shimmed) = bed
        .both(
            "/runtime.v1.ImageService/ListImages",
            &[],
            encode(&cri::ListImagesRequest::default()),
        )
        .await;
    assert_eq!(direct.grpc_status(), Some(0));
    assert_eq!(direct, shimmed);
}

#[tokio::test]
async fn request_bytes_reach_the_runtime_unchanged_with_unknown_fields_and_metadata() {
    let bed = Bed::new().await;
    let payload = with_unknown_fields(
        cri::VersionRequest {
            version: "v1".into(),
        }
        .encode_to_vec(),
    );
    let metadata = [
        ("x-request-id", "abc-123"),
        ("x-trace-bin", "AAEC/w"),
        ("grpc-timeout", "5S"),
    ];
    let shimmed = bed
        .via_shim()
        .await
        .call(VERSION, &metadata, frame(&payload))
        .await
        .unwrap();
    assert_eq!(shimmed.grpc_status(), Some(0));
    let seen = bed.fake().record.received(VERSION);
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body,
        frame(&payload),
        "the runtime must get the exact bytes"
    );
    for (k, v) in metadata {
        assert_eq!(seen[0].headers[k], v, "metadata {k} must pass unchanged");
    }
}

#[tokio::test]
async fn owned_methods_forward_the_original_bytes() {
    let bed = Bed::new().await;
    let create = cri::CreateContainerRequest {
        pod_sandbox_id: "sandbox-1".into(),
        config: Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "counter".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        sandbox_config: None,
    };
    let calls: Vec<(&str, Vec<u8>)> = vec![
        (
            "/runtime.v1.RuntimeService/CreateContainer",
            create.encode_to_vec(),
        ),
        (
            "/runtime.v1.RuntimeService/StartContainer",
            cri::StartContainerRequest {
                container_id: "c-1".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/runtime.v1.RuntimeService/RemoveContainer",
            cri::RemoveContainerRequest {
                container_id: "c-1".into(),
            }
            .encode_to_vec(),
        ),
        // CheckpointContainer is no longer forwarded as it came: the shim checks it and
        // either does it itself or forwards it with a temporary location
        // (tests/checkpoint, and checkpoint::native's unit test for the byte rewrite).
    ];
    for (path, payload) in calls {
        let body = frame(&with_unknown_fields(payload));
        let (direct, shimmed) = bed.both(path, &[], body.clone()).await;
        assert_eq!(
            direct.grpc_status(),
            Some(0),
            "{path}: {}",
            direct.grpc_message()
        );
        assert_eq!(direct, shimmed, "{path}");
        let seen = bed.fake().record.received(path);
        assert_eq!(seen.len(), 2, "{path}");
        assert_eq!(seen[0].body, body, "{path}: direct");
        assert_eq!(
            seen[1].body, body,
            "{path}: through the shim, unknown fields kept"
        );
    }
}

#[tokio::test]
async fn owned_method_that_cannot_be_decoded_is_refused_by_the_shim() {
    let bed = Bed::new().await;
    let path = "/runtime.v1.RuntimeService/CreateContainer";
    // Field 2 (config) as a length-delimited field whose length runs past the end.
    let garbage = frame(&[0x12, 0x40, 0x01]);
    let r = bed.via_shim().await.call(path, &[], garbage).await.unwrap();
    assert_eq!(r.grpc_status(), Some(3), "INVALID_ARGUMENT");
    assert!(
        r.grpc_message()
            .contains("cannot decode runtime.v1.CreateContainerRequest"),
        "{}",
        r.grpc_message()
    );
    // Two messages where one is due.
    let mut two = frame(b"").to_vec();
    two.extend_from_slice(&frame(b""));
    let r = bed
        .via_shim()
        .await
        .call(path, &[], two.into())
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(3));
    assert!(
        bed.fake().record.received(path).is_empty(),
        "nothing reached the runtime"
    );
}

#[tokio::test]
async fn error_statuses_with_details_and_trailers_are_identical() {
    let bed = Bed::new().await;
    for code in ["5", "9", "13"] {
        let (direct, shimmed) = bed
            .both(
                VERSION,
                &[("fake-error", code)],
                encode(&cri::VersionRequest::default()),
            )
            .await;
        assert_eq!(
            direct.grpc_status().map(|c| c.to_string()).as_deref(),
            Some(code)
        );
        let all = direct.trailers.as_ref().unwrap_or(&direct.headers);
        assert!(all.contains_key("grpc-status-details-bin"));
        assert!(all.contains_key("fake-trailer"));
        assert_eq!(direct, shimmed);
    }
}

#[tokio::test]
async fn a_15_mib_answer_is_identical() {
    let bed = Bed::new().await;
    let headers = [("fake-count", "15"), ("fake-label-bytes", "1048000")];
    let (direct, shimmed) = bed
        .both(
            LIST_CONTAINERS,
            &headers,
            encode(&cri::ListContainersRequest::default()),
        )
        .await;
    assert_eq!(direct.grpc_status(), Some(0));
    assert!(
        direct.body.len() > 15 * 1_000_000,
        "{} bytes",
        direct.body.len()
    );
    assert!(direct == shimmed, "15 MiB answers differ");
}

#[tokio::test]
async fn a_stream_of_10000_events_is_identical() {
    let bed = Bed::new().await;
    let (direct, shimmed) = bed
        .both(
            EVENTS,
            &[("fake-count", "10000")],
            encode(&cri::GetEventsRequest::default()),
        )
        .await;
    assert_eq!(direct.grpc_status(), Some(0));
    assert_eq!(count_messages(&direct.body), 10_000);
    assert!(direct == shimmed, "event streams differ");
}

#[tokio::test]
async fn unknown_methods_pass_through() {
    let bed = Bed::new().await;
    // A method of a known service that the runtime does not implement.
    let (direct, shimmed) = bed
        .both("/runtime.v1.RuntimeService/NoSuchMethod", &[], frame(b""))
        .await;
    assert_eq!(direct.grpc_status(), Some(12), "UNIMPLEMENTED");
    assert_eq!(direct, shimmed);
    // A whole service nobody has.
    let (direct, shimmed) = bed.both("/future.v9.Nothing/Call", &[], frame(b"")).await;
    assert_eq!(direct, shimmed);
    // A method CRI adds later that the runtime has: messages we have no schema for.
    let body = frame(&with_unknown_fields(b"\x0a\x03pod".to_vec()));
    let (direct, shimmed) = bed.both(FUTURE_METHOD, &[], body.clone()).await;
    assert_eq!(direct.grpc_status(), Some(0));
    assert_eq!(direct.body, body);
    assert_eq!(direct, shimmed);
}

/// A bidi stream: each message is answered before the next is sent, so the shim must relay
/// frame by frame, not buffer whole bodies.
#[tokio::test]
async fn bidi_streams_flow_message_by_message() {
    let bed = Bed::new().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body: BoxBody = StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|b| Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(b))),
    )
    .boxed_unsync();
    let mut client = bed.via_shim().await;
    let response = client.start(FUTURE_METHOD, &[], body).await.unwrap();
    assert_eq!(response.headers()["fake-header"], "from-the-runtime");
    let mut answers = response.into_body();
    for i in 0..50u32 {
        let message = frame(format!("message {i}").as_bytes());
        tx.send(message.clone()).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), answers.frame())
            .await
            .expect("echo must arrive before the next message is sent")
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(echoed, message);
    }
    drop(tx);
    let trailers = answers
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_trailers()
        .unwrap();
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["fake-trailer"], "echo-done");
    assert_eq!(trailers["fake-bin-bin"], "AAEC/w");
}

#[tokio::test]
async fn a_client_that_cancels_mid_stream_cancels_the_runtime_call() {
    let bed = Bed::new().await;
    let mut client = bed.via_shim().await;
    let response = client
        .start(
            EVENTS,
            &[("fake-count", "5"), ("fake-hang", "1")],
            http_body_util::Full::new(encode(&cri::GetEventsRequest::default()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    // Read the five events, however the runtime batched them into DATA frames.
    let mut received = Vec::new();
    while count_messages(&received) < 5 {
        received.extend_from_slice(&body.frame().await.unwrap().unwrap().into_data().unwrap());
    }
    assert_eq!(bed.fake().record.cancelled.load(Ordering::SeqCst), 0);
    drop(body); // resets the stream: the shim must reset its upstream stream too
    let deadline = Instant::now() + Duration::from_secs(5);
    while bed.fake().record.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the runtime never saw the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn deadlines_propagate_to_the_runtime() {
    let bed = Bed::new().await;
    let channel = ckpt_shim_tests::raw::channel(&bed.shim.socket)
        .await
        .unwrap();
    let mut client = cri::runtime_service_client::RuntimeServiceClient::new(channel);
    let mut request = tonic::Request::new(cri::VersionRequest::default());
    request.set_timeout(Duration::from_millis(300));
    request
        .metadata_mut()
        .insert("fake-delay-ms", "10000".parse().unwrap());
    let started = Instant::now();
    let err = client.version(request).await.unwrap_err();
    // tonic reports its own client-side expiry as CANCELLED "Timeout expired"; grpc-go
    // (kubelet) says DEADLINE_EXCEEDED. Either way the call ended at the deadline.
    assert!(
        matches!(
            err.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let seen = bed.fake().record.received(VERSION);
    let timeout = seen[0].headers["grpc-timeout"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        timeout.ends_with('m') || timeout.ends_with('u') || timeout.ends_with('n'),
        "{timeout}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while bed.fake().record.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the runtime's handler was not cancelled at the deadline"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn typed_clients_work_through_the_shim() {
    let bed = Bed::new().await;
    let channel = ckpt_shim_tests::raw::channel(&bed.shim.socket)
        .await
        .unwrap();
    let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(channel.clone());
    let v = rt
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_api_version, "v1");
    let mut events = rt
        .get_container_events(cri::GetEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(e) = events.message().await.unwrap() {
        assert_eq!(e.container_id, format!("container-{n}"));
        n += 1;
    }
    assert_eq!(n, 10);
    let mut img = cri::image_service_client::ImageServiceClient::new(channel);
    let images = img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(images.images.len(), 1);
}

/// How many complete gRPC messages `bytes` holds.
fn count_messages(bytes: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = bytes;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if rest.len() < 5 + len {
            break;
        }
        rest = &rest[5 + len..];
        n += 1;
    }
    n
}
