//! Bad input on the shim's socket gets a clear error for that connection or call, and the
//! next good call succeeds.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use bytes::Bytes;
use ckpt_shim::api::cri;
use ckpt_shim_tests::raw::{encode, RawClient};
use ckpt_shim_tests::shim::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Bed;

const VERSION: &str = "/runtime.v1.RuntimeService/Version";
const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";

async fn good_call(bed: &Bed) {
    let r = bed
        .via_shim()
        .await
        .call(VERSION, &[], encode(&cri::VersionRequest::default()))
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(0), "{}", r.grpc_message());
}

async fn send_raw(bed: &Bed, bytes: &[u8]) -> String {
    let mut stream = tokio::net::UnixStream::connect(&bed.shim.socket)
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn garbage_bytes_get_an_error_and_the_shim_keeps_serving() {
    let bed = Bed::new().await;
    let answer = send_raw(&bed, b"\x00\xff\x13 this is not HTTP at all\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    good_call(&bed).await;
}

#[tokio::test]
async fn http1_requests_are_told_to_speak_http2() {
    let bed = Bed::new().await;
    let answer = send_raw(
        &bed,
        b"POST /runtime.v1.RuntimeService/Version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 505"), "{answer:?}");
    assert!(answer.contains("gRPC over HTTP/2"), "{answer:?}");
    good_call(&bed).await;
}

#[tokio::test]
async fn a_lying_length_prefix_is_rejected() {
    let bed = Bed::new().await;
    // Declares 100 bytes, sends 3, ends the stream.
    let lie = Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2, 3]);
    let mut client = bed.via_shim().await;
    let r = client.call(VERSION, &[], lie.clone()).await.unwrap();
    assert_eq!(r.grpc_status(), Some(13), "INTERNAL");
    assert!(
        r.grpc_message().contains("declared 100 bytes, 3 arrived"),
        "{}",
        r.grpc_message()
    );
    // Same for an owned method, which reads the whole request first.
    let r = client
        .call("/runtime.v1.RuntimeService/StartContainer", &[], lie)
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(13), "{}", r.grpc_message());
    // A bad compressed flag.
    let r = client
        .call(VERSION, &[], Bytes::from_static(&[9, 0, 0, 0, 0]))
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(13), "{}", r.grpc_message());
    // The same connection keeps serving.
    let r = client
        .call(VERSION, &[], encode(&cri::VersionRequest::default()))
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(0));
}

#[tokio::test]
async fn oversized_messages_get_resource_exhausted_both_ways() {
    let bed = Bed::new().await;
    let mut client = bed.via_shim().await;
    // 17 MiB request to a relayed and to an owned method.
    let mut big = vec![0u8; 5 + (17 << 20)];
    big[1..5].copy_from_slice(&((17u32 << 20).to_be_bytes()));
    let big = Bytes::from(big);
    for path in [VERSION, "/runtime.v1.RuntimeService/CreateContainer"] {
        let r = client.call(path, &[], big.clone()).await.unwrap();
        assert_eq!(r.grpc_status(), Some(8), "{path}: {}", r.grpc_message());
        assert!(
            r.grpc_message()
                .contains("larger than the limit of 16777216"),
            "{}",
            r.grpc_message()
        );
    }
    assert!(bed
        .fake()
        .record
        .received("/runtime.v1.RuntimeService/CreateContainer")
        .is_empty());
    // A 17 MiB answer from the runtime.
    let headers = [("fake-count", "17"), ("fake-label-bytes", "1048576")];
    let r = client
        .call(
            LIST_CONTAINERS,
            &headers,
            encode(&cri::ListContainersRequest::default()),
        )
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(8), "{}", r.grpc_message());
    assert!(
        r.body.is_empty(),
        "no byte of the oversized message is passed on"
    );
    // The connection keeps serving.
    let r = client
        .call(VERSION, &[], encode(&cri::VersionRequest::default()))
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(0));
}

#[tokio::test]
async fn the_message_limit_is_configurable() {
    let bed = Bed::with(Options {
        server: "max_message_bytes = 65536".into(),
        ..Default::default()
    })
    .await;
    let headers = [("fake-count", "2"), ("fake-label-bytes", "40000")];
    let r = bed
        .via_shim()
        .await
        .call(
            LIST_CONTAINERS,
            &headers,
            encode(&cri::ListContainersRequest::default()),
        )
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(8), "{}", r.grpc_message());
}

/// Peer credentials: root is refused when only uid 4242 is allowed, uid 4242 is served.
#[tokio::test]
async fn callers_outside_the_allowed_uids_are_refused() {
    let bed = Bed::with(Options {
        server: "allowed_uids = [4242]\nsocket_mode = \"0666\"".into(),
        ..Default::default()
    })
    .await;
    std::fs::set_permissions(
        bed.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let r = bed
        .via_shim()
        .await
        .call(VERSION, &[], encode(&cri::VersionRequest::default()))
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(7), "PERMISSION_DENIED");
    assert!(
        r.grpc_message().contains("peer uid 0"),
        "{}",
        r.grpc_message()
    );
    assert!(bed.fake().record.received(VERSION).is_empty());
    let logs = bed.shim.logs();
    let refusal = logs
        .lines()
        .find(|l| l.contains("not allowed"))
        .expect("refusal logged");
    assert!(
        refusal.contains("\"uid\":0")
            && refusal.contains(&format!("\"pid\":{}", std::process::id())),
        "{refusal}"
    );

    // The same call from a process running as uid 4242.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .env("CKPT_TEST_CALL_VERSION", &bed.shim.socket)
        .args(["--exact", "bad_input::call_version_as_child", "--nocapture"])
        .uid(4242)
        .gid(4242)
        .stdout(std::process::Stdio::null());
    // Wait off the test's runtime: the fake runtime answering the child runs on it.
    let status = tokio::task::spawn_blocking(move || child.status().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "uid 4242 must be served");
    assert_eq!(bed.fake().record.received(VERSION).len(), 1);
}

/// Runs only as the child of the test above.
#[tokio::test]
async fn call_version_as_child() {
    let Some(socket) = std::env::var_os("CKPT_TEST_CALL_VERSION") else {
        return;
    };
    let mut client = RawClient::connect(std::path::Path::new(&socket))
        .await
        .unwrap();
    let r = client
        .call(VERSION, &[], encode(&cri::VersionRequest::default()))
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(0), "{}", r.grpc_message());
}
